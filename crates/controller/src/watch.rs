//! Every watch of the controller, built one way: a kube-runtime watcher over
//! `DeserializeGuard<K>` (an object that does not parse is reported, not fatal to the watch),
//! with the default backoff, its events turned into [`Change`]s by one [`Relist`] per kind.
//!
//! A watcher (re)lists as `Init`, `InitApply`…, `InitDone`; objects that vanished while the watch
//! was down are simply absent from the relist, so [`Relist`] names them at `InitDone`.

use std::collections::BTreeSet;
use std::fmt::Debug;

use futures::{Stream, StreamExt};
use kube::api::{Api, ObjectMeta};
use kube::core::DeserializeGuard;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;

use crate::error::Error;

/// The watch of `api`, named `what` in errors.
pub fn watch<K>(
    api: Api<DeserializeGuard<K>>,
    what: &'static str,
) -> impl Stream<Item = Result<Event<DeserializeGuard<K>>, Error>> + Send + 'static
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    // Backoff on errors: without it a lost apiserver would be retried in a tight loop.
    watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .map(move |r| {
            r.map_err(|source| Error::Watch {
                watch: what,
                source,
            })
        })
}

/// What one watch event means, the same for every kind.
#[derive(Debug)]
pub enum Change<K, Key> {
    /// Nothing to do (a relist started).
    Nothing,
    /// An object was created or changed (or is part of a relist).
    Applied(K),
    /// An object that does not parse: report it. It counts as present in a relist, so the
    /// last version that parsed is kept (a bad edit never takes addresses away).
    Invalid {
        /// Its metadata (what could be read), boxed so the enum stays small.
        meta: Box<ObjectMeta>,
        /// The parse error.
        error: String,
    },
    /// An object was deleted.
    Deleted(Key),
    /// A relist finished; these known objects were not in it, so they are gone.
    Gone(Vec<Key>),
}

/// Tracks one kind's relists.
#[derive(Debug)]
pub struct Relist<Key> {
    key_of: fn(&ObjectMeta) -> Key,
    seen: Option<BTreeSet<Key>>,
    done_once: bool,
}

impl<Key: Ord + Clone> Relist<Key> {
    /// Keys objects by `key_of` (name, or namespace and name).
    pub fn new(key_of: fn(&ObjectMeta) -> Key) -> Self {
        Self {
            key_of,
            seen: None,
            done_once: false,
        }
    }

    /// Whether a first full list went through: the kind's cache is loaded.
    pub fn is_loaded(&self) -> bool {
        self.done_once
    }

    fn saw(&mut self, meta: &ObjectMeta) {
        if let Some(seen) = self.seen.as_mut() {
            seen.insert((self.key_of)(meta));
        }
    }

    /// The change `event` makes; `known` lists the keys held now (read only at `InitDone`).
    pub fn change<K>(
        &mut self,
        event: Event<DeserializeGuard<K>>,
        known: impl FnOnce() -> Vec<Key>,
    ) -> Change<K, Key>
    where
        K: kube::Resource,
    {
        match event {
            Event::Init => {
                self.seen = Some(BTreeSet::new());
                Change::Nothing
            }
            Event::InitApply(DeserializeGuard(obj)) | Event::Apply(DeserializeGuard(obj)) => {
                match obj {
                    Ok(obj) => {
                        self.saw(obj.meta());
                        Change::Applied(obj)
                    }
                    Err(invalid) => {
                        self.saw(&invalid.metadata);
                        Change::Invalid {
                            meta: Box::new(invalid.metadata),
                            error: invalid.error,
                        }
                    }
                }
            }
            Event::Delete(DeserializeGuard(obj)) => Change::Deleted(match obj {
                Ok(obj) => (self.key_of)(obj.meta()),
                Err(invalid) => (self.key_of)(&invalid.metadata),
            }),
            Event::InitDone => {
                self.done_once = true;
                let seen = self.seen.take().unwrap_or_default();
                Change::Gone(known().into_iter().filter(|k| !seen.contains(k)).collect())
            }
        }
    }
}

/// The key of a cluster-scoped object or one in a fixed namespace: its name.
pub fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;

    fn ns(name: &str) -> DeserializeGuard<Namespace> {
        DeserializeGuard(Ok(Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }))
    }

    #[test]
    fn a_relist_names_the_objects_it_no_longer_holds() {
        let mut r = Relist::new(name_of);
        assert!(matches!(
            r.change(Event::<DeserializeGuard<Namespace>>::Init, Vec::new),
            Change::Nothing
        ));
        assert!(!r.is_loaded());
        assert!(matches!(
            r.change(Event::InitApply(ns("kept")), Vec::new),
            Change::Applied(_)
        ));
        let Change::Gone(gone) = r.change(Event::<DeserializeGuard<Namespace>>::InitDone, || {
            vec!["kept".to_owned(), "vanished".to_owned()]
        }) else {
            panic!("InitDone ends the relist");
        };
        assert_eq!(gone, ["vanished"]);
        assert!(r.is_loaded());
    }

    #[test]
    fn a_delete_names_the_object() {
        let mut r = Relist::new(name_of);
        let Change::Deleted(key) = r.change(Event::Delete(ns("old")), Vec::new) else {
            panic!("Delete is a deletion");
        };
        assert_eq!(key, "old");
    }
}
