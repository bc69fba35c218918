//! What the watches' events touched, gathered between two rounds so that a round reads again
//! only that: the facts of the Services that changed (or whose EndpointSlices did), the status
//! objects of the Services whose `ServiceL2Status` changed, and the whole cluster only when a
//! node, an advertisement, a pool or a speaker Pod changed, or a watch listed everything again.

use std::collections::{BTreeSet, HashMap};

/// One watch event, as a round needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touch {
    /// A Service (`namespace/name`) changed or went.
    Service(String),
    /// An EndpointSlice (`namespace/name`) now belongs to `service` (`None`: it went).
    Slice {
        /// The slice.
        name: String,
        /// Its Service, `namespace/name`.
        service: Option<String>,
    },
    /// A `ServiceL2Status` (object name) now reports on `service` (`None`: it went).
    Status {
        /// The object.
        name: String,
        /// Its Service, `namespace/name`.
        service: Option<String>,
    },
    /// A node, advertisement, pool or speaker Pod changed.
    Cluster,
    /// A watch listed everything again (its start, or after it fell behind): what went
    /// meanwhile was never seen go.
    Relisted,
}

/// Objects filed by the Service they belong to: EndpointSlices, `ServiceL2Status` objects.
#[derive(Debug, Clone, Default)]
pub struct ByService {
    service_of: HashMap<String, String>,
    names: HashMap<String, BTreeSet<String>>,
}

impl ByService {
    /// Files `name` under `service` (`None`: it went); returns the Service it was filed under
    /// before, if it was.
    pub fn file(&mut self, name: &str, service: Option<&str>) -> Option<String> {
        let before = self.service_of.remove(name);
        if let Some(old) = &before
            && let Some(names) = self.names.get_mut(old)
        {
            names.remove(name);
            if names.is_empty() {
                self.names.remove(old);
            }
        }
        if let Some(service) = service {
            self.service_of.insert(name.to_owned(), service.to_owned());
            self.names
                .entry(service.to_owned())
                .or_default()
                .insert(name.to_owned());
        }
        before
    }

    /// The objects filed under `service`.
    pub fn names(&self, service: &str) -> impl Iterator<Item = &String> {
        self.names.get(service).into_iter().flatten()
    }

    /// Every Service with an object filed.
    pub fn services(&self) -> impl Iterator<Item = &String> {
        self.names.keys()
    }

    /// Files every object afresh.
    pub fn refile(&mut self, objects: impl IntoIterator<Item = (String, String)>) {
        self.service_of.clear();
        self.names.clear();
        for (name, service) in objects {
            self.file(&name, Some(&service));
        }
    }
}

/// What the next round must read again.
#[derive(Debug, Clone, Default)]
pub struct Dirty {
    /// Everything: a watch listed again, or the caches just loaded.
    pub everything: bool,
    /// The cluster's nodes, advertisements, pools or speaker Pods.
    pub cluster: bool,
    /// Services whose facts to read again.
    pub services: BTreeSet<String>,
    /// Services whose `ServiceL2Status` objects to look at again.
    pub statuses: BTreeSet<String>,
}

impl Dirty {
    /// Takes in `touch`, keeping the indexes of slices and statuses current.
    pub fn note(&mut self, touch: Touch, slices: &mut ByService, statuses: &mut ByService) {
        match touch {
            Touch::Service(key) => {
                self.services.insert(key);
            }
            Touch::Slice { name, service } => {
                let before = slices.file(&name, service.as_deref());
                self.services.extend(before.into_iter().chain(service));
            }
            Touch::Status { name, service } => {
                let before = statuses.file(&name, service.as_deref());
                self.statuses.extend(before.into_iter().chain(service));
            }
            Touch::Cluster => self.cluster = true,
            Touch::Relisted => self.everything = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(index: &ByService, service: &str) -> Vec<String> {
        index.names(service).cloned().collect()
    }

    #[test]
    fn an_object_moved_to_another_service_touches_both() {
        let mut dirty = Dirty::default();
        let mut slices = ByService::default();
        let mut statuses = ByService::default();
        let slice = |service: Option<&str>| Touch::Slice {
            name: "ns/web-x1".into(),
            service: service.map(str::to_owned),
        };
        dirty.note(slice(Some("ns/web")), &mut slices, &mut statuses);
        assert_eq!(names(&slices, "ns/web"), ["ns/web-x1"]);
        let mut dirty = Dirty::default();
        dirty.note(slice(Some("ns/api")), &mut slices, &mut statuses);
        assert_eq!(dirty.services, ["ns/api".into(), "ns/web".into()].into());
        assert!(names(&slices, "ns/web").is_empty());
        let mut dirty = Dirty::default();
        dirty.note(slice(None), &mut slices, &mut statuses);
        assert_eq!(dirty.services, ["ns/api".into()].into());
        assert_eq!(slices.services().count(), 0);
        assert!(!dirty.cluster && !dirty.everything && dirty.statuses.is_empty());
    }

    #[test]
    fn a_status_touches_only_the_statuses_of_its_service() {
        let mut dirty = Dirty::default();
        let mut slices = ByService::default();
        let mut statuses = ByService::default();
        let touch = Touch::Status {
            name: "l2-0a".into(),
            service: Some("ns/web".into()),
        };
        dirty.note(touch, &mut slices, &mut statuses);
        assert_eq!(dirty.statuses, ["ns/web".into()].into());
        assert!(dirty.services.is_empty());
        assert_eq!(names(&statuses, "ns/web"), ["l2-0a"]);
        dirty.note(Touch::Relisted, &mut slices, &mut statuses);
        assert!(dirty.everything);
        statuses.refile([("l2-0b".into(), "ns/db".into())]);
        assert!(names(&statuses, "ns/web").is_empty());
        assert_eq!(names(&statuses, "ns/db"), ["l2-0b"]);
    }
}
