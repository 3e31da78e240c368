//! The garbage collector: deletes dependents whose owners are gone (background), deletes the
//! dependents of an owner in foreground deletion before it, strips the owner reference from
//! the dependents of an orphaning owner, and finally removes owners whose finalizers are done.
//! Like Kubernetes' pod GC it also removes pods bound to a node that no longer exists: no agent
//! will ever stop them or confirm them gone, so they would stay (Terminating) forever.

use super::{pods, Action, Controller, Reconciled, World, FOREGROUND, ORPHAN};
use chrono::{DateTime, Utc};
use edge_api::object::{Kind, ObjectKey};
use edge_api::wire::{EventType, WatchEvent};
use std::time::Duration;

/// After writing, look again soon: one deletion often unblocks the next (owner after dependents).
const FOLLOW_UP: Duration = Duration::from_millis(300);
/// How often to look while an owner waits for its dependents to go.
const WAITING: Duration = Duration::from_secs(1);
/// How old a pod on a missing node must be before it is removed (kube-controller-manager's
/// pod GC quarantine): a pod placed by hand may name a node that is still joining.
const MISSING_NODE_GRACE: Duration = Duration::from_secs(40);

pub struct GarbageCollector;

/// The collector reconciles the whole store at once under this one key.
pub fn key() -> ObjectKey {
    ObjectKey::new(Kind::Namespace, "", "garbage-collector")
}

impl Controller for GarbageCollector {
    fn name(&self) -> &'static str {
        "garbage-collector"
    }

    fn reads(&self) -> &'static [Kind] {
        &Kind::ALL
    }

    /// A pass is due when a possible owner goes or starts going. Pods and Events own nothing
    /// here, so their (frequent) deletions do not cost a pass; a dangling reference made any
    /// other way is found by the periodic resync.
    fn keys_for(&self, ev: &WatchEvent, out: &mut Vec<ObjectKey>) {
        let meta = ev.object.meta();
        let kind = ev.object.kind();
        let may_own = !matches!(kind, Kind::Pod | Kind::Event);
        let relevant =
            may_own && (ev.event_type == EventType::Deleted || meta.deletion_timestamp.is_some());
        if relevant {
            out.push(key());
        }
    }

    fn primaries(&self, _world: &World) -> Vec<ObjectKey> {
        vec![key()]
    }

    fn reconcile(&self, _key: &ObjectKey, world: &World, now: DateTime<Utc>) -> Reconciled {
        let mut out = Reconciled {
            actions: collect(world, now),
            requeue_after: None,
        };
        if !out.actions.is_empty() {
            out.requeue_within(FOLLOW_UP);
        }
        // An owner waiting for its dependents is unblocked by their going, which (for pods)
        // triggers no pass: look again while any waits.
        if waiting_owners(world) {
            out.requeue_within(WAITING);
        }
        out
    }
}

/// Whether some owner is in foreground or orphan deletion.
fn waiting_owners(world: &World) -> bool {
    world.keys().any(|k| {
        world.meta(k).is_some_and(|m| {
            m.deletion_timestamp.is_some()
                && m.finalizers.iter().any(|f| f == FOREGROUND || f == ORPHAN)
        })
    })
}

/// What happens to one owner reference.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RefFate {
    Keep,
    /// The owner is gone.
    Dangling,
    /// The owner is being deleted with the orphan policy.
    Orphaned,
    /// The owner is being deleted in the foreground: this dependent goes first.
    Foreground,
}

fn fate(world: &World, uid: &str) -> RefFate {
    let Some(owner) = world.key_of_uid(uid).and_then(|k| world.meta(k)) else {
        return RefFate::Dangling;
    };
    if owner.deletion_timestamp.is_none() {
        return RefFate::Keep;
    }
    if owner.finalizers.iter().any(|f| f == ORPHAN) {
        RefFate::Orphaned
    } else if owner.finalizers.iter().any(|f| f == FOREGROUND) {
        RefFate::Foreground
    } else {
        RefFate::Keep
    }
}

/// One pass of the collector over everything.
pub fn collect(world: &World, now: DateTime<Utc>) -> Vec<Action> {
    let mut keys: Vec<&ObjectKey> = world.keys().collect();
    keys.sort();
    let mut actions = Vec::new();
    for key in keys {
        let Some(meta) = world.meta(key) else {
            continue;
        };
        if let Some(a) = on_missing_node(key, world, now) {
            actions.push(a);
            continue;
        }
        if !meta.owner_references.is_empty() {
            if let Some(a) = for_dependent(key, world, now) {
                actions.push(a);
                continue;
            }
        }
        if meta.deletion_timestamp.is_some() {
            actions.extend(finish_owner(key, world));
        }
    }
    actions
}

