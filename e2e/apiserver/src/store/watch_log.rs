//! Watch fan-out: the bounded log of changes that watches resume from, and the broadcast channel
//! live watchers receive on. Bookmarks and per-watcher filtering are the HTTP watch's business.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use super::Store;
use super::objects::{State, meta};
use crate::error::{ApiError, ApiResult};

/// Kind of change a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the log and sent to watchers.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Storage key of the resource (`group/plural`).
    pub key: String,
    /// What happened.
    pub event_type: EventType,
    /// The object after the change (for Deleted: the last state, with the deletion's rv).
    pub object: Value,
    /// The object before the change, for Modified: watchers with selectors need it.
    pub previous: Option<Value>,
    /// The event's line as watchers without selectors send it, made by the first of them and
    /// shared by the rest, with the API version it is in: thousands of events to several
    /// watchers are serialized once each, not once per watcher.
    pub line: std::sync::OnceLock<(String, axum::body::Bytes)>,
}

/// What a new watcher gets: the logged events to replay, the live receiver, and the latest rv.
pub type Subscription = (
    Vec<Arc<WatchEvent>>,
    broadcast::Receiver<Arc<WatchEvent>>,
    u64,
);

impl State {
    /// Logs a change, notes its owner references, and sends it to live watchers. Called with
    /// the lock held, so that [`Store::subscribe`] (same lock) never misses or repeats an event.
    pub(super) fn record(
        &mut self,
        sender: &broadcast::Sender<Arc<WatchEvent>>,
        event: WatchEvent,
    ) {
        let place = (
            event.key.clone(),
            (
                meta(&event.object, "namespace"),
                meta(&event.object, "name"),
            ),
        );
        match event.event_type {
            // What was stored: a delete that follows a write (the last finalizer removed)
            // carries the written object, whose references may differ.
            EventType::Deleted => self
                .owners
                .removed(&place, event.previous.as_ref().unwrap_or(&event.object)),
            EventType::Added | EventType::Modified => {
                self.owners
                    .stored(&place, event.previous.as_ref(), &event.object);
            }
        }
        let event = Arc::new(event);
        self.log.push_back(event.clone());
        while self.log.len() > self.capacity {
            if let Some(old) = self.log.pop_front() {
                self.compacted = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = sender.send(event);
    }
}

impl Store {
    /// Subscribes to live events, returning the logged events after `from_rv` (which the caller
    /// sends first) and the receiver for the rest. `from_rv` = None starts at the current state.
    ///
    /// # Errors
    /// `Gone` when `from_rv` is older than the log remembers.
    pub fn subscribe(&self, key: &str, from_rv: Option<u64>) -> ApiResult<Subscription> {
        let state = self.lock();
        let receiver = self.events.subscribe();
        let from = from_rv.unwrap_or(state.rv);
        if from < state.compacted {
            return Err(ApiError::Gone {
                requested: from,
                oldest: state.compacted + 1,
            });
        }
        let replay = state
            .log
            .iter()
            .filter(|e| e.rv > from && e.key == key)
            .cloned()
            .collect();
        Ok((replay, receiver, state.rv))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;
    use crate::store::StoreConfig;

    #[test]
    fn a_resume_point_older_than_the_log_is_gone_and_a_recent_one_replays_the_rest() {
        let store = Store::new(&StoreConfig {
            event_log_capacity: 2,
            ..StoreConfig::default()
        })
        .unwrap();
        let cm = store.resource("", "v1", "configmaps").unwrap();
        for name in ["a", "b", "c"] {
            store
                .create(&cm, "default", json!({"metadata": {"name": name}}), "t")
                .unwrap();
        }
        assert_eq!(
            store
                .subscribe(&cm.storage_key(), Some(1))
                .unwrap_err()
                .code(),
            410
        );
        let latest = store.current_rv();
        let (replay, _, _) = store
            .subscribe(&cm.storage_key(), Some(latest - 1))
            .unwrap();
        assert_eq!(replay.len(), 1);
        assert_eq!(replay[0].object["metadata"]["name"], "c");
    }
}
