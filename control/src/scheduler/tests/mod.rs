//! Table tests of the scheduler over constructed snapshots: builders shared by the per-plugin
//! files, and the tests of `schedule()` itself (filters in order, scoring, the summary).

mod cache;
mod inter_pod_affinity;
mod node_affinity;
mod taints;
mod topology_spread;

use super::*;
use edge_api::meta::Condition;
use edge_api::scheduling::{Taint, TaintEffect};
use edge_api::Node;

pub(super) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn node(name: &str, cpu: &str, mem: &str, l: &[(&str, &str)], ready: bool) -> Node {
    let mut n = Node::default();
    n.metadata.name = name.into();
    n.metadata.labels = labels(l);
    n.status.allocatable.insert("cpu".into(), cpu.into());
    n.status.allocatable.insert("memory".into(), mem.into());
    n.status
        .conditions
        .push(Condition::new("Ready", ready, "", ""));
    n
}

/// A ready node with room to spare and the given labels.
pub(super) fn big(name: &str, l: &[(&str, &str)]) -> Node {
    node(name, "8", "8Gi", l, true)
}

pub(super) fn tainted(mut n: Node, key: &str, value: &str, effect: TaintEffect) -> Node {
    n.spec.taints.push(Taint {
        key: key.into(),
        value: value.into(),
        effect,
        time_added: None,
    });
    n
}

pub(super) fn pod(name: &str, cpu: &str, mem: &str, on: Option<&str>) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = name.into();
    p.metadata.namespace = "default".into();
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

/// A pod in namespace "default" with `l` labels and extra spec fields written as a manifest
/// would (`spec_yaml` is indented two spaces, under `spec:`).
pub(super) fn pod_with(name: &str, l: &[(&str, &str)], spec_yaml: &str) -> Pod {
    let doc = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  containers: [{{name: main, image: x}}]\n{spec_yaml}\n"
    );
    let obj = edge_api::manifest::parse_documents(&doc, "test")
        .unwrap_or_else(|e| panic!("{e}\n{doc}"))
        .remove(0);
    let mut p = obj.as_pod().expect("a pod").clone();
    p.metadata.labels = labels(l);
    p
}

/// A pod with labels `l` already bound to `node`.
pub(super) fn bound(name: &str, l: &[(&str, &str)], node: &str) -> Pod {
    let mut p = pod(name, "", "", Some(node));
    p.metadata.labels = labels(l);
    p
}

pub(super) fn place(p: &Pod, nodes: &[Node], pods: &[Pod]) -> Placement {
    let snap = Snapshot::new(nodes, pods);
    schedule(p, &snap, &default_plugins())
}

pub(super) fn placed(p: &Pod, nodes: &[Node], pods: &[Pod]) -> String {
    match place(p, nodes, pods) {
        Placement::Node(n) => n,
        other => panic!("expected a placement, got {other:?}"),
    }
}

pub(super) fn summary(p: &Pod, nodes: &[Node], pods: &[Pod]) -> String {
    match place(p, nodes, pods) {
        Placement::Unschedulable { summary, .. } => summary,
        other => panic!("expected no placement, got {other:?}"),
    }
}

/// One plugin's verdict on each node, in order: None when it passes.
pub(super) fn verdicts(
    plugin: &dyn Plugin,
    p: &Pod,
    nodes: &[Node],
    pods: &[Pod],
) -> Vec<Option<String>> {
    let snap = Snapshot::new(nodes, pods);
    let Some(f) = plugin.filter(p, &snap) else {
        return vec![None; nodes.len()];
    };
    snap.node_infos()
        .map(|n| f.filter(&n).err().map(Reason::into_owned))
        .collect()
}

/// One plugin's normalized scores with every node feasible; empty when it does not score.
pub(super) fn scores(plugin: &dyn Plugin, p: &Pod, nodes: &[Node], pods: &[Pod]) -> Vec<i64> {
    let snap = Snapshot::new(nodes, pods);
    let feasible: Vec<NodeInfo> = snap.node_infos().collect();
    let Some(s) = plugin.scorer(p, &snap, &feasible) else {
        return vec![];
    };
    let mut v: Vec<i64> = feasible.iter().map(|n| s.score(n)).collect();
    s.normalize(&feasible, &mut v);
    v
}

