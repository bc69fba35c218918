//! Watch streams: one line of JSON per event. A watch starts from the current state (replayed
//! as ADDED, as kube-apiserver does for no resourceVersion, rv 0, or `sendInitialEvents`) or
//! resumes from a resourceVersion out of the store's log; it then follows live events, filtered
//! by the watcher's namespace and selectors, with BOOKMARKs when asked for.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;

use super::App;
use crate::error::{ApiError, ApiResult};
use crate::resources::ResourceType;
use crate::store::{EventType, ListOptions, Store, WatchEvent};

/// kube-apiserver's default when the client names no `timeoutSeconds`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// The watch parameters of a request.
#[derive(Debug, Clone)]
struct WatchRequest {
    bookmarks: bool,
    send_initial: bool,
    timeout: Duration,
    /// None: start at the current state.
    resume_from: Option<u64>,
}

impl WatchRequest {
    fn from_params(params: &HashMap<String, String>) -> Self {
        Self {
            bookmarks: params
                .get("allowWatchBookmarks")
                .is_some_and(|b| b == "true"),
            send_initial: params.get("sendInitialEvents").is_some_and(|b| b == "true"),
            timeout: params
                .get("timeoutSeconds")
                .and_then(|t| t.parse().ok())
                .map_or(DEFAULT_TIMEOUT, Duration::from_secs),
            resume_from: params
                .get("resourceVersion")
                .filter(|r| !r.is_empty() && *r != "0")
                .and_then(|r| r.parse::<u64>().ok()),
        }
    }
}

/// One watcher's view: its type, namespace and selectors.
struct Watcher {
    rt: Arc<ResourceType>,
    ns: Option<String>,
    options: ListOptions,
}

/// Where a watcher stands once its initial events are out.
struct Started {
    lines: Vec<Bytes>,
    receiver: broadcast::Receiver<Arc<WatchEvent>>,
    last_rv: u64,
}

impl Watcher {
    fn in_scope(&self, object: &Value) -> bool {
        self.ns
            .as_deref()
            .is_none_or(|n| object["metadata"]["namespace"].as_str() == Some(n))
            && self.options.labels.matches(object)
            && self.options.fields.matches(object)
    }

    /// What this watcher sees of one change: selectors are applied to the object before and
    /// after, so an object moving out of the selection is seen as deleted.
    fn visible(&self, event: &WatchEvent) -> Option<(&'static str, Value)> {
        // Events are stored in the shape of the type that owns the storage; show this type's.
        let object = self.rt.present(&event.object);
        let now = self.in_scope(&object);
        let before = event
            .previous
            .as_ref()
            .is_some_and(|p| self.in_scope(&self.rt.present(p)));
        let kind = match event.event_type {
            EventType::Added => now.then_some(EventType::Added),
            EventType::Deleted => (now || before).then_some(EventType::Deleted),
            EventType::Modified => match (before, now) {
                (true, true) => Some(EventType::Modified),
                (false, true) => Some(EventType::Added),
                (true, false) => Some(EventType::Deleted),
                (false, false) => None,
            },
        };
        kind.map(|k| (k.as_str(), object))
    }

    /// The line this watcher sends for one live change, if it sees it. A watcher without
    /// selectors sees every change of its namespace as it is, so its line is the one every such
    /// watcher sends: made once per event and shared.
    fn line(&self, event: &WatchEvent) -> Option<Bytes> {
        if self.options.labels.is_empty() && self.options.fields.is_empty() {
            if self
                .ns
                .as_deref()
                .is_some_and(|n| event.object["metadata"]["namespace"].as_str() != Some(n))
            {
                return None;
            }
            let make = || event_line(event.event_type.as_str(), &self.rt.present(&event.object));
            let version = self.rt.api_version();
            let (cached_version, line) = event.line.get_or_init(|| (version.clone(), make()));
            return Some(if *cached_version == version {
                line.clone()
            } else {
                make()
            });
        }
        self.visible(event).map(|(t, o)| event_line(t, &o))
    }

    /// Appends the visible part of `replay` to `lines`; returns the last rv seen.
    fn replay(&self, replay: Vec<Arc<WatchEvent>>, mut last: u64, lines: &mut Vec<Bytes>) -> u64 {
        for e in replay {
            if let Some((t, o)) = self.visible(&e) {
                lines.push(event_line(t, &o));
            }
            last = e.rv;
        }
        last
    }

    fn start(&self, store: &Store, request: &WatchRequest) -> ApiResult<Started> {
        let key = self.rt.storage_key();
        let Some(from) = request.resume_from.filter(|_| !request.send_initial) else {
            let everything = ListOptions {
                limit: 0,
                continue_token: None,
                ..self.options.clone()
            };
            let page = store.list(&self.rt, self.ns.as_deref(), &everything)?;
            let (replay, receiver, _) = store.subscribe(&key, Some(page.rv))?;
            let mut lines: Vec<Bytes> = page.items.iter().map(|o| event_line("ADDED", o)).collect();
            let last_rv = self.replay(replay, page.rv, &mut lines);
            if request.send_initial {
                lines.push(bookmark(&self.rt, last_rv, true));
            }
            return Ok(Started {
                lines,
                receiver,
                last_rv,
            });
        };
        let (replay, receiver, _) = store.subscribe(&key, Some(from))?;
        let mut lines = Vec::new();
        let last_rv = self.replay(replay, from, &mut lines);
        Ok(Started {
            lines,
            receiver,
            last_rv,
        })
    }

