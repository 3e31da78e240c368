//! Workload controllers: ReplicaSet, Deployment, DaemonSet, Job, the garbage collector and the
//! namespace cascade. Each is a pure `reconcile(object, &world, now) -> actions` over a store
//! snapshot; `runtime` turns the actions into compare-and-swap raft writes on the leader.

pub mod daemonset;
pub mod deployment;
mod deployment_rollout;
pub mod gc;
pub mod job;
pub mod namespace;
pub mod pods;
pub mod replicaset;
pub mod runtime;
pub mod world;

#[cfg(test)]
mod tests;

pub use world::World;

use crate::context::ControlPlane;
use chrono::{DateTime, Utc};
use edge_api::event::EventType;
use edge_api::meta::{ObjectMeta, OwnerReference};
use edge_api::object::{Kind, Object, ObjectKey};
use edge_api::service::ObjectReference;
use edge_api::wire::WatchEvent;
use edge_api::PodTemplateSpec;
use std::sync::Arc;
use std::time::Duration;

/// The label a Deployment's ReplicaSets, their templates and pods carry.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The label a DaemonSet's pods carry: the hash of the template they were made from.
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
/// The revision annotation on a Deployment and its ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// An event to record about an object (see `crate::events`).
#[derive(Clone, Debug, PartialEq)]
pub struct EventNote {
    pub involved: ObjectReference,
    pub type_: EventType,
    pub reason: String,
    /// `{name}` is replaced by the name of the object a `Create` made.
    pub message: String,
    pub component: &'static str,
}

impl EventNote {
    pub fn normal(
        about: &ObjectReference,
        component: &'static str,
        reason: &str,
        msg: &str,
    ) -> Self {
        EventNote {
            involved: about.clone(),
            type_: EventType::Normal,
            reason: reason.into(),
            message: msg.into(),
            component,
        }
    }

    pub fn warning(
        about: &ObjectReference,
        component: &'static str,
        reason: &str,
        msg: &str,
    ) -> Self {
        EventNote {
            type_: EventType::Warning,
            ..EventNote::normal(about, component, reason, msg)
        }
    }
}

/// One write a decision asks for. Every write is a compare-and-swap on the state the decision
/// saw, so a decision made from a stale snapshot fails and is retried from a fresh one.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create an object that must not exist yet. With `generate_name` the runtime names it
    /// `<generate_name><5 random characters>`; it also fills uid and creation time.
    Create {
        object: Object,
        generate_name: Option<String>,
        /// Recorded once the object exists.
        event: Option<EventNote>,
    },
    /// Replace the object as stored at its `metadata.resourceVersion`.
    Update(Object),
    /// Remove the object now, if it is still at `resource_version`.
    Delete {
        key: ObjectKey,
        resource_version: u64,
    },
    Event(EventNote),
}

/// What one reconcile decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reconciled {
    pub actions: Vec<Action>,
    /// Look again after this long even if nothing changes (minReadySeconds, deadlines, TTLs).
    pub requeue_after: Option<Duration>,
}

impl Reconciled {
    pub fn requeue_within(&mut self, after: Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(after, |d| d.min(after)));
    }
}

/// A controller as the runtime drives it.
pub trait Controller: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The kinds each batch's `World` holds.
    fn reads(&self) -> &'static [Kind];
    /// Keys to reconcile because `ev` was applied.
    fn keys_for(&self, ev: &WatchEvent, out: &mut Vec<ObjectKey>);
    /// Every key to reconcile on a resync.
    fn primaries(&self, world: &World) -> Vec<ObjectKey>;
    fn reconcile(&self, key: &ObjectKey, world: &World, now: DateTime<Utc>) -> Reconciled;
}

/// Starts every controller loop; each acts only while this server leads.
pub fn spawn_all(cp: Arc<ControlPlane>) -> Vec<tokio::task::JoinHandle<()>> {
    let controllers: Vec<Arc<dyn Controller>> = vec![
        Arc::new(replicaset::ReplicaSetController),
        Arc::new(deployment::DeploymentController),
        Arc::new(daemonset::DaemonSetController),
        Arc::new(job::JobController),
        Arc::new(gc::GarbageCollector),
        Arc::new(namespace::NamespaceController),
        Arc::new(crate::events::EventExpiry::default()),
    ];
    controllers
        .into_iter()
        .map(|c| tokio::spawn(runtime::run(cp.clone(), c)))
        .collect()
}

/// The uid named by the controller owner reference, if any.
pub fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .iter()
        .find(|r| r.controller)
        .map(|r| r.uid.as_str())
}

/// The owner reference a controller puts on what it creates.
pub fn owner_ref(kind: Kind, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: edge_api::API_VERSION.into(),
        kind: kind.as_str().into(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        controller: true,
        block_owner_deletion: true,
    }
}

/// How events and messages name an object.
pub fn object_ref(kind: Kind, meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        kind: kind.as_str().into(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
    }
}

/// The first 10 hex characters of sha256 over the CBOR encoding of `template`: the
/// `pod-template-hash` of a Deployment's ReplicaSet (and a DaemonSet's revision hash).
pub fn template_hash(template: &PodTemplateSpec) -> String {
    use sha2::Digest;
    // Encoding a plain struct cannot fail; an empty input still gives a stable hash.
    let bytes = edge_api::codec::encode("pod template", template).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(&bytes))[..10].to_string()
}

/// Whether `key` (a keyed controller's primary) was named by `ev` directly.
fn own_key(ev: &WatchEvent, kind: Kind, out: &mut Vec<ObjectKey>) {
    if ev.object.kind() == kind {
        out.push(ev.object.key());
    }
}

/// The key of the controller owner of `ev`'s object, when that owner is of `kind`.
fn owner_key(ev: &WatchEvent, kind: Kind, out: &mut Vec<ObjectKey>) {
    let meta = ev.object.meta();
    for r in meta.owner_references.iter().filter(|r| r.controller) {
        if r.kind == kind.as_str() {
            out.push(ObjectKey::new(kind, &meta.namespace, &r.name));
        }
    }
}

/// Every object of `kind` in the world, as keys.
fn all_keys(world: &World, kind: Kind) -> Vec<ObjectKey> {
    world.keys().filter(|k| k.kind == kind).cloned().collect()
}

/// Annotations the controllers own (a Deployment's revision): an apply of a manifest without
/// them keeps the stored ones, so re-applying the same manifest changes nothing.
pub fn keep_system_annotations(stored: &ObjectMeta, incoming: &mut ObjectMeta) {
    for (k, v) in &stored.annotations {
        if k.starts_with("deployment.kubernetes.io/") && !incoming.annotations.contains_key(k) {
            incoming.annotations.insert(k.clone(), v.clone());
        }
    }
}