#[test]
fn picks_the_least_allocated_node() {
    let nodes = [
        node("a", "2", "1Gi", &[], true),
        node("b", "2", "1Gi", &[], true),
    ];
    let pods = [pod("x", "1", "512Mi", Some("a"))];
    assert_eq!(placed(&pod("p", "100m", "64Mi", None), &nodes, &pods), "b");
}

#[test]
fn ties_break_by_name() {
    let nodes = [
        node("b", "2", "1Gi", &[], true),
        node("a", "2", "1Gi", &[], true),
    ];
    assert_eq!(placed(&pod("p", "", "", None), &nodes, &[]), "a");
}

#[test]
fn pods_without_requests_still_spread() {
    // kube-scheduler scores such pods as 100m/200Mi, so they do not all land on "a".
    let nodes = [
        node("a", "2", "1Gi", &[], true),
        node("b", "2", "1Gi", &[], true),
    ];
    let pods = [pod("x", "", "", Some("a"))];
    assert_eq!(placed(&pod("p", "", "", None), &nodes, &pods), "b");
}

#[test]
fn resource_fit_counts_bound_pods_but_not_finished_ones() {
    let nodes = [node("a", "1", "128Mi", &[], true)];
    let mut done = pod("done", "", "100Mi", Some("a"));
    done.status.phase = edge_api::PodPhase::Succeeded;
    assert_eq!(placed(&pod("p", "", "100Mi", None), &nodes, &[done]), "a");
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
    assert_eq!(placed(&p, &nodes, &[]), "a");
    p.spec.node_selector.insert("zone".into(), "west".into());
    assert_eq!(
        summary(&p, &nodes, &[]),
        "0/4 nodes are available: 3 node(s) didn't match Pod's node affinity/selector, 1 node(s) were not ready."
    );
}

#[test]
fn mixed_reasons_read_like_kubernetes() {
    let nodes = [
        node("a", "2", "128Mi", &[], true),
        node("b", "2", "128Mi", &[], true),
        tainted(
            node("c", "2", "4Gi", &[], true),
            "dedicated",
            "gpu",
            TaintEffect::NoSchedule,
        ),
    ];
    let p = pod("p", "", "256Mi", None);
    assert_eq!(
        summary(&p, &nodes, &[]),
        "0/3 nodes are available: 2 Insufficient memory, 1 node(s) had untolerated taint {dedicated: gpu}."
    );
    let mut tolerant = p.clone();
    tolerant.spec.tolerations = pod_with(
        "p",
        &[],
        "  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]",
    )
    .spec
    .tolerations;
    assert_eq!(placed(&tolerant, &nodes, &[]), "c");
}

#[test]
fn cordoned_and_not_ready_nodes_admit_pods_that_tolerate_them() {
    let mut cordoned = big("a", &[]);
    cordoned.spec.unschedulable = true;
    let nodes = [cordoned, node("b", "8", "8Gi", &[], false)];
    assert_eq!(
        summary(&pod("p", "", "", None), &nodes, &[]),
        "0/2 nodes are available: 1 node(s) were not ready, 1 node(s) were unschedulable."
    );
    let daemon = pod_with(
        "d",
        &[],
        "  tolerations: [{key: node.kubernetes.io/unschedulable, operator: Exists, effect: NoSchedule}]",
    );
    assert_eq!(placed(&daemon, &nodes, &[]), "a");
    let anywhere = pod_with("e", &[], "  tolerations: [{operator: Exists}]");
    assert_eq!(
        verdicts(&NodeReady, &anywhere, &nodes, &[]),
        vec![None, None]
    );
}

fn with_port(mut p: Pod, port: u16, protocol: &str) -> Pod {
    p.spec.containers[0]
        .ports
        .push(edge_api::pod::ContainerPort {
            container_port: port,
            name: None,
            protocol: protocol.into(),
        });
    p
}

