//! kube-apiserver keeps `events.k8s.io/v1` and core `v1` Events in one store and converts between
//! the two shapes, so an Event a controller creates through the new API shows up in `kubectl
//! describe` (which reads the core API). The same happens here: both are stored in the core
//! shape, and `events.k8s.io` clients see them converted.

use serde_json::{Map, Value};

/// Field renames between the two shapes: (events.k8s.io/v1, core/v1).
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedCount", "count"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedSource", "source"),
];

fn rename(object: &Value, from_new: bool) -> Value {
    let Some(map) = object.as_object() else {
        return object.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        let renamed = RENAMES.iter().find_map(|(new, old)| {
            if from_new {
                (key == new).then_some(*old)
            } else {
                (key == old).then_some(*new)
            }
        });
        out.insert(renamed.unwrap_or(key).to_owned(), value.clone());
    }
    Value::Object(out)
}

/// An `events.k8s.io/v1` Event in the core shape it is stored in.
pub fn to_core(event: &Value) -> Value {
    let mut core = rename(event, true);
    // kubectl describe shows `source.component` as "From".
    if core.get("source").is_none()
        && let Some(component) = core.get("reportingComponent").cloned()
    {
        core["source"] = serde_json::json!({"component": component});
    }
    core["apiVersion"] = Value::String("v1".into());
    core
}

/// A stored (core) Event as an `events.k8s.io/v1` client sees it.
pub fn to_events_v1(core: &Value) -> Value {
    let mut event = rename(core, false);
    if event.get("reportingController").is_none()
        && let Some(component) = core["source"].get("component").cloned()
    {
        event["reportingController"] = component;
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_between_the_two_shapes() {
        let new = json!({"metadata": {"name": "e"}, "regarding": {"name": "web"}, "note": "hi",
                         "reason": "IPAllocated", "reportingController": "ferrolb-controller", "type": "Normal"});
        let core = to_core(&new);
        assert_eq!(core["involvedObject"]["name"], "web");
        assert_eq!(core["message"], "hi");
        assert_eq!(core["source"]["component"], "ferrolb-controller");
        let back = to_events_v1(&core);
        assert_eq!(back["regarding"], new["regarding"]);
        assert_eq!(back["note"], "hi");
        assert_eq!(back["reportingController"], "ferrolb-controller");
    }
}
