//! Table tests of the scheduler over constructed snapshots.

use super::*;
use edge_api::meta::Condition;

fn node(name: &str, cpu: &str, mem: &str, labels: &[(&str, &str)], ready: bool) -> Node {
    let mut n = Node::default();
    n.metadata.name = name.into();
    n.metadata.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    n.status.allocatable.insert("cpu".into(), cpu.into());
    n.status.allocatable.insert("memory".into(), mem.into());
    n.status
        .conditions
        .push(Condition::new("Ready", ready, "", ""));
    n
}

fn pod(name: &str, cpu: &str, mem: &str, on: Option<&str>) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = name.into();
    let mut c = edge_api::Container {
        name: "main".into(),
        ..Default::default()
    };
    if !cpu.is_empty() {
        c.resources.requests.insert("cpu".into(), cpu.into());
    }
    if !mem.is_empty() {
        c.resources.requests.insert("memory".into(), mem.into());
    }
    p.spec.containers.push(c);
    p.spec.node_name = on.map(str::to_string);
    p
}

fn place(p: &Pod, nodes: &[Node], pods: &[Pod]) -> Placement {
    schedule(p, nodes, pods, &default_filters(), &default_scorers())
}

#[test]
fn picks_the_least_allocated_node() {
    let nodes = [
        node("a", "2", "1Gi", &[], true),
        node("b", "2", "1Gi", &[], true),
    ];
    let pods = [pod("x", "1", "512Mi", Some("a"))];
    assert_eq!(
        place(&pod("p", "100m", "64Mi", None), &nodes, &pods),
        Placement::Node("b".into())
    );
}

#[test]
fn ties_break_by_name() {
    let nodes = [
        node("b", "2", "1Gi", &[], true),
        node("a", "2", "1Gi", &[], true),
    ];
    assert_eq!(
        place(&pod("p", "", "", None), &nodes, &[]),
        Placement::Node("a".into())
    );
}

#[test]
fn resource_fit_counts_bound_pods_but_not_finished_ones() {
    let nodes = [node("a", "1", "128Mi", &[], true)];
    let mut done = pod("done", "", "100Mi", Some("a"));
    done.status.phase = edge_api::PodPhase::Succeeded;
    assert_eq!(
        place(&pod("p", "", "100Mi", None), &nodes, &[done]),
        Placement::Node("a".into())
    );
    let busy = pod("busy", "", "100Mi", Some("a"));
    match place(&pod("p", "", "100Mi", None), &nodes, &[busy]) {
        Placement::Unschedulable { summary, per_node } => {
            assert_eq!(per_node["a"], "Insufficient memory");
            assert_eq!(summary, "0/1 nodes are available: 1 Insufficient memory.");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn node_selector_and_readiness_filter_with_reasons() {
    let nodes = [
        node("a", "4", "4Gi", &[("zone", "north")], true),
        node("b", "4", "4Gi", &[("zone", "south")], true),
        node("c", "4", "4Gi", &[("zone", "south")], false),
        node("d", "1", "64Mi", &[("zone", "south")], true),
    ];
    let mut p = pod("p", "", "1Gi", None);
    p.spec.node_selector.insert("zone".into(), "north".into());
    assert_eq!(place(&p, &nodes, &[]), Placement::Node("a".into()));
    p.spec.node_selector.insert("zone".into(), "west".into());
    match place(&p, &nodes, &[]) {
        Placement::Unschedulable { summary, .. } => assert_eq!(
            summary,
            "0/4 nodes are available: 3 node(s) didn't match Pod's node affinity/selector, 1 node(s) were not ready."
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_nodes_says_so() {
    match place(&pod("p", "", "", None), &[], &[]) {
        Placement::Unschedulable { summary, .. } => assert!(summary.contains("no nodes")),
        other => panic!("{other:?}"),
    }
}
