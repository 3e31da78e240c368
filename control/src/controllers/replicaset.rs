//! ReplicaSet: keeps `replicas` active pods matching the selector, creating from the template
//! or deleting the cheapest to lose, and reports replicas/ready/available counts.

use super::pods::{self, count, is_active, sort_for_deletion};
use super::{all_keys, own_key, owner_key, Action, Controller, EventNote, Reconciled, World};
use chrono::{DateTime, Utc};
use edge_api::apps::ReplicaSet;
use edge_api::object::{Kind, Object, ObjectKey};
use edge_api::wire::WatchEvent;
use std::collections::BTreeMap;

const COMPONENT: &str = "replicaset-controller";
/// Pods created or deleted per reconcile, so one huge scale does not hold the loop.
pub const BURST: usize = 100;

pub struct ReplicaSetController;

impl Controller for ReplicaSetController {
    fn name(&self) -> &'static str {
        "replicaset"
    }

    fn reads(&self) -> &'static [Kind] {
        &[Kind::Namespace, Kind::Node, Kind::Pod, Kind::ReplicaSet]
    }

    fn keys_for(&self, ev: &WatchEvent, out: &mut Vec<ObjectKey>) {
        own_key(ev, Kind::ReplicaSet, out);
        if ev.object.kind() == Kind::Pod {
            owner_key(ev, Kind::ReplicaSet, out);
        }
    }

    fn primaries(&self, world: &World) -> Vec<ObjectKey> {
        all_keys(world, Kind::ReplicaSet)
    }

    fn reconcile(&self, key: &ObjectKey, world: &World, now: DateTime<Utc>) -> Reconciled {
        match world.replica_set(key) {
            Some(rs) => reconcile(rs, world, now),
            None => Reconciled::default(),
        }
    }
}

pub fn desired(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(1).max(0)
}

pub fn reconcile(rs: &ReplicaSet, world: &World, now: DateTime<Utc>) -> Reconciled {
    let mut out = Reconciled::default();
    let meta = &rs.metadata;
    let (owned, claims) = pods::claim(Kind::ReplicaSet, meta, &rs.spec.selector, world);
    out.actions.extend(claims);
    let mut active: Vec<_> = owned.iter().copied().filter(|p| is_active(p)).collect();
    let want = desired(rs);
    let have = active.len() as i32;
    // A ReplicaSet being deleted only reports; the garbage collector removes its pods.
    if meta.deletion_timestamp.is_none() {
        if have < want && world.namespace_active(&meta.namespace) {
            for _ in 0..((want - have) as usize).min(BURST) {
                let pod = pods::from_template(
                    &rs.spec.template,
                    Kind::ReplicaSet,
                    meta,
                    &BTreeMap::new(),
                );
                out.actions
                    .push(pods::create(pod, Kind::ReplicaSet, meta, COMPONENT));
            }
        } else if have > want {
            sort_for_deletion(&mut active);
            let about = super::object_ref(Kind::ReplicaSet, meta);
            for p in active.iter().take(((have - want) as usize).min(BURST)) {
                out.actions.push(pods::delete(p, world, now));
                let msg = format!("Deleted pod: {}", p.metadata.name);
                out.actions.push(Action::Event(EventNote::normal(
                    &about,
                    COMPONENT,
                    "SuccessfulDelete",
                    &msg,
                )));
            }
        }
    }
    let c = count(owned.iter().copied(), rs.spec.min_ready_seconds, now);
    let mut status = rs.status.clone();
    status.replicas = c.active;
    status.ready_replicas = c.ready;
    status.available_replicas = c.available;
    status.observed_generation = meta.generation;
    if status != rs.status {
        let mut updated = rs.clone();
        updated.status = status;
        out.actions
            .push(Action::Update(Object::ReplicaSet(updated)));
    }
    if let Some(d) = c.next_available {
        out.requeue_within(d);
    }
    out
}
