//! Kubernetes Events (`events.k8s.io/v1`) as operators expect them: a repeat of the same Event
//! within a few minutes raises its count, and an Event whose text changed is a new Event.
//!
//! kube's own `Recorder` groups repeats by reason and object but not by text, so a second
//! `AllocationFailed` naming another IP only raised the count of the first and `kubectl describe`
//! kept showing the old IP. The key here includes the note. Memory stays bounded: entries older
//! than the series window are dropped, and at most [`MAX_SERIES`] are kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// How long a repeat counts into the same Event (as kube-apiserver's own event recorders).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// Series remembered at most; beyond, the oldest are forgotten (a repeat then starts anew).
pub const MAX_SERIES: usize = 4096;

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// Normal.
    Normal,
    /// Warning.
    Warning,
}

/// What makes two Events the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    /// `kind/namespace/name/uid` of the object.
    pub regarding: String,
    /// Normal or Warning.
    pub severity: Severity,
    /// Reason.
    pub reason: String,
    /// Note.
    pub note: String,
}

/// What to do for one Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    /// Create it.
    Create,
    /// Raise the count of the Event named `name` to `count`.
    Repeat {
        /// Name of the existing Event.
        name: String,
        /// New count.
        count: i32,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    count: i32,
    last: Instant,
}

/// The series seen in the last [`SERIES_WINDOW`]. Pure: the caller passes the time.
#[derive(Debug, Default)]
pub struct SeriesBook {
    entries: HashMap<SeriesKey, Entry>,
}

impl SeriesBook {
    /// Decides how to publish an Event with `key` at `now`.
    pub fn decide(&mut self, key: &SeriesKey, now: Instant) -> Publish {
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last) < SERIES_WINDOW);
        match self.entries.get_mut(key) {
            Some(entry) => {
                entry.count = entry.count.saturating_add(1);
                entry.last = now;
                Publish::Repeat {
                    name: entry.name.clone(),
                    count: entry.count,
                }
            }
            None => Publish::Create,
        }
    }

    /// Remembers the Event just created for `key`.
    pub fn created(&mut self, key: SeriesKey, name: String, now: Instant) {
        if self.entries.len() >= MAX_SERIES
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(
            key,
            Entry {
                name,
                count: 1,
                last: now,
            },
        );
    }

    /// Series remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Publishes Events as one reporting controller and instance.
#[derive(Clone)]
pub struct Events {
    client: Client,
    controller: String,
    instance: String,
    book: Arc<Mutex<SeriesBook>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("controller", &self.controller)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

fn describe(r: &ObjectReference) -> String {
    let part = |s: &Option<String>| s.clone().unwrap_or_default();
    format!(
        "{}/{}/{}/{}",
        part(&r.kind),
        part(&r.namespace),
        part(&r.name),
        part(&r.uid)
    )
}

impl Events {
    /// Events from `controller` (e.g. `ferrolb-controller`), instance `instance` (the pod or
    /// node name).
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            instance: instance.to_owned(),
            book: Arc::default(),
        }
    }

    /// Publishes an Event about `regarding` (created in its namespace, or `default`).
    ///
    /// # Errors
    /// When the API refuses it.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        severity: Severity,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let key = SeriesKey {
            regarding: describe(regarding),
            severity,
            reason: reason.to_owned(),
            note: note.to_owned(),
        };
        let now = Instant::now();
        let decision = self
            .book
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .decide(&key, now);
        let namespace = regarding
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let stamp = Timestamp::now();
        match decision {
            Publish::Repeat { name, count } => {
                let patch = serde_json::json!({
                    "series": EventSeries { count, last_observed_time: MicroTime(stamp) }
                });
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            Publish::Create => {
                let name = format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    stamp.as_nanosecond()
                );
                let event = Event {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(namespace),
                        ..ObjectMeta::default()
                    },
                    action: Some(action.to_owned()),
                    reason: Some(reason.to_owned()),
                    note: Some(note.to_owned()),
                    regarding: Some(regarding.clone()),
                    event_time: Some(MicroTime(stamp)),
                    reporting_controller: Some(self.controller.clone()),
                    reporting_instance: Some(self.instance.clone()),
                    type_: Some(
                        match severity {
                            Severity::Normal => "Normal",
                            Severity::Warning => "Warning",
                        }
                        .to_owned(),
                    ),
                    ..Event::default()
                };
                api.create(&PostParams::default(), &event).await?;
                self.book
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .created(key, name, now);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(note: &str) -> SeriesKey {
        SeriesKey {
            regarding: "Service/default/web/u1".into(),
            severity: Severity::Warning,
            reason: "AllocationFailed".into(),
            note: note.into(),
        }
    }

    #[test]
    fn a_repeat_counts_and_a_new_text_is_a_new_event() {
        let mut book = SeriesBook::default();
        let t0 = Instant::now();
        assert_eq!(book.decide(&key("ip .50"), t0), Publish::Create);
        book.created(key("ip .50"), "web.1".into(), t0);
        assert_eq!(
            book.decide(&key("ip .50"), t0),
            Publish::Repeat {
                name: "web.1".into(),
                count: 2
            }
        );
        assert_eq!(book.decide(&key("ip .51"), t0), Publish::Create);
    }

    #[test]
    fn series_expire_and_stay_bounded() {
        let mut book = SeriesBook::default();
        let t0 = Instant::now();
        book.created(key("a"), "web.1".into(), t0);
        assert_eq!(
            book.decide(&key("a"), t0 + SERIES_WINDOW + Duration::from_secs(1)),
            Publish::Create
        );
        for i in 0..MAX_SERIES + 10 {
            book.created(key(&i.to_string()), format!("web.{i}"), t0);
        }
        assert_eq!(book.len(), MAX_SERIES);
    }
}
