//! DaemonSet decisions.

use super::sim::Sim;
use super::*;
use crate::controllers::daemonset::{reconcile, should_run_on, DaemonSetController};
use crate::controllers::{template_hash, CONTROLLER_REVISION_HASH};
use edge_api::scheduling::{Taint, TaintEffect, Toleration, TolerationOperator};
use edge_api::IntOrString;

fn labelled(name: &str, pairs: &[(&str, &str)]) -> Node {
    let mut n = node(name);
    n.metadata.labels = labels(pairs);
    n
}

fn tainted(name: &str, key: &str, effect: TaintEffect) -> Node {
    let mut n = node(name);
    n.spec.taints.push(Taint {
        key: key.into(),
        value: "x".into(),
        effect,
        time_added: None,
    });
    n
}

#[test]
fn where_a_daemon_pod_runs_follows_the_scheduler_filters() {
    let plain = daemon_set("agent");
    let mut gpu_only = daemon_set("agent");
    gpu_only
        .spec
        .template
        .spec
        .node_selector
        .insert("gpu".into(), "yes".into());
    let mut tolerant = daemon_set("agent");
    tolerant.spec.template.spec.tolerations.push(Toleration {
        key: "dedicated".into(),
        operator: TolerationOperator::Exists,
        ..Default::default()
    });
    let mut not_ready = node("nr");
    not_ready.status.conditions[0].status = "Unknown".into();
    let mut cordoned = node("cordoned");
    cordoned.spec.unschedulable = true;
    let nodes = vec![
        node("plain"),
        labelled("gpu", &[("gpu", "yes")]),
        tainted("dedicated", "dedicated", TaintEffect::NoSchedule),
        tainted("soft", "dedicated", TaintEffect::PreferNoSchedule),
        tainted("evicting", "dedicated", TaintEffect::NoExecute),
        not_ready,
        cordoned,
    ];
    // (daemon set, node, runs there)
    let table = [
        (&plain, "plain", true),
        (&plain, "gpu", true),
        (&plain, "dedicated", false),
        (&plain, "soft", true),
        (&plain, "evicting", false),
        (&plain, "nr", true),
        (&plain, "cordoned", true),
        (&gpu_only, "plain", false),
        (&gpu_only, "gpu", true),
        (&tolerant, "dedicated", true),
        (&tolerant, "evicting", true),
    ];
    for (ds, name, want) in table {
        let n = nodes
            .iter()
            .find(|n| n.metadata.name == name)
            .expect("node");
        assert_eq!(should_run_on(ds, n, &nodes, &[]), want, "{name}");
    }
}

#[test]
fn one_pod_per_node_bound_directly_with_daemon_tolerations() {
    let ds = daemon_set("agent");
    let w = world([
        Object::Node(node("n1")),
        Object::Node(node("n2")),
        Object::Node(tainted("n3", "dedicated", TaintEffect::NoSchedule)),
        Object::DaemonSet(ds.clone()),
    ]);
    let out = reconcile(&ds, &w, t0());
    let made: Vec<&Pod> = created(&out.actions)
        .into_iter()
        .filter_map(|o| o.as_pod())
        .collect();
    let nodes: Vec<_> = made.iter().map(|p| p.spec.node_name.as_deref()).collect();
    assert_eq!(nodes, [Some("n1"), Some("n2")]);
    let hash = template_hash(&ds.spec.template);
    for p in &made {
        assert_eq!(p.metadata.labels[CONTROLLER_REVISION_HASH], hash);
        assert_eq!(p.metadata.owner_references[0].kind, "DaemonSet");
        assert!(p
            .spec
            .tolerations
            .iter()
            .any(|t| t.key == edge_api::scheduling::TAINT_NOT_READY));
    }
    let Some(Object::DaemonSet(u)) = updated(&out.actions, Kind::DaemonSet) else {
        panic!("status")
    };
    assert_eq!(u.status.desired_number_scheduled, 2);
    assert_eq!(u.status.current_number_scheduled, 0);
    assert_eq!(u.status.number_unavailable, 2);
}