/// A pod bound to a node that no longer exists, past the grace period: removed now.
fn on_missing_node(key: &ObjectKey, world: &World, now: DateTime<Utc>) -> Option<Action> {
    let p = world.pod(key)?;
    let node = p.spec.node_name.as_deref()?;
    if world.node(node).is_some() {
        return None;
    }
    let age = p
        .metadata
        .creation_timestamp
        .and_then(|t| (now - t).to_std().ok())
        .unwrap_or(Duration::MAX);
    (age >= MISSING_NODE_GRACE).then(|| Action::Delete {
        key: key.clone(),
        resource_version: p.metadata.resource_version,
    })
}

fn for_dependent(key: &ObjectKey, world: &World, now: DateTime<Utc>) -> Option<Action> {
    let meta = world.meta(key)?;
    let fates: Vec<RefFate> = meta
        .owner_references
        .iter()
        .map(|r| fate(world, &r.uid))
        .collect();
    if fates.contains(&RefFate::Foreground) {
        return delete_foreground(key, world, now);
    }
    let kept = fates.iter().filter(|f| **f == RefFate::Keep).count();
    if kept == 0 && fates.contains(&RefFate::Dangling) {
        return delete_background(key, world, now);
    }
    if kept == fates.len() {
        return None;
    }
    let mut updated = world.get(key)?;
    let m = updated.meta_mut();
    let mut i = 0;
    m.owner_references.retain(|_| {
        i += 1;
        fates[i - 1] == RefFate::Keep
    });
    Some(Action::Update(updated))
}

/// An owner being deleted: drop the finalizers whose work is done, then remove it.
fn finish_owner(key: &ObjectKey, world: &World) -> Option<Action> {
    // Pods are removed by their agents; namespaces by the namespace controller.
    if matches!(key.kind, Kind::Pod | Kind::Namespace) {
        return None;
    }
    let meta = world.meta(key)?;
    let referencing = |blocking_only: bool| {
        world.dependents_of(&meta.uid).iter().any(|d| {
            world.meta(d).is_some_and(|dm| {
                dm.owner_references
                    .iter()
                    .any(|r| r.uid == meta.uid && (!blocking_only || r.block_owner_deletion))
            })
        })
    };
    let mut finalizers = meta.finalizers.clone();
    if finalizers.iter().any(|f| f == ORPHAN) && !referencing(false) {
        finalizers.retain(|f| f != ORPHAN);
    }
    if finalizers.iter().any(|f| f == FOREGROUND) && !referencing(true) {
        finalizers.retain(|f| f != FOREGROUND);
    }
    if finalizers.is_empty() {
        return Some(Action::Delete {
            key: key.clone(),
            resource_version: meta.resource_version,
        });
    }
    if finalizers != meta.finalizers {
        let mut updated = world.get(key)?;
        updated.meta_mut().finalizers = finalizers;
        return Some(Action::Update(updated));
    }
    None
}

/// Background deletion of one object: pods as the API deletes them; an object with finalizers
/// is marked and waits for them; anything else goes now. `None` when it is already going.
pub fn delete_background(key: &ObjectKey, world: &World, now: DateTime<Utc>) -> Option<Action> {
    if let Some(p) = world.pod(key) {
        let agent_will_remove = p.metadata.deletion_timestamp.is_some()
            && p.spec
                .node_name
                .as_deref()
                .is_some_and(|n| world.node(n).is_some());
        return (!agent_will_remove).then(|| pods::delete(p, world, now));
    }
    let meta = world.meta(key)?;
    if meta.deletion_timestamp.is_some() {
        return None;
    }
    if meta.finalizers.is_empty() {
        return Some(Action::Delete {
            key: key.clone(),
            resource_version: meta.resource_version,
        });
    }
    let mut marked = world.get(key)?;
    marked.meta_mut().deletion_timestamp = Some(now);
    Some(Action::Update(marked))
}

/// Foreground deletion of one object: one with dependents is marked `foregroundDeletion` so
/// they go first; one without goes as in the background.
pub fn delete_foreground(key: &ObjectKey, world: &World, now: DateTime<Utc>) -> Option<Action> {
    let meta = world.meta(key)?;
    if key.kind == Kind::Pod || world.dependents_of(&meta.uid).is_empty() {
        return delete_background(key, world, now);
    }
    if meta.deletion_timestamp.is_some() {
        return None;
    }
    let mut marked = world.get(key)?;
    let m = marked.meta_mut();
    m.deletion_timestamp = Some(now);
    if !m.finalizers.iter().any(|f| f == FOREGROUND) {
        m.finalizers.push(FOREGROUND.into());
    }
    Some(Action::Update(marked))
}
