//! The scheduler's cache: assume on bind, confirm from the watch, forget on a failed bind, the
//! queue of pending pods, and the snapshot kept up to date event by event.

use super::*;
use crate::scheduler::cache::Cache;
use edge_api::object::Object;
use edge_api::wire::{EventType, WatchEvent};

fn event(event_type: EventType, object: Object, rv: u64) -> WatchEvent {
    WatchEvent {
        event_type,
        object,
        resource_version: rv,
    }
}

fn at(mut p: Pod, rv: u64) -> Pod {
    p.metadata.resource_version = rv;
    p
}

fn requested_memory(cache: &Cache, node: &str) -> u64 {
    let snap = cache.snapshot();
    snap.node_named(node)
        .map(|n| n.resources.requested.memory)
        .unwrap_or(0)
}

/// Two nodes with 1Gi each, and pending pods p and q asking for 600Mi each, listed at 10.
fn listed() -> Cache {
    let nodes = vec![
        node("a", "2", "1Gi", &[], true),
        node("b", "2", "1Gi", &[], true),
    ];
    let pods = vec![
        at(pod("p", "", "600Mi", None), 5),
        at(pod("q", "", "600Mi", None), 6),
    ];
    Cache::new(10, nodes, pods)
}

#[test]
fn an_assumed_pod_counts_at_once_so_the_next_decision_goes_elsewhere() {
    let mut cache = listed();
    let p = cache.pop(10).expect("p is pending");
    assert_eq!(p.metadata.name, "p");
    let first = schedule(&p, cache.snapshot(), &default_plugins());
    assert_eq!(first, Placement::Node("a".into()));
    cache.assume(&p, "a");
    assert_eq!(requested_memory(&cache, "a"), 600 << 20);
    assert_eq!(cache.assumed("default/p"), Some("a"));

    let q = cache.pop(10).expect("q is pending");
    assert_eq!(
        schedule(&q, cache.snapshot(), &default_plugins()),
        Placement::Node("b".into()),
        "a is full once p is assumed on it"
    );
    assert!(
        cache.pop(10).is_none(),
        "an assumed pod is not handed out again"
    );
}

#[test]
fn the_watch_confirms_an_assumed_pod_without_counting_it_twice() {
    let mut cache = listed();
    let p = cache.pop(10).expect("p");
    cache.assume(&p, "a");
    let mut committed = (*p).clone();
    committed.spec.node_name = Some("a".into());
    cache.apply(&event(
        EventType::Modified,
        Object::Pod(at(committed, 11)),
        11,
    ));
    assert_eq!(cache.assumed("default/p"), None, "confirmed");
    assert_eq!(requested_memory(&cache, "a"), 600 << 20);
    assert_eq!(cache.snapshot().placement("default/p"), Some("a"));
    assert_eq!(cache.revision(), 11);
    // Forgetting after the confirmation (a late, duplicate failure) changes nothing.
    cache.forget("default/p");
    assert_eq!(requested_memory(&cache, "a"), 600 << 20);
}

#[test]
fn a_failed_bind_is_forgotten_and_the_pod_queued_again_first() {
    let mut cache = listed();
    let p = cache.pop(10).expect("p");
    cache.assume(&p, "a");
    cache.forget("default/p");
    assert_eq!(requested_memory(&cache, "a"), 0);
    assert_eq!(cache.assumed("default/p"), None);
    assert_eq!(cache.snapshot().placement("default/p"), None);
    assert_eq!(
        cache.pop(10).map(|p| p.metadata.name.clone()).as_deref(),
        Some("p")
    );
}

#[test]
fn a_pod_deleted_while_assumed_is_not_queued_again() {
    let mut cache = listed();
    let p = cache.pop(10).expect("p");
    cache.assume(&p, "a");
    cache.apply(&event(EventType::Deleted, Object::Pod((*p).clone()), 11));
    assert_eq!(requested_memory(&cache, "a"), 0);
    cache.forget("default/p");
    assert_eq!(
        cache.pop(11).map(|p| p.metadata.name.clone()).as_deref(),
        Some("q")
    );
    assert!(cache.pop(11).is_none());
}

#[test]
fn events_already_in_the_listing_are_skipped_and_newer_pods_wait_for_their_revision() {
    let mut cache = listed();
    // An event the listing already reflects: applying it again must not double-count.
    let placed = at(pod("x", "", "100Mi", Some("b")), 9);
    cache.apply(&event(EventType::Added, Object::Pod(placed), 9));
    assert_eq!(requested_memory(&cache, "b"), 0);
    assert_eq!(cache.revision(), 10);

    cache.pop(10);
    cache.pop(10);
    let r = at(pod("r", "", "", None), 12);
    cache.apply(&event(EventType::Added, Object::Pod(r), 12));
    assert!(
        cache.pop(11).is_none(),
        "a bind naming 11 would be stale for r"
    );
    assert_eq!(
        cache.pop(12).map(|p| p.metadata.name.clone()).as_deref(),
        Some("r")
    );
}

