//! A watched kind's cache that keeps a small record per object (what the speaker reads of it)
//! instead of the object: with ten thousand Services, their EndpointSlices and their
//! `ServiceL2Status` objects, whole objects would be most of the speaker's memory.
//!
//! It is filled from a watch the way kube's reflector fills its store: events apply as they
//! come, and a relist (`Init`, `InitApply`…, `InitDone`) is collected apart and replaces the
//! whole cache at its end, so objects deleted while the watch was down are dropped. Clones
//! share the cache; the [`CacheWriter`] is the watch's.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use kube::runtime::watcher;
use tokio::sync::watch;

/// Records by key, shared by the clones.
#[derive(Debug)]
pub struct Cache<T> {
    records: Arc<RwLock<HashMap<String, Arc<T>>>>,
    ready: watch::Receiver<bool>,
}

impl<T> Clone for Cache<T> {
    fn clone(&self) -> Self {
        Self {
            records: self.records.clone(),
            ready: self.ready.clone(),
        }
    }
}

/// Fills a [`Cache`] from watch events.
#[derive(Debug)]
pub struct CacheWriter<T, K> {
    records: Arc<RwLock<HashMap<String, Arc<T>>>>,
    ready: watch::Sender<bool>,
    relist: Option<HashMap<String, Arc<T>>>,
    key: fn(&K) -> String,
    record: fn(&K) -> Option<T>,
}

/// A cache and its writer: `key` names an object, `record` is what is kept of it (`None`:
/// nothing, as for an object that cannot be parsed).
pub fn cache<T, K>(
    key: fn(&K) -> String,
    record: fn(&K) -> Option<T>,
) -> (Cache<T>, CacheWriter<T, K>) {
    let records = Arc::new(RwLock::new(HashMap::new()));
    let (ready_tx, ready) = watch::channel(false);
    (
        Cache {
            records: records.clone(),
            ready,
        },
        CacheWriter {
            records,
            ready: ready_tx,
            relist: None,
            key,
            record,
        },
    )
}

impl<T, K> CacheWriter<T, K> {
    /// Applies one watch event.
    pub fn apply(&mut self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Init => self.relist = Some(HashMap::new()),
            watcher::Event::InitApply(o) => {
                if let Some(record) = (self.record)(o) {
                    self.relist
                        .get_or_insert_with(HashMap::new)
                        .insert((self.key)(o), Arc::new(record));
                }
            }
            watcher::Event::InitDone => {
                let relisted = self.relist.take().unwrap_or_default();
                *self.records.write().unwrap_or_else(PoisonError::into_inner) = relisted;
                self.ready.send_replace(true);
            }
            watcher::Event::Apply(o) => {
                let key = (self.key)(o);
                match (self.record)(o) {
                    Some(record) => self.write().insert(key, Arc::new(record)),
                    None => self.write().remove(&key),
                };
            }
            watcher::Event::Delete(o) => {
                self.write().remove(&(self.key)(o));
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<T>>> {
        self.records.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Cache<T> {
    /// The record of `key`.
    pub fn get(&self, key: &str) -> Option<Arc<T>> {
        self.read().get(key).cloned()
    }

    /// Every record.
    pub fn state(&self) -> Vec<Arc<T>> {
        self.read().values().cloned().collect()
    }

    /// Every key and its record.
    pub fn entries(&self) -> Vec<(String, Arc<T>)> {
        self.read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Every key.
    pub fn keys(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Resolves once the first list is in.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<T>>> {
        self.records.read().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An "object": its name and a value; the record keeps the value doubled, and nothing of
    /// a 0 (an object that cannot be parsed).
    type Obj = (&'static str, u32);

    fn new() -> (Cache<u32>, CacheWriter<u32, Obj>) {
        cache(
            |o: &Obj| o.0.to_owned(),
            |o: &Obj| (o.1 > 0).then_some(o.1 * 2),
        )
    }

    #[test]
    fn events_apply_as_they_come() {
        let (cache, mut writer) = new();
        writer.apply(&watcher::Event::Apply(("a", 1)));
        writer.apply(&watcher::Event::Apply(("b", 2)));
        assert_eq!(cache.get("a").as_deref(), Some(&2));
        writer.apply(&watcher::Event::Apply(("a", 5)));
        writer.apply(&watcher::Event::Delete(("b", 2)));
        assert_eq!(cache.get("a").as_deref(), Some(&10));
        assert!(cache.get("b").is_none());
        // Changed into something that cannot be read: not kept as it was.
        writer.apply(&watcher::Event::Apply(("a", 0)));
        assert!(cache.get("a").is_none());
    }

    #[test]
    fn a_relist_replaces_everything_at_its_end_and_makes_the_cache_ready() {
        let (cache, mut writer) = new();
        writer.apply(&watcher::Event::Apply(("gone-meanwhile", 1)));
        writer.apply(&watcher::Event::Init);
        writer.apply(&watcher::Event::InitApply(("a", 1)));
        // Until the relist ends, readers see the old state.
        assert!(cache.get("gone-meanwhile").is_some());
        assert!(cache.get("a").is_none());
        assert!(!*cache.ready.borrow());
        writer.apply(&watcher::Event::InitDone);
        assert!(*cache.ready.borrow());
        assert_eq!(cache.keys(), ["a"]);
        assert_eq!(cache.state().len(), 1);
    }
}
