//! How an `Object` is (de)serialized: tagged by a `kind` field in YAML and JSON, as users write
//! it, but as a `{Kind: body}` pair in CBOR (storage, wire, raft log).
//!
//! Why two forms: serde reads an internally tagged enum by first buffering the whole map into an
//! intermediate tree, since `kind` may come after the other fields; for every object the control
//! plane decoded (API requests, raft entries, the stored copy checked on each write) that tree
//! cost as much again as the decoding itself. The pair form is read in one pass. The binary
//! formats say so through `is_human_readable`, so the choice needs no flag.

use crate::apps::{DaemonSet, Deployment, Job, ReplicaSet};
use crate::configdata::{ConfigMap, Secret};
use crate::event::Event;
use crate::object::{Namespace, Node, Object};
use crate::pod::Pod;
use crate::service::{Endpoints, Service};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares, for the listed variants, the borrowed and owned mirror enums of each form and the
/// conversions between them and `Object`.
macro_rules! object_forms {
    ($($variant:ident),* $(,)?) => {
        #[derive(Serialize)]
        #[serde(tag = "kind")]
        enum TaggedRef<'a> { $($variant(&'a $variant)),* }

        #[derive(Deserialize)]
        #[serde(tag = "kind")]
        enum Tagged { $($variant($variant)),* }

        #[derive(Serialize)]
        enum PairRef<'a> { $($variant(&'a $variant)),* }

        #[derive(Deserialize)]
        enum Pair { $($variant($variant)),* }

        impl Serialize for Object {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    match self { $(Object::$variant(o) => TaggedRef::$variant(o)),* }
                        .serialize(serializer)
                } else {
                    match self { $(Object::$variant(o) => PairRef::$variant(o)),* }
                        .serialize(serializer)
                }
            }
        }

        impl<'de> Deserialize<'de> for Object {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Ok(if deserializer.is_human_readable() {
                    match Tagged::deserialize(deserializer)? { $(Tagged::$variant(o) => Object::$variant(o)),* }
                } else {
                    match Pair::deserialize(deserializer)? { $(Pair::$variant(o) => Object::$variant(o)),* }
                })
            }
        }
    };
}

object_forms!(
    Namespace, Node, Pod, ConfigMap, Secret, Event, Deployment, ReplicaSet, DaemonSet, Job,
    Service, Endpoints,
);

#[cfg(test)]
mod tests {
    use crate::{ConfigMap, Object};

    fn config_map() -> Object {
        let mut cm = ConfigMap::default();
        cm.metadata.name = "settings".into();
        cm.metadata.namespace = "default".into();
        cm.data.insert("mode".into(), "fast".into());
        Object::ConfigMap(cm)
    }

    #[test]
    fn json_carries_kind_as_a_field() {
        let json = serde_json::to_value(config_map()).unwrap();
        assert_eq!(json["kind"], "ConfigMap");
        assert_eq!(json["data"]["mode"], "fast");
        let back: Object = serde_json::from_value(json).unwrap();
        assert_eq!(back, config_map());
    }

    #[test]
    fn cbor_round_trips_as_a_kind_body_pair() {
        let bytes = crate::codec::encode("object", &config_map()).unwrap();
        let pair: std::collections::BTreeMap<String, serde_cbor::Value> =
            serde_cbor::from_slice(&bytes).unwrap();
        assert_eq!(pair.keys().collect::<Vec<_>>(), ["ConfigMap"]);
        let back: Object = crate::codec::decode("object", &bytes).unwrap();
        assert_eq!(back, config_map());
    }

    #[test]
    fn unknown_kinds_are_errors_in_both_forms() {
        let json = serde_json::json!({"kind": "Gadget", "metadata": {"name": "x"}});
        let err = serde_json::from_value::<Object>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Gadget"), "{err}");
        let bytes = serde_cbor::to_vec(&serde_json::json!({"Gadget": {}})).unwrap();
        assert!(crate::codec::decode::<Object>("object", &bytes).is_err());
    }
}
