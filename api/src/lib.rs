//! edge's shared vocabulary: object types, validation, selectors, the CBOR codec and the QUIC wire protocol.
//!
//! Everything here is usable by `edgectl` without pulling in wasmtime or redb.

pub mod apps;
pub mod codec;
pub mod config;
pub mod configdata;
pub mod event;
pub mod intstr;
pub mod manifest;
pub mod meta;
pub mod object;
mod object_serde;
pub mod pod;
pub mod quantity;
pub mod scheduling;
pub mod selector;
pub mod service;
pub mod tls;
pub mod validation;
mod validation_apps;
pub mod wire;
pub mod workload;

pub use apps::{DaemonSet, Deployment, Job, PodTemplateSpec, ReplicaSet};
pub use configdata::{ConfigMap, Secret};
pub use event::Event;
pub use intstr::IntOrString;
pub use meta::{Condition, ObjectMeta, OwnerReference};
pub use object::{Kind, Namespace, Node, NodeSpec, NodeStatus, Object, ObjectKey};
pub use pod::{Container, ContainerState, ContainerStatus, Pod, PodPhase, PodSpec, PodStatus};
pub use service::{Endpoints, Service};

/// The API group/version every built-in object carries.
pub const API_VERSION: &str = "edge.dev/v1";
/// The namespace used when a manifest or command names none.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The TLS server name every control-plane certificate carries, whatever address it is reached at.
pub const SERVER_NAME: &str = "edge-server";
/// The default control-plane QUIC port.
pub const DEFAULT_PORT: u16 = 6443;
