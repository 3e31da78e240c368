//! ReplicaSet decisions.

use super::*;
use crate::controllers::replicaset::{reconcile, ReplicaSetController};
use crate::controllers::Controller;
use edge_api::object::ObjectKey;

fn rs3() -> ReplicaSet {
    replica_set("web-1", 3, "web")
}

fn owned(name: &str, node: Option<&str>, phase: PodPhase) -> Pod {
    let mut p = pod(name, Kind::ReplicaSet, &rs3().metadata, node, phase);
    p.metadata.labels = labels(&[("app", "web")]);
    p
}

#[test]
fn creates_the_missing_pods_from_the_template() {
    let rs = rs3();
    let w = world([
        Object::ReplicaSet(rs.clone()),
        Object::Pod(owned("web-1-a", Some("n1"), PodPhase::Running)),
    ]);
    let out = reconcile(&rs, &w, t0());
    let made = created(&out.actions);
    assert_eq!(made.len(), 2);
    for (o, a) in made.iter().zip(&out.actions) {
        let p = o.as_pod().expect("a pod");
        assert_eq!(p.metadata.labels, labels(&[("app", "web")]));
        assert_eq!(p.metadata.owner_references[0].uid, "uid-web-1");
        assert!(p.metadata.owner_references[0].controller);
        assert!(p.metadata.owner_references[0].block_owner_deletion);
        assert_eq!(p.spec.node_name, None, "the scheduler places them");
        assert!(
            matches!(a, Action::Create { generate_name: Some(g), .. } if g == "web-1-"),
            "{a:?}"
        );
    }
    assert_eq!(event_reasons(&out.actions), ["SuccessfulCreate"; 2]);
}

#[test]
fn surplus_pods_go_cheapest_first() {
    // (name, node, phase, ready, created at +s): the order Kubernetes deletes in.
    let table: [(&str, Option<&str>, PodPhase, bool, i64); 6] = [
        ("ready-old", Some("n1"), PodPhase::Running, true, 0),
        ("ready-new", Some("n1"), PodPhase::Running, true, 5),
        ("unready", Some("n1"), PodPhase::Running, false, 0),
        ("pending", Some("n1"), PodPhase::Pending, false, 0),
        ("unscheduled", None, PodPhase::Pending, false, 0),
        ("ready-long", Some("n1"), PodPhase::Running, true, 1),
    ];
    let mut objects = vec![Object::Node(node("n1"))];
    for (name, n, phase, is_ready, created) in table {
        let mut p = owned(name, n, phase);
        p.metadata.creation_timestamp = Some(t0() + secs(created));
        if is_ready {
            // Newer pods became ready later.
            p = ready(p, t0() + secs(created));
        }
        objects.push(Object::Pod(p));
    }
    let expectations: [(i32, &[&str]); 4] = [
        (5, &["unscheduled"]),
        (3, &["unscheduled", "pending", "unready"]),
        (
            1,
            &[
                "unscheduled",
                "pending",
                "unready",
                "ready-new",
                "ready-long",
            ],
        ),
        (6, &[]),
    ];
    for (replicas, expect) in expectations {
        let mut rs = rs3();
        rs.spec.replicas = Some(replicas);
        let mut all = objects.clone();
        all.push(Object::ReplicaSet(rs.clone()));
        let out = reconcile(&rs, &world(all), t0() + secs(60));
        assert_eq!(deleted_pods(&out.actions), expect, "replicas {replicas}");
        assert!(created(&out.actions).is_empty());
    }
}

#[test]
fn a_bound_running_pod_is_marked_terminating_and_an_unbound_one_goes_now() {
    let mut rs = rs3();
    rs.spec.replicas = Some(0);
    let w = world([
        Object::Node(node("n1")),
        Object::ReplicaSet(rs.clone()),
        Object::Pod(owned("bound", Some("n1"), PodPhase::Running)),
        Object::Pod(owned("unbound", None, PodPhase::Pending)),
        Object::Pod(owned("gone-node", Some("n9"), PodPhase::Running)),
    ]);
    let out = reconcile(&rs, &w, t0());
    let marked: Vec<_> = out
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Update(Object::Pod(p)) => Some(p.metadata.name.as_str()),
            _ => None,
        })
        .collect();
    let removed: Vec<_> = out
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete { key, .. } => Some(key.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(marked, ["bound"]);
    assert_eq!(removed.len(), 2);
    assert!(removed.contains(&"unbound") && removed.contains(&"gone-node"));
}