#[test]
fn nodes_joining_and_leaving_are_followed() {
    let ds = daemon_set("agent");
    let mut sim = Sim::new([
        namespace("default"),
        Object::Node(node("n1")),
        Object::Node(node("n2")),
        Object::DaemonSet(ds),
    ]);
    let c = DaemonSetController;
    let settle = |sim: &mut Sim| {
        for _ in 0..4 {
            sim.run(&c);
            sim.agents("unused", 10, 10);
        }
    };
    let on = |sim: &Sim| {
        let mut v: Vec<String> = sim
            .pods()
            .filter_map(|p| p.spec.node_name.clone())
            .collect();
        v.sort();
        v
    };
    settle(&mut sim);
    assert_eq!(on(&sim), ["n1", "n2"]);
    sim.apply(&[Action::Create {
        object: Object::Node(node("n3")),
        generate_name: None,
        event: None,
    }])
    .expect("join");
    settle(&mut sim);
    assert_eq!(on(&sim), ["n1", "n2", "n3"]);
    let n2 = edge_api::ObjectKey::new(Kind::Node, "", "n2");
    let rv = sim.get(&n2).expect("n2").meta().resource_version;
    sim.apply(&[Action::Delete {
        key: n2,
        resource_version: rv,
    }])
    .expect("leave");
    settle(&mut sim);
    assert_eq!(on(&sim), ["n1", "n3"]);
    assert!(!sim.run(&c), "settled");
}

#[test]
fn a_new_template_rolls_one_node_at_a_time_within_max_unavailable() {
    for max_unavailable in [1, 2] {
        let mut ds = daemon_set("agent");
        ds.spec.update_strategy.rolling_update = Some(edge_api::apps::RollingUpdate {
            max_surge: None,
            max_unavailable: Some(IntOrString::Int(max_unavailable)),
        });
        let key = edge_api::ObjectKey::new(Kind::DaemonSet, "default", "agent");
        let mut sim = Sim::new(
            [namespace("default"), Object::DaemonSet(ds)]
                .into_iter()
                .chain((1..=4).map(|i| Object::Node(node(&format!("n{i}"))))),
        );
        let c = DaemonSetController;
        for _ in 0..4 {
            sim.run(&c);
            sim.agents("unused", 10, 10);
        }
        assert_eq!(sim.pods().count(), 4);
        let Some(Object::DaemonSet(mut stored)) = sim.get(&key).cloned() else {
            panic!()
        };
        stored.spec.template = template("agent", 'b');
        sim.apply(&[Action::Update(Object::DaemonSet(stored))])
            .expect("update");
        for _ in 0..20 {
            sim.run(&c);
            let available = sim
                .pods()
                .filter(|p| {
                    crate::controllers::pods::is_active(p) && crate::controllers::pods::is_ready(p)
                })
                .count() as i32;
            assert!(available >= 4 - max_unavailable, "{available} available");
            sim.agents("unused", 1, 10);
        }
        assert_eq!(sim.pods().count(), 4);
        assert!(sim
            .pods()
            .all(|p| p.spec.containers[0].image.ends_with('b')));
    }
}

#[test]
fn a_node_without_room_gets_a_warning_instead_of_a_pod() {
    let mut ds = daemon_set("agent");
    ds.spec.template.spec.containers[0]
        .resources
        .requests
        .insert("memory".into(), "8Gi".into());
    let w = world([Object::Node(node("n1")), Object::DaemonSet(ds.clone())]);
    let out = reconcile(&ds, &w, t0());
    assert!(created(&out.actions).is_empty());
    assert_eq!(event_reasons(&out.actions), ["FailedPlacement"]);
}

#[test]
fn extra_and_misplaced_pods_are_removed() {
    let ds = daemon_set("agent");
    let owned = |name: &str, node: &str, age: i64| {
        let mut p = pod(
            name,
            Kind::DaemonSet,
            &ds.metadata,
            Some(node),
            PodPhase::Running,
        );
        let hash = template_hash(&ds.spec.template);
        p.metadata.labels = labels(&[("app", "agent"), (CONTROLLER_REVISION_HASH, &hash)]);
        p.metadata.creation_timestamp = Some(t0() + secs(age));
        Object::Pod(ready(p, t0()))
    };
    let w = world([
        Object::Node(node("n1")),
        Object::Node(tainted("n2", "dedicated", TaintEffect::NoExecute)),
        Object::DaemonSet(ds.clone()),
        owned("older", "n1", 0),
        owned("newer", "n1", 5),
        owned("misplaced", "n2", 0),
        owned("ghost", "n9", 0),
    ]);
    let out = reconcile(&ds, &w, t0() + secs(10));
    let mut gone = deleted_pods(&out.actions);
    gone.sort();
    assert_eq!(gone, ["ghost", "misplaced", "newer"]);
    let Some(Object::DaemonSet(u)) = updated(&out.actions, Kind::DaemonSet) else {
        panic!("status")
    };
    assert_eq!(u.status.number_misscheduled, 1);
}