#[test]
fn node_ports_keep_pods_with_the_same_port_apart() {
    let nodes = [big("a", &[]), big("b", &[])];
    let web = |name: &str, on: Option<&str>| with_port(pod(name, "", "", on), 8080, "TCP");
    let mut finished = web("old", Some("b"));
    finished.status.phase = edge_api::PodPhase::Failed;
    let cases: Vec<(Pod, Vec<Option<&str>>)> = vec![
        (web("x", Some("a")), vec![Some(PORTS), None]),
        (
            with_port(pod("u", "", "", Some("a")), 8080, "UDP"),
            vec![None, None],
        ),
        (
            with_port(pod("o", "", "", Some("a")), 9090, "TCP"),
            vec![None, None],
        ),
        (finished, vec![None, None]),
    ];
    for (existing, want) in cases {
        let got = verdicts(
            &NodePorts,
            &web("p", None),
            &nodes,
            std::slice::from_ref(&existing),
        );
        let want: Vec<Option<String>> = want.into_iter().map(|w| w.map(str::to_string)).collect();
        assert_eq!(got, want, "{:?}", existing.spec.containers[0].ports);
    }
    let both = [web("x", Some("a")), web("y", Some("b"))];
    assert_eq!(
        summary(&web("p", None), &nodes, &both),
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."
    );
    assert_eq!(
        placed(&pod("q", "", "", None), &nodes, &both),
        "a",
        "no port, no conflict"
    );
}

const PORTS: &str = "node(s) didn't have free ports for the requested pod ports";

#[test]
fn too_many_pods() {
    let mut n = big("a", &[]);
    n.status.allocatable.insert("pods".into(), "1".into());
    let pods = [pod("x", "", "", Some("a"))];
    assert_eq!(
        summary(&pod("p", "", "", None), &[n], &pods),
        "0/1 nodes are available: 1 Too many pods."
    );
}

#[test]
fn pods_bound_to_unknown_nodes_are_ignored() {
    let nodes = [node("a", "1", "128Mi", &[], true)];
    let pods = [pod("ghost", "", "100Mi", Some("gone"))];
    assert_eq!(placed(&pod("p", "", "100Mi", None), &nodes, &pods), "a");
}

#[test]
fn no_nodes_says_so() {
    assert!(summary(&pod("p", "", "", None), &[], &[]).contains("no nodes"));
}

#[test]
fn normalization_matches_kube_scheduler() {
    let cases = [
        (
            Normalize::ByMax { reverse: false },
            vec![0, 5, 10],
            vec![0, 50, 100],
        ),
        (
            Normalize::ByMax { reverse: true },
            vec![0, 1, 2],
            vec![100, 50, 0],
        ),
        (
            Normalize::ByMax { reverse: true },
            vec![0, 0],
            vec![100, 100],
        ),
        (Normalize::ByMax { reverse: false }, vec![0, 0], vec![0, 0]),
        (Normalize::MinMax, vec![-10, 0, 10], vec![0, 50, 100]),
        (Normalize::MinMax, vec![3, 3], vec![0, 0]),
    ];
    for (n, mut raw, want) in cases {
        n.apply(&mut raw);
        assert_eq!(raw, want, "{n:?}");
    }
}

/// A larger snapshot: spread and anti-affinity still pick a node that holds no pod of the app.
#[test]
fn anti_affinity_and_spread_over_a_large_snapshot() {
    let zones = ["a", "b", "c"];
    let nodes: Vec<Node> = (0..500)
        .map(|i| {
            let name = format!("n{i:04}");
            big(
                &name,
                &[
                    ("kubernetes.io/hostname", name.as_str()),
                    ("zone", zones[i % 3]),
                ],
            )
        })
        .collect();
    let pods: Vec<Pod> = (0..1_000)
        .map(|i| {
            let app = format!("app{}", i % 50);
            bound(
                &format!("p{i}"),
                &[("app", app.as_str())],
                &format!("n{:04}", i % 500),
            )
        })
        .collect();
    let p = pod_with(
        "new",
        &[("app", "app7")],
        "  topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: app7}}}
  - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: app7}}}
  affinity:
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - {labelSelector: {matchLabels: {app: app7}}, topologyKey: kubernetes.io/hostname}",
    );
    let plugins = default_plugins();
    let snap = Snapshot::new(&nodes, &pods);
    let Placement::Node(chosen) = schedule(&p, &snap, &plugins) else {
        panic!("a node without app7 exists")
    };
    let taken = pods.iter().any(|q| {
        q.spec.node_name.as_deref() == Some(chosen.as_str())
            && q.metadata.labels.get("app").map(String::as_str) == Some("app7")
    });
    assert!(!taken, "anti-affinity violated on {chosen}");
}