#[test]
fn status_counts_ready_and_available_after_min_ready_seconds() {
    let mut rs = rs3();
    rs.spec.min_ready_seconds = 10;
    rs.metadata.generation = 4;
    let now = t0() + secs(100);
    let w = world([
        Object::ReplicaSet(rs.clone()),
        Object::Pod(ready(
            owned("a", Some("n1"), PodPhase::Running),
            now - secs(30),
        )),
        Object::Pod(ready(
            owned("b", Some("n1"), PodPhase::Running),
            now - secs(4),
        )),
        Object::Pod(owned("c", Some("n1"), PodPhase::Running)),
        Object::Pod(owned("done", Some("n1"), PodPhase::Failed)),
    ]);
    let out = reconcile(&rs, &w, now);
    let Some(Object::ReplicaSet(u)) = updated(&out.actions, Kind::ReplicaSet) else {
        panic!("status written: {:?}", out.actions)
    };
    assert_eq!(
        (
            u.status.replicas,
            u.status.ready_replicas,
            u.status.available_replicas
        ),
        (3, 2, 1)
    );
    assert_eq!(u.status.observed_generation, 4);
    // b becomes available in 6 s: look again then.
    assert_eq!(out.requeue_after, Some(std::time::Duration::from_secs(6)));
    // The finished pod is not replaced by counting: 3 active of 3 wanted.
    assert!(created(&out.actions).is_empty());
}

#[test]
fn orphans_that_match_are_adopted_and_pods_that_stopped_matching_released() {
    let rs = rs3();
    let mut orphan = owned("orphan", Some("n1"), PodPhase::Running);
    orphan.metadata.owner_references.clear();
    let mut strayed = owned("strayed", Some("n1"), PodPhase::Running);
    strayed.metadata.labels = labels(&[("app", "other")]);
    let mut other_ns = orphan.clone();
    other_ns.metadata.namespace = "elsewhere".into();
    let w = world([
        Object::ReplicaSet(rs.clone()),
        Object::Pod(orphan),
        Object::Pod(strayed),
        Object::Pod(other_ns),
        Object::Pod(owned("mine", Some("n1"), PodPhase::Running)),
    ]);
    let out = reconcile(&rs, &w, t0());
    let Action::Update(Object::Pod(adopted)) = &out.actions[0] else {
        panic!("adoption first: {:?}", out.actions)
    };
    assert_eq!(adopted.metadata.name, "orphan");
    assert_eq!(adopted.metadata.namespace, "default");
    assert_eq!(adopted.metadata.owner_references[0].uid, "uid-web-1");
    let released = out.actions.iter().any(|a| {
        matches!(a, Action::Update(Object::Pod(p))
            if p.metadata.name == "strayed" && p.metadata.owner_references.is_empty())
    });
    assert!(released, "{:?}", out.actions);
    // mine + orphan: one more pod to make 3.
    assert_eq!(created(&out.actions).len(), 1);
}

#[test]
fn nothing_is_created_in_a_terminating_namespace_or_for_a_deleted_set() {
    let mut ns = namespace("default");
    ns.meta_mut().deletion_timestamp = Some(t0());
    let rs = rs3();
    let w = World::new(1, [ns, Object::ReplicaSet(rs.clone())]);
    assert!(created(&reconcile(&rs, &w, t0()).actions).is_empty());

    let mut deleting = rs3();
    deleting.metadata.deletion_timestamp = Some(t0());
    let w = world([Object::ReplicaSet(deleting.clone())]);
    assert!(created(&reconcile(&deleting, &w, t0()).actions).is_empty());
}

#[test]
fn converges_and_then_writes_nothing_even_after_a_lost_response() {
    let rs = rs3();
    let mut sim = sim::Sim::new([
        namespace("default"),
        Object::Node(node("n1")),
        Object::ReplicaSet(rs),
    ]);
    let c = ReplicaSetController;
    for _ in 0..5 {
        sim.run(&c);
        sim.agents("n1", 10, 10);
    }
    assert_eq!(sim.pods().count(), 3);
    assert!(!sim.run(&c), "a converged ReplicaSet writes nothing");
    // A "lost response": the controller restarts with no memory; it reads the store again
    // and creates nothing more.
    let key = ObjectKey::new(Kind::ReplicaSet, "default", "web-1");
    let world = sim.world();
    assert!(created(&c.reconcile(&key, &world, sim.now).actions).is_empty());
    assert_eq!(sim.creations[&Kind::Pod], 3);
}
