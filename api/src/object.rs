//! The closed set of object kinds, the `Object` sum type that carries any of them, and storage keys.

use crate::apps::{DaemonSet, Deployment, Job, ReplicaSet};
use crate::configdata::{ConfigMap, Secret};
use crate::event::Event;
use crate::meta::{Condition, ObjectMeta};
use crate::pod::Pod;
use crate::service::{Endpoints, Service};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    ConfigMap,
    Secret,
    Event,
    Deployment,
    ReplicaSet,
    DaemonSet,
    Job,
    Service,
    Endpoints,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Namespace,
        Kind::Node,
        Kind::Pod,
        Kind::ConfigMap,
        Kind::Secret,
        Kind::Event,
        Kind::Deployment,
        Kind::ReplicaSet,
        Kind::DaemonSet,
        Kind::Job,
        Kind::Service,
        Kind::Endpoints,
    ];

    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::Node)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
            Kind::Event => "Event",
            Kind::Deployment => "Deployment",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::Job => "Job",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
        }
    }

    /// The plural lower-case name used on the command line (`pods`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Node => "nodes",
            Kind::Pod => "pods",
            Kind::ConfigMap => "configmaps",
            Kind::Secret => "secrets",
            Kind::Event => "events",
            Kind::Deployment => "deployments",
            Kind::ReplicaSet => "replicasets",
            Kind::DaemonSet => "daemonsets",
            Kind::Job => "jobs",
            Kind::Service => "services",
            Kind::Endpoints => "endpoints",
        }
    }

    /// Accepts what kubectl users type: kind, plural, singular or short name, any case.
    pub fn parse(s: &str) -> Option<Kind> {
        let l = s.to_ascii_lowercase();
        Kind::ALL.into_iter().find(|k| {
            let short = match k {
                Kind::Namespace => "ns",
                Kind::Node => "no",
                Kind::Pod => "po",
                Kind::ConfigMap => "cm",
                Kind::Secret => "secret",
                Kind::Event => "ev",
                Kind::Deployment => "deploy",
                Kind::ReplicaSet => "rs",
                Kind::DaemonSet => "ds",
                Kind::Job => "job",
                Kind::Service => "svc",
                Kind::Endpoints => "ep",
            };
            l == k.as_str().to_ascii_lowercase() || l == k.plural() || l == short
        })
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one object. Cluster-scoped kinds have an empty namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        let namespace = if kind.namespaced() { namespace } else { "" };
        ObjectKey {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// The storage key: `Kind/namespace/name`, so a prefix scan lists a kind or a namespace.
    pub fn storage_key(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace, self.name)
    }

    /// The prefix under which all objects of `kind` (in `namespace`, if given) are stored.
    pub fn storage_prefix(kind: Kind, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if kind.namespaced() => format!("{kind}/{ns}/"),
            _ => format!("{kind}/"),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} \"{}\"", self.kind, self.name)
        } else {
            write!(f, "{} \"{}/{}\"", self.kind, self.namespace, self.name)
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Namespace {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub status: NamespaceStatus,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceStatus {
    #[serde(default)]
    pub phase: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: NodeSpec,
    #[serde(default)]
    pub status: NodeStatus,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    #[serde(default)]
    pub unschedulable: bool,
    /// Repel pods that do not tolerate them (see `scheduling`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<crate::scheduling::Taint>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    /// `cpu` (cores or millicores), `memory` (bytes as a quantity), `pods`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub node_info: NodeSystemInfo,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSystemInfo {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub operating_system: String,
    #[serde(default)]
    pub agent_version: String,
    #[serde(default)]
    pub runtime_version: String,
}

impl Node {
    pub fn is_ready(&self) -> bool {
        crate::meta::condition(&self.status.conditions, "Ready").is_some_and(|c| c.is_true())
    }

    /// Allocatable `resource` in base units; falls back to capacity.
    pub fn allocatable(&self, resource: &str) -> u64 {
        self.status
            .allocatable
            .get(resource)
            .or_else(|| self.status.capacity.get(resource))
            .and_then(|q| crate::quantity::parse(resource, q).ok())
            .unwrap_or(0)
    }
}

/// Any object. The `kind` field of a manifest selects the variant (see `object_serde` for the
/// binary form).
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Namespace(Namespace),
    Node(Node),
    Pod(Pod),
    ConfigMap(ConfigMap),
    Secret(Secret),
    Event(Event),
    Deployment(Deployment),
    ReplicaSet(ReplicaSet),
    DaemonSet(DaemonSet),
    Job(Job),
    Service(Service),
    Endpoints(Endpoints),
}

macro_rules! each_variant {
    ($self:expr, $o:ident => $body:expr) => {
        match $self {
            Object::Namespace($o) => $body,
            Object::Node($o) => $body,
            Object::Pod($o) => $body,
            Object::ConfigMap($o) => $body,
            Object::Secret($o) => $body,
            Object::Event($o) => $body,
            Object::Deployment($o) => $body,
            Object::ReplicaSet($o) => $body,
            Object::DaemonSet($o) => $body,
            Object::Job($o) => $body,
            Object::Service($o) => $body,
            Object::Endpoints($o) => $body,
        }
    };
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Namespace(_) => Kind::Namespace,
            Object::Node(_) => Kind::Node,
            Object::Pod(_) => Kind::Pod,
            Object::ConfigMap(_) => Kind::ConfigMap,
            Object::Secret(_) => Kind::Secret,
            Object::Event(_) => Kind::Event,
            Object::Deployment(_) => Kind::Deployment,
            Object::ReplicaSet(_) => Kind::ReplicaSet,
            Object::DaemonSet(_) => Kind::DaemonSet,
            Object::Job(_) => Kind::Job,
            Object::Service(_) => Kind::Service,
            Object::Endpoints(_) => Kind::Endpoints,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        each_variant!(self, o => &o.metadata)
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        each_variant!(self, o => &mut o.metadata)
    }

    pub fn api_version_mut(&mut self) -> &mut String {
        each_variant!(self, o => &mut o.api_version)
    }

    pub fn key(&self) -> ObjectKey {
        let m = self.meta();
        ObjectKey::new(self.kind(), &m.namespace, &m.name)
    }

    /// Fills an empty namespace of a namespaced object (what `-n` does for manifests without one).
    pub fn default_namespace(&mut self, namespace: &str) {
        if self.kind().namespaced() && self.meta().namespace.is_empty() {
            self.meta_mut().namespace = namespace.to_string();
        }
    }

    pub fn as_pod(&self) -> Option<&Pod> {
        match self {
            Object::Pod(p) => Some(p),
            _ => None,
        }
    }

    pub fn as_node(&self) -> Option<&Node> {
        match self {
            Object::Node(n) => Some(n),
            _ => None,
        }
    }

    /// True when the user-owned parts (spec, labels, annotations) of two objects are equal,
    /// which is what decides whether an apply changes anything.
    pub fn same_desired_state(&self, other: &Object) -> bool {
        let (a, b) = (self.meta(), other.meta());
        if a.labels != b.labels || a.annotations != b.annotations {
            return false;
        }
        match (self, other) {
            (Object::Namespace(_), Object::Namespace(_)) => true,
            (Object::ConfigMap(x), Object::ConfigMap(y)) => {
                x.data == y.data && x.binary_data == y.binary_data
            }
            (Object::Secret(x), Object::Secret(y)) => {
                x.type_ == y.type_ && x.data == y.data && x.string_data == y.string_data
            }
            (Object::Node(x), Object::Node(y)) => x.spec == y.spec,
            (Object::Deployment(x), Object::Deployment(y)) => x.spec == y.spec,
            (Object::ReplicaSet(x), Object::ReplicaSet(y)) => x.spec == y.spec,
            (Object::DaemonSet(x), Object::DaemonSet(y)) => x.spec == y.spec,
            (Object::Job(x), Object::Job(y)) => x.spec == y.spec,
            (Object::Service(x), Object::Service(y)) => x.spec == y.spec,
            (Object::Endpoints(x), Object::Endpoints(y)) => x.subsets == y.subsets,
            (Object::Event(x), Object::Event(y)) => x == y,
            (Object::Pod(x), Object::Pod(y)) => {
                let mut xs = x.spec.clone();
                let mut ys = y.spec.clone();
                // The binding is the scheduler's, not the user's.
                xs.node_name = None;
                ys.node_name = None;
                xs == ys
            }
            _ => false,
        }
    }

    /// Copies the status (owned by the system) from `from` into `self`.
    pub fn take_status_from(&mut self, from: &Object) {
        match (self, from) {
            (Object::Namespace(a), Object::Namespace(b)) => a.status = b.status.clone(),
            (Object::Node(a), Object::Node(b)) => a.status = b.status.clone(),
            (Object::Deployment(a), Object::Deployment(b)) => a.status = b.status.clone(),
            (Object::ReplicaSet(a), Object::ReplicaSet(b)) => a.status = b.status.clone(),
            (Object::DaemonSet(a), Object::DaemonSet(b)) => a.status = b.status.clone(),
            (Object::Job(a), Object::Job(b)) => a.status = b.status.clone(),
            (Object::Service(a), Object::Service(b)) => a.status = b.status.clone(),

            (Object::Pod(a), Object::Pod(b)) => {
                a.status = b.status.clone();
                if a.spec.node_name.is_none() {
                    a.spec.node_name = b.spec.node_name.clone();
                }
            }
            _ => {}
        }
    }
}
