//! Namespace deletion: a deleted namespace is Terminating (nothing new may be created in it)
//! while everything in it is deleted — workloads first so they stop replacing pods — and then
//! the namespace itself is removed.

use super::gc::delete_background;
use super::{own_key, Action, Controller, Reconciled, World};
use chrono::{DateTime, Utc};
use edge_api::object::{Kind, Object, ObjectKey};
use edge_api::wire::WatchEvent;
use std::time::Duration;

/// How often a terminating namespace is looked at while its contents go (pods stop first).
const POLL: Duration = Duration::from_secs(1);
pub const TERMINATING: &str = "Terminating";

/// The order contents are deleted in: controllers before what they make.
const ORDER: [Kind; 10] = [
    Kind::Deployment,
    Kind::DaemonSet,
    Kind::Job,
    Kind::ReplicaSet,
    Kind::Service,
    Kind::Endpoints,
    Kind::Pod,
    Kind::ConfigMap,
    Kind::Secret,
    Kind::Event,
];

pub struct NamespaceController;

impl Controller for NamespaceController {
    fn name(&self) -> &'static str {
        "namespace"
    }

    fn reads(&self) -> &'static [Kind] {
        &Kind::ALL
    }

    fn keys_for(&self, ev: &WatchEvent, out: &mut Vec<ObjectKey>) {
        own_key(ev, Kind::Namespace, out);
    }

    fn primaries(&self, world: &World) -> Vec<ObjectKey> {
        world
            .namespaces
            .iter()
            .filter(|n| n.metadata.deletion_timestamp.is_some())
            .map(|n| ObjectKey::new(Kind::Namespace, "", &n.metadata.name))
            .collect()
    }

    fn reconcile(&self, key: &ObjectKey, world: &World, now: DateTime<Utc>) -> Reconciled {
        reconcile(&key.name, world, now)
    }
}

pub fn reconcile(name: &str, world: &World, now: DateTime<Utc>) -> Reconciled {
    let mut out = Reconciled::default();
    let Some(ns) = world.namespace(name) else {
        return out;
    };
    if ns.metadata.deletion_timestamp.is_none() {
        return out;
    }
    if ns.status.phase != TERMINATING {
        let mut marked = ns.clone();
        marked.status.phase = TERMINATING.into();
        out.actions.push(Action::Update(Object::Namespace(marked)));
        out.requeue_within(POLL);
        return out;
    }
    let mut contents: Vec<&ObjectKey> = world
        .keys()
        .filter(|k| k.kind.namespaced() && k.namespace == name)
        .collect();
    if contents.is_empty() {
        out.actions.push(Action::Delete {
            key: ObjectKey::new(Kind::Namespace, "", name),
            resource_version: ns.metadata.resource_version,
        });
        return out;
    }
    let rank = |k: &ObjectKey| {
        ORDER
            .iter()
            .position(|o| *o == k.kind)
            .unwrap_or(ORDER.len())
    };
    contents.sort_by_key(|k| (rank(k), (*k).clone()));
    out.actions.extend(
        contents
            .into_iter()
            .filter_map(|k| delete_background(k, world, now)),
    );
    out.requeue_within(POLL);
    out
}
