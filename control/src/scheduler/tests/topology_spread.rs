//! PodTopologySpread: DoNotSchedule constraints filter by skew, ScheduleAnyway ones score.

use super::*;

const SKEW: &str = "node(s) didn't match pod topology spread constraints";
const MISSING: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

fn spread(constraint: &str) -> Pod {
    pod_with(
        "p",
        &[("app", "web")],
        &format!("  topologySpreadConstraints: [{{{constraint}}}]"),
    )
}

fn zone_spread(max_skew: u32, extra: &str) -> Pod {
    spread(&format!(
        "maxSkew: {max_skew}, topologyKey: zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {{matchLabels: {{app: web}}}}{extra}"
    ))
}

fn zoned(name: &str, zone: &str) -> Node {
    big(name, &[("zone", zone), ("kubernetes.io/hostname", name)])
}

fn web(name: &str, on: &str) -> Pod {
    bound(name, &[("app", "web")], on)
}

/// A pending pod, the bound pods, and the verdict expected on each node.
type Case<'a> = (Pod, &'a [Pod], Vec<Option<&'a str>>);

fn reasons(want: &[Option<&str>]) -> Vec<Option<String>> {
    want.iter().map(|w| w.map(str::to_string)).collect()
}

#[test]
fn skew_filters_crowded_domains() {
    let nodes = [zoned("n1", "a"), zoned("n2", "a"), zoned("n3", "b")];
    let two_in_a = [web("w1", "n1"), web("w2", "n1")];
    let one_each = [web("w1", "n1"), web("w2", "n3")];
    let cases: Vec<Case> = vec![
        // a has 2, b has 0: placing in a makes the skew 3.
        (
            zone_spread(1, ""),
            &two_in_a[..],
            vec![Some(SKEW), Some(SKEW), None],
        ),
        (zone_spread(3, ""), &two_in_a[..], vec![None, None, None]),
        (zone_spread(1, ""), &one_each[..], vec![None, None, None]),
        // Three domains wanted, two exist: the minimum counts as 0.
        (
            zone_spread(1, ", minDomains: 3"),
            &one_each[..],
            vec![Some(SKEW), Some(SKEW), Some(SKEW)],
        ),
    ];
    for (p, pods, want) in cases {
        let c = &p.spec.topology_spread_constraints[0];
        assert_eq!(
            verdicts(&PodTopologySpread, &p, &nodes, pods),
            reasons(&want),
            "{c:?}"
        );
    }
}

#[test]
fn counts_only_selected_live_pods_of_the_namespace() {
    let nodes = [zoned("n1", "a"), zoned("n3", "b")];
    let mut other_ns = web("o", "n1");
    other_ns.metadata.namespace = "other".into();
    let mut leaving = web("l", "n1");
    leaving.metadata.deletion_timestamp = Some(chrono::Utc::now());
    let mut done = web("d", "n1");
    done.status.phase = edge_api::PodPhase::Succeeded;
    let pods = [
        other_ns,
        leaving,
        done,
        bound("db", &[("app", "db")], "n1"),
        web("w", "n1"),
    ];
    // Only "w" counts: a has 1, b has 0, so a second pod in a would make the skew 2.
    assert_eq!(
        verdicts(&PodTopologySpread, &zone_spread(1, ""), &nodes, &pods),
        reasons(&[Some(SKEW), None])
    );
    // A pod the selector does not match adds nothing to its own domain.
    let mut stranger = zone_spread(1, "");
    stranger.metadata.labels = labels(&[("app", "other")]);
    assert_eq!(
        verdicts(&PodTopologySpread, &stranger, &nodes, &pods),
        reasons(&[None, None])
    );
}

#[test]
fn nodes_without_the_key_are_refused_and_not_counted() {
    let nodes = [zoned("n1", "a"), zoned("n3", "b"), big("bare", &[])];
    assert_eq!(
        verdicts(
            &PodTopologySpread,
            &zone_spread(1, ""),
            &nodes,
            &[web("w", "n1")]
        ),
        reasons(&[Some(SKEW), None, Some(MISSING)])
    );
}

#[test]
fn only_nodes_matching_the_pods_node_affinity_count() {
    // Zone c has no ssd node: it is not a domain for this pod, so the minimum is 1, not 0.
    let mut nodes = [zoned("n1", "a"), zoned("n2", "b"), zoned("n3", "c")];
    for n in &mut nodes[..2] {
        n.metadata.labels.insert("disk".into(), "ssd".into());
    }
    let pods = [web("w1", "n1"), web("w2", "n2")];
    let mut p = zone_spread(1, "");
    p.spec.node_selector.insert("disk".into(), "ssd".into());
    assert!(matches!(place(&p, &nodes, &pods), Placement::Node(n) if n != "n3"));
    p.spec.node_selector.clear();
    assert_eq!(placed(&p, &nodes, &pods), "n3");
}

#[test]
fn summary_names_spread_and_other_reasons() {
    let mut nodes = [zoned("n1", "a"), zoned("n2", "a"), zoned("n3", "b")];
    nodes[2].status.conditions[0].status = "False".into();
    let pods = [web("w1", "n1"), web("w2", "n2")];
    // b is still a domain (with 0 pods) though its node is not ready, as in Kubernetes.
    assert_eq!(
        summary(&zone_spread(1, ""), &nodes, &pods),
        "0/3 nodes are available: 2 node(s) didn't match pod topology spread constraints, 1 node(s) were not ready."
    );
}

#[test]
fn schedule_anyway_prefers_emptier_domains() {
    let nodes = [
        zoned("n1", "a"),
        zoned("n2", "a"),
        zoned("n3", "b"),
        big("bare", &[]),
    ];
    let soft = spread(
        "maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web}}",
    );
    let pods = [web("w1", "n1")];
    // a holds one matching pod, b none; the node without the key is ignored (0).
    assert_eq!(
        scores(&PodTopologySpread, &soft, &nodes, &pods),
        vec![0, 0, 100, 0]
    );
    assert_eq!(
        scores(&PodTopologySpread, &soft, &nodes, &[]),
        vec![100, 100, 100, 0]
    );
    assert_eq!(placed(&soft, &nodes, &pods), "n3");
    // Never a filter: with every domain crowded the pod still lands.
    let crowded = [web("w1", "n1"), web("w2", "n1"), web("w3", "n1")];
    assert_eq!(
        verdicts(&PodTopologySpread, &soft, &nodes, &crowded),
        vec![None; 4]
    );
    assert!(scores(&PodTopologySpread, &pod("q", "", "", None), &nodes, &pods).is_empty());
}

#[test]
fn hostname_spread_places_replicas_one_per_node() {
    let nodes = [zoned("n1", "a"), zoned("n2", "a"), zoned("n3", "b")];
    let p = spread(
        "maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}",
    );
    let mut pods = Vec::new();
    let mut seen = Vec::new();
    for i in 0..3 {
        let n = placed(&p, &nodes, &pods);
        pods.push(web(&format!("w{i}"), &n));
        seen.push(n);
    }
    seen.sort();
    assert_eq!(seen, ["n1", "n2", "n3"]);
}
