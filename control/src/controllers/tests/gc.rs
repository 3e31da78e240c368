//! Garbage collection: background, foreground and orphan deletion played forward.

use super::sim::Sim;
use super::*;
use crate::controllers::gc::{collect, GarbageCollector};
use crate::controllers::{FOREGROUND, ORPHAN};
use edge_api::object::ObjectKey;

/// A Deployment owning a ReplicaSet owning two pods (on a live node).
fn family() -> (Deployment, ReplicaSet, Vec<Object>) {
    let d = deployment("web", 2, 'a');
    let mut rs = replica_set("web-1", 2, "web");
    rs.metadata.owner_references = vec![owner_ref(Kind::Deployment, &d.metadata)];
    let mut objects = vec![
        namespace("default"),
        Object::Node(node("n1")),
        Object::Deployment(d.clone()),
        Object::ReplicaSet(rs.clone()),
    ];
    for name in ["web-1-a", "web-1-b"] {
        let p = pod(
            name,
            Kind::ReplicaSet,
            &rs.metadata,
            Some("n1"),
            PodPhase::Running,
        );
        objects.push(Object::Pod(p));
    }
    (d, rs, objects)
}

fn key(kind: Kind, name: &str) -> ObjectKey {
    ObjectKey::new(kind, "default", name)
}

/// Runs the collector, with agents removing stopped pods, until it has nothing left to do.
fn settle(sim: &mut Sim) {
    for _ in 0..10 {
        sim.run(&GarbageCollector);
        sim.agents("n1", 0, 10);
    }
    assert!(collect(&sim.world(), sim.now).is_empty(), "settled");
}

fn mark(sim: &mut Sim, k: &ObjectKey, finalizer: Option<&str>) {
    let mut o = sim.get(k).cloned().expect("object");
    o.meta_mut().deletion_timestamp = Some(t0());
    o.meta_mut().finalizers.extend(finalizer.map(String::from));
    sim.apply(&[Action::Update(o)]).expect("mark");
}

#[test]
fn background_deletes_dependents_of_a_gone_owner_level_by_level() {
    let (_, _, objects) = family();
    let mut sim = Sim::new(objects);
    let dk = key(Kind::Deployment, "web");
    let rv = sim.get(&dk).expect("d").meta().resource_version;
    sim.apply(&[Action::Delete {
        key: dk,
        resource_version: rv,
    }])
    .expect("delete");
    // First the ReplicaSet goes; its pods are only then ownerless.
    let first = collect(&sim.world(), sim.now);
    assert_eq!(first.len(), 1);
    assert!(matches!(&first[0], Action::Delete { key, .. } if key.kind == Kind::ReplicaSet));
    settle(&mut sim);
    assert!(sim.get(&key(Kind::ReplicaSet, "web-1")).is_none());
    assert_eq!(sim.pods().count(), 0);
}

#[test]
fn foreground_removes_dependents_before_the_owner() {
    let (_, _, objects) = family();
    let mut sim = Sim::new(objects);
    let dk = key(Kind::Deployment, "web");
    mark(&mut sim, &dk, Some(FOREGROUND));
    for _ in 0..10 {
        sim.run(&GarbageCollector);
        // Slow agents: one pod stops per step, so the owners wait a while.
        sim.agents("n1", 0, 1);
        if sim.get(&dk).is_none() {
            assert!(sim.get(&key(Kind::ReplicaSet, "web-1")).is_none());
        }
        if sim.get(&key(Kind::ReplicaSet, "web-1")).is_none() {
            assert_eq!(sim.pods().count(), 0, "an owner went before its dependents");
        }
    }
    assert!(sim.get(&dk).is_none(), "the owner goes last");
    // The ReplicaSet itself was deleted in the foreground: its pods went before it.
    assert_eq!(sim.pods().count(), 0);
}

#[test]
fn orphan_strips_the_owner_reference_and_keeps_dependents() {
    let (_, rs, objects) = family();
    let mut sim = Sim::new(objects);
    let rk = key(Kind::ReplicaSet, "web-1");
    mark(&mut sim, &rk, Some(ORPHAN));
    settle(&mut sim);
    assert!(sim.get(&rk).is_none());
    assert_eq!(sim.pods().count(), 2);
    assert!(sim.pods().all(|p| p
        .metadata
        .owner_references
        .iter()
        .all(|r| r.uid != rs.metadata.uid)));
}

#[test]
fn a_dangling_reference_beside_a_live_owner_is_removed() {
    let (d, _, mut objects) = family();
    let mut p = pod(
        "shared",
        Kind::Deployment,
        &d.metadata,
        None,
        PodPhase::Pending,
    );
    let mut gone = meta("gone", "default");
    gone.uid = "uid-gone".into();
    p.metadata
        .owner_references
        .push(owner_ref(Kind::ReplicaSet, &gone));
    objects.push(Object::Pod(p));
    let w = World::new(1, objects);
    let actions = collect(&w, t0());
    assert_eq!(actions.len(), 1);
    let Action::Update(Object::Pod(u)) = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(u.metadata.owner_references.len(), 1);
    assert_eq!(u.metadata.owner_references[0].uid, "uid-web");
}

#[test]
fn an_owner_with_other_finalizers_waits_for_them() {
    let (_, _, objects) = family();
    let mut sim = Sim::new(objects);
    let dk = key(Kind::Deployment, "web");
    mark(&mut sim, &dk, Some("example.com/keep"));
    settle(&mut sim);
    assert!(sim.get(&dk).is_some(), "a foreign finalizer holds it");
    let mut o = sim.get(&dk).cloned().expect("d");
    o.meta_mut().finalizers.clear();
    sim.apply(&[Action::Update(o)]).expect("clear");
    settle(&mut sim);
    assert!(sim.get(&dk).is_none());
}

#[test]
fn pods_left_on_a_node_that_is_gone_are_removed_after_the_grace_period() {
    let (_, rs, mut objects) = family();
    let now = Utc::now();
    objects.retain(|o| !matches!(o, Object::Node(_))); // the node was deleted
    for o in objects.iter_mut() {
        if let Object::Pod(p) = o {
            p.metadata.creation_timestamp = Some(now - chrono::Duration::seconds(300));
            if p.metadata.name == "web-1-a" {
                // Evicted while the node was there: Terminating, waiting for an agent.
                p.metadata.deletion_timestamp = Some(now - chrono::Duration::seconds(100));
            }
        }
    }
    let mut young = pod(
        "fresh",
        Kind::ReplicaSet,
        &rs.metadata,
        Some("joining"),
        PodPhase::Pending,
    );
    young.metadata.creation_timestamp = Some(now - chrono::Duration::seconds(5));
    objects.push(Object::Pod(young));
    let actions = collect(&world(objects), now);
    let mut deleted: Vec<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete { key, .. } if key.kind == Kind::Pod => Some(key.name.as_str()),
            _ => None,
        })
        .collect();
    deleted.sort();
    assert_eq!(deleted, ["web-1-a", "web-1-b"], "{actions:?}");
}

#[test]
fn pods_on_a_live_node_are_left_to_their_agent() {
    let (_, _, mut objects) = family();
    let now = Utc::now();
    for o in objects.iter_mut() {
        if let Object::Pod(p) = o {
            p.metadata.creation_timestamp = Some(now - chrono::Duration::seconds(300));
            p.metadata.deletion_timestamp = Some(now);
        }
    }
    assert!(collect(&world(objects), now).is_empty());
}