#[test]
fn large_clusters_score_a_sample_of_nodes_like_kube_scheduler() {
    // kube-scheduler's numFeasibleNodesToFind with percentageOfNodesToScore unset.
    let cases = [
        (0, 0),
        (3, 3),
        (99, 99),
        (100, 100),
        (300, 144),
        (1_000, 420),
        (3_000, 780),
        (5_000, 500),
        (20_000, 1_000),
    ];
    for (nodes, want) in cases {
        assert_eq!(feasible_nodes_to_find(nodes), want, "{nodes} nodes");
    }
}

#[test]
fn a_sampled_decision_starts_where_the_last_one_stopped() {
    let nodes: Vec<Node> = (0..300).map(|i| big(&format!("n{i:03}"), &[])).collect();
    let snap = Snapshot::new(&nodes, &[]);
    let plugins = default_plugins();
    let p = pod("p", "", "", None);
    let first = schedule_from(&p, &snap, &plugins, 0);
    assert_eq!(first.examined, 144);
    assert_eq!(first.placement, Placement::Node("n000".into()));
    // The next pod looks at the following nodes, wrapping around the end.
    let next = schedule_from(&p, &snap, &plugins, 250);
    assert_eq!(next.examined, 144);
    assert_eq!(
        next.placement,
        Placement::Node("n000".into()),
        "wrapped past n299"
    );
    let later = schedule_from(&p, &snap, &plugins, 144);
    assert_eq!(later.placement, Placement::Node("n144".into()));
    // No node fits: every node was examined, so the summary covers all of them.
    let huge = pod("h", "", "1Ti", None);
    let none = schedule_from(&huge, &snap, &plugins, 17);
    assert_eq!(none.examined, 300);
    match none.placement {
        Placement::Unschedulable { summary, per_node } => {
            assert_eq!(per_node.len(), 300);
            assert_eq!(
                summary,
                "0/300 nodes are available: 300 Insufficient memory."
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_node_selector_looks_only_at_the_nodes_it_names_unless_none_fits() {
    let nodes: Vec<Node> = (0..300)
        .map(|i| {
            let zone = if i % 10 == 3 { "z" } else { "other" };
            node(&format!("n{i:03}"), "8", "8Gi", &[("zone", zone)], i != 13)
        })
        .collect();
    let snap = Snapshot::new(&nodes, &[]);
    let mut p = pod("p", "", "", None);
    p.spec.node_selector.insert("zone".into(), "z".into());
    let d = schedule_from(&p, &snap, &default_plugins(), 0);
    assert_eq!(d.placement, Placement::Node("n003".into()));
    assert_eq!(d.examined, 30, "only the 30 nodes of zone z");
    // Starting at n013 (zone z, not ready): it is rejected, the other 29 tie, the first name wins.
    let d = schedule_from(&p, &snap, &default_plugins(), 1);
    assert_eq!(d.placement, Placement::Node("n003".into()));
    assert_eq!(d.examined, 30);
    // When none of them fits, every node is examined so the summary covers the cluster.
    let mut huge = p.clone();
    huge.spec.containers[0]
        .resources
        .requests
        .insert("memory".into(), "1Ti".into());
    match schedule_from(&huge, &snap, &default_plugins(), 0).placement {
        Placement::Unschedulable { summary, per_node } => {
            assert_eq!(per_node.len(), 300);
            assert_eq!(
                summary,
                "0/300 nodes are available: 270 node(s) didn't match Pod's node affinity/selector, 29 Insufficient memory, 1 node(s) were not ready."
            );
        }
        other => panic!("{other:?}"),
    }
}