    /// Sends live events (and bookmarks) until the timeout, the client leaving, or the client
    /// falling too far behind.
    async fn follow(
        &self,
        store: &Store,
        started: Started,
        request: &WatchRequest,
        bookmark_interval: Duration,
        tx: &mpsc::Sender<Bytes>,
    ) {
        let Started {
            mut receiver,
            mut last_rv,
            ..
        } = started;
        let key = self.rt.storage_key();
        let deadline = tokio::time::sleep(request.timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(bookmark_interval);
        ticker.tick().await;
        loop {
            let line = tokio::select! {
                () = &mut deadline => return,
                _ = ticker.tick(), if request.bookmarks => bookmark(&self.rt, last_rv, false),
                received = receiver.recv() => match received {
                    Ok(event) => {
                        if event.rv <= last_rv || event.key != key { continue; }
                        last_rv = event.rv;
                        let Some(line) = self.line(&event) else { continue };
                        line
                    }
                    Err(RecvError::Lagged(_)) => {
                        // Too slow a reader: make it re-list, as the real server does.
                        let gone = ApiError::Gone { requested: last_rv, oldest: store.current_rv() };
                        let _ = tx.send(error_line(&gone)).await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                }
            };
            if tx.send(line).await.is_err() {
                return;
            }
        }
    }
}

/// Answers a watch request with a chunked stream of events.
pub(super) fn watch(
    app: &App,
    rt: &Arc<ResourceType>,
    ns: Option<&str>,
    options: ListOptions,
    params: &HashMap<String, String>,
) -> Response {
    let store = app.store.clone();
    let request = WatchRequest::from_params(params);
    let watcher = Watcher {
        rt: rt.clone(),
        ns: ns.map(str::to_owned),
        options,
    };
    let bookmark_interval = app.bookmark_interval;
    let stream = stream_lines(move |tx| async move {
        let started = match watcher.start(&store, &request) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(error_line(&e)).await;
                return;
            }
        };
        for line in &started.lines {
            if tx.send(line.clone()).await.is_err() {
                return;
            }
        }
        watcher
            .follow(&store, started, &request, bookmark_interval, &tx)
            .await;
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": event_type, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn error_line(e: &ApiError) -> Bytes {
    event_line("ERROR", &e.to_status())
}

fn bookmark(rt: &ResourceType, rv: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": metadata}),
    )
}

/// Runs a producer task and exposes what it sends as a body stream; the task ends when the client
/// goes away (its sends fail).
fn stream_lines<F, Fut>(producer: F) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>>
where
    F: FnOnce(mpsc::Sender<Bytes>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    // Bounded: a slow client pushes back on its own producer only.
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(producer(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::selector::LabelQuery;
    use crate::store::StoreConfig;

    fn watcher(labels: &str) -> Watcher {
        let store = Store::new(&StoreConfig::default()).unwrap();
        Watcher {
            rt: store.resource("", "v1", "configmaps").unwrap(),
            ns: Some("default".into()),
            options: ListOptions {
                labels: LabelQuery::parse(labels).unwrap(),
                ..ListOptions::default()
            },
        }
    }

    fn modified(before: &str, after: &str) -> WatchEvent {
        let cm = |app: &str| json!({"metadata": {"name": "x", "namespace": "default", "labels": {"app": app}}});
        WatchEvent {
            rv: 2,
            key: "/configmaps".into(),
            event_type: EventType::Modified,
            object: cm(after),
            previous: Some(cm(before)),
            line: std::sync::OnceLock::new(),
        }
    }

    #[test]
    fn an_object_moving_out_of_a_selection_is_seen_as_deleted_and_in_as_added() {
        let w = watcher("app=web");
        assert_eq!(w.visible(&modified("web", "db")).unwrap().0, "DELETED");
        assert_eq!(w.visible(&modified("db", "web")).unwrap().0, "ADDED");
        assert_eq!(w.visible(&modified("web", "web")).unwrap().0, "MODIFIED");
        assert!(w.visible(&modified("db", "db")).is_none());
    }

    #[test]
    fn resource_version_zero_starts_at_the_current_state() {
        let params = HashMap::from([("resourceVersion".to_owned(), "0".to_owned())]);
        assert_eq!(WatchRequest::from_params(&params).resume_from, None);
        let params = HashMap::from([("resourceVersion".to_owned(), "7".to_owned())]);
        assert_eq!(WatchRequest::from_params(&params).resume_from, Some(7));
    }
}