#[test]
fn unschedulable_pods_wait_for_a_change_that_can_help() {
    let mut cache = Cache::new(1, vec![node("a", "1", "128Mi", &[], true)], vec![]);
    let big_pod = at(pod("p", "", "1Gi", None), 2);
    cache.apply(&event(EventType::Added, Object::Pod(big_pod.clone()), 2));
    let p = cache.pop(2).expect("p");
    assert!(matches!(
        schedule(&p, cache.snapshot(), &default_plugins()),
        Placement::Unschedulable { .. }
    ));
    cache.mark_unschedulable("default/p");

    // Its own status note (same spec and labels) does not retry it.
    let mut noted = big_pod.clone();
    noted.status.conditions.push(edge_api::meta::Condition::new(
        "PodScheduled",
        false,
        "Unschedulable",
        "0/1 nodes are available: 1 Insufficient memory.",
    ));
    cache.apply(&event(EventType::Modified, Object::Pod(at(noted, 3)), 3));
    assert!(cache.pop(3).is_none());
    assert!(cache.is_unschedulable("default/p"));

    // Another pod bound elsewhere cannot help a pod that only lacks room.
    let other = at(pod("o", "", "", Some("a")), 4);
    cache.apply(&event(EventType::Added, Object::Pod(other), 4));
    assert!(cache.pop(4).is_none());

    // A bigger node joins: the pod is tried again and fits.
    cache.apply(&event(EventType::Added, Object::Node(big("b", &[])), 5));
    let p = cache.pop(5).expect("retried after the node change");
    assert_eq!(
        schedule(&p, cache.snapshot(), &default_plugins()),
        Placement::Node("b".into())
    );
}

#[test]
fn finished_and_deleted_pods_free_their_node() {
    let running = at(pod("x", "", "600Mi", Some("a")), 3);
    let mut cache = Cache::new(
        5,
        vec![node("a", "2", "1Gi", &[], true)],
        vec![running.clone()],
    );
    assert_eq!(requested_memory(&cache, "a"), 600 << 20);
    let mut done = running.clone();
    done.status.phase = edge_api::PodPhase::Succeeded;
    cache.apply(&event(EventType::Modified, Object::Pod(at(done, 6)), 6));
    assert_eq!(requested_memory(&cache, "a"), 0);

    let y = at(pod("y", "", "300Mi", Some("a")), 7);
    cache.apply(&event(EventType::Added, Object::Pod(y.clone()), 7));
    assert_eq!(requested_memory(&cache, "a"), 300 << 20);
    cache.apply(&event(EventType::Deleted, Object::Pod(y), 8));
    assert_eq!(requested_memory(&cache, "a"), 0);
}

#[test]
fn a_node_that_leaves_and_returns_gets_its_pods_back() {
    let x = at(pod("x", "", "600Mi", Some("a")), 3);
    let a = node("a", "2", "1Gi", &[], true);
    let mut cache = Cache::new(5, vec![a.clone(), big("b", &[])], vec![x]);
    cache.apply(&event(EventType::Deleted, Object::Node(a.clone()), 6));
    assert_eq!(cache.snapshot().len(), 1);
    assert!(cache.snapshot().node_named("a").is_none());
    assert_eq!(
        cache.snapshot().node(0).name(),
        "b",
        "b moved into a's slot"
    );
    cache.apply(&event(EventType::Added, Object::Node(a), 7));
    assert_eq!(requested_memory(&cache, "a"), 600 << 20);
}

#[test]
fn the_cache_snapshot_decides_like_a_fresh_one() {
    // After a mix of events, deciding from the cache equals deciding from a snapshot built
    // from the same objects at once.
    let nodes = vec![
        node("a", "2", "1Gi", &[("zone", "x")], true),
        node("b", "2", "2Gi", &[("zone", "y")], true),
        node("c", "4", "1Gi", &[("zone", "y")], true),
    ];
    let mut cache = Cache::new(1, nodes.clone(), vec![]);
    let bound_pods = vec![
        at(bound("w1", &[("app", "web")], "a"), 2),
        at(bound("w2", &[("app", "web")], "b"), 3),
        at(pod("big", "1", "700Mi", Some("c")), 4),
    ];
    for (i, p) in bound_pods.iter().enumerate() {
        cache.apply(&event(
            EventType::Added,
            Object::Pod(p.clone()),
            2 + i as u64,
        ));
    }
    let new = pod_with(
        "w3",
        &[("app", "web")],
        "  topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}",
    );
    let fresh = Snapshot::new(&nodes, &bound_pods);
    assert_eq!(
        schedule(&new, cache.snapshot(), &default_plugins()),
        schedule(&new, &fresh, &default_plugins())
    );
}

#[test]
fn the_label_index_follows_pods_that_move_change_labels_or_leave() {
    use edge_api::scheduling::LabelSelector;
    use std::sync::Arc;
    let nodes = [big("a", &[("zone", "x")]), big("b", &[("zone", "y")])];
    let mut snap = Snapshot::new(&nodes, &[]);
    snap.place(Arc::new(bound("w1", &[("app", "web")], "a")));
    snap.place(Arc::new(bound("w2", &[("app", "web")], "b")));
    // w1 is relabelled and moves to b; w2 leaves.
    snap.place(Arc::new(bound("w1", &[("app", "db")], "b")));
    snap.unplace("default/w2");
    let selector = |app: &str| LabelSelector {
        match_labels: labels(&[("app", app)]),
        ..Default::default()
    };
    let found = |snap: &Snapshot, app: &str| -> Vec<(String, String)> {
        let s = selector(app);
        let mut v: Vec<(String, String)> = snap
            .pods_selected("default", &s)
            .map(|(n, p)| (n.name().to_string(), p.metadata.name.clone()))
            .collect();
        v.sort();
        v
    };
    assert!(found(&snap, "web").is_empty());
    assert_eq!(found(&snap, "db"), [("b".to_string(), "w1".to_string())]);
    assert!(
        snap.pods_selected("other", &selector("db"))
            .next()
            .is_none(),
        "namespaced"
    );
    let mut zones: Vec<&str> = snap.domains("zone").collect();
    zones.sort();
    assert_eq!(zones, ["x", "y"]);
    snap.remove_node("a");
    assert_eq!(snap.domains("zone").collect::<Vec<_>>(), ["y"]);
    snap.set_node(Arc::new(big("b", &[("zone", "z")])));
    assert_eq!(
        snap.domains("zone").collect::<Vec<_>>(),
        ["z"],
        "relabelled node"
    );
}
