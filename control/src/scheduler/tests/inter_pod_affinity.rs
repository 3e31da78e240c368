//! InterPodAffinity: required affinity/anti-affinity (both sides) filter, preferred terms score.

use super::*;

const AFFINITY: &str = "node(s) didn't match pod affinity rules";
const ANTI: &str = "node(s) didn't match pod anti-affinity rules";
const EXISTING_ANTI: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

fn zoned(name: &str, zone: &str) -> Node {
    big(name, &[("zone", zone), ("kubernetes.io/hostname", name)])
}

fn nodes() -> [Node; 4] {
    [
        zoned("n1", "a"),
        zoned("n2", "a"),
        zoned("n3", "b"),
        big("bare", &[("kubernetes.io/hostname", "bare")]),
    ]
}

/// A pod labelled app=web with `kind` (podAffinity/podAntiAffinity) terms in YAML flow style.
fn with_terms(kind: &str, required: &str, preferred: &str) -> Pod {
    pod_with(
        "p",
        &[("app", "web")],
        &format!(
            "  affinity: {{{kind}: {{requiredDuringSchedulingIgnoredDuringExecution: [{required}], preferredDuringSchedulingIgnoredDuringExecution: [{preferred}]}}}}"
        ),
    )
}

fn term(app: &str, key: &str) -> String {
    format!("{{labelSelector: {{matchLabels: {{app: {app}}}}}, topologyKey: {key}}}")
}

/// A pending pod, the bound pods, and the verdict expected on each of `nodes()`.
type Case<'a> = (Pod, &'a [Pod], [Option<&'a str>; 4]);

fn reasons(want: &[Option<&str>]) -> Vec<Option<String>> {
    want.iter().map(|w| w.map(str::to_string)).collect()
}

#[test]
fn required_terms_filter() {
    let host = "kubernetes.io/hostname";
    let web_on_n1 = [bound("w", &[("app", "web")], "n1")];
    let cache_on_n3 = [bound("c", &[("app", "cache")], "n3")];
    let none: [Pod; 0] = [];
    let cases: Vec<Case> = vec![
        // Anti-affinity by host: only the node with a web pod is out.
        (
            with_terms("podAntiAffinity", &term("web", host), ""),
            &web_on_n1[..],
            [Some(ANTI), None, None, None],
        ),
        // By zone: the whole zone is out; a node without the key has no domain to clash in.
        (
            with_terms("podAntiAffinity", &term("web", "zone"), ""),
            &web_on_n1[..],
            [Some(ANTI), Some(ANTI), None, None],
        ),
        // Affinity by zone: only the zone holding a cache pod; no key, no match.
        (
            with_terms("podAffinity", &term("cache", "zone"), ""),
            &cache_on_n3[..],
            [Some(AFFINITY), Some(AFFINITY), None, Some(AFFINITY)],
        ),
        // Nothing to be near yet: refused everywhere ...
        (
            with_terms("podAffinity", &term("cache", "zone"), ""),
            &none[..],
            [
                Some(AFFINITY),
                Some(AFFINITY),
                Some(AFFINITY),
                Some(AFFINITY),
            ],
        ),
        // ... unless the pod would match its own term (the first of a group), on nodes with the key.
        (
            with_terms("podAffinity", &term("web", "zone"), ""),
            &none[..],
            [None, None, None, Some(AFFINITY)],
        ),
    ];
    for (p, pods, want) in cases {
        let got = verdicts(&InterPodAffinity, &p, &nodes(), pods);
        assert_eq!(got, reasons(&want), "{:?} with {pods:?}", p.spec.affinity);
    }
}

#[test]
fn existing_pods_anti_affinity_keeps_the_pod_away() {
    let mut guard = with_terms("podAntiAffinity", &term("web", "zone"), "");
    guard.metadata.labels = labels(&[("app", "guard")]);
    guard.spec.node_name = Some("n3".into());
    let newcomer = pod_with("p", &[("app", "web")], "");
    assert_eq!(
        verdicts(&InterPodAffinity, &newcomer, &nodes(), &[guard.clone()]),
        reasons(&[None, None, Some(EXISTING_ANTI), None])
    );
    let mut db = newcomer.clone();
    db.metadata.labels = labels(&[("app", "db")]);
    assert_eq!(
        verdicts(&InterPodAffinity, &db, &nodes(), &[guard]),
        vec![None; 4]
    );
}

#[test]
fn terms_look_in_their_own_namespace_unless_told() {
    let mut elsewhere = bound("w", &[("app", "web")], "n1");
    elsewhere.metadata.namespace = "other".into();
    let own_ns = with_terms(
        "podAntiAffinity",
        &term("web", "kubernetes.io/hostname"),
        "",
    );
    assert_eq!(
        verdicts(&InterPodAffinity, &own_ns, &nodes(), &[elsewhere.clone()]),
        vec![None; 4]
    );
    let listed = with_terms(
        "podAntiAffinity",
        "{labelSelector: {matchLabels: {app: web}}, namespaces: [other], topologyKey: kubernetes.io/hostname}",
        "",
    );
    assert_eq!(
        verdicts(&InterPodAffinity, &listed, &nodes(), &[elsewhere]),
        reasons(&[Some(ANTI), None, None, None])
    );
}

#[test]
fn anti_affinity_replicas_fill_nodes_then_explain() {
    let three = [zoned("n1", "a"), zoned("n2", "a"), zoned("n3", "b")];
    let p = with_terms(
        "podAntiAffinity",
        &term("web", "kubernetes.io/hostname"),
        "",
    );
    let mut pods: Vec<Pod> = Vec::new();
    for i in 0..3 {
        let n = placed(&p, &three, &pods);
        assert!(!pods
            .iter()
            .any(|q| q.spec.node_name.as_deref() == Some(n.as_str())));
        let mut q = p.clone();
        q.metadata.name = format!("w{i}");
        q.spec.node_name = Some(n);
        pods.push(q);
    }
    assert_eq!(
        summary(&p, &three, &pods),
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    );
}

#[test]
fn preferred_terms_score() {
    let cache_on_n3 = [bound("c", &[("app", "cache")], "n3")];
    let web_on_n1 = [bound("w", &[("app", "web")], "n1")];
    let near = with_terms(
        "podAffinity",
        "",
        &format!("{{weight: 50, podAffinityTerm: {}}}", term("cache", "zone")),
    );
    assert_eq!(
        scores(&InterPodAffinity, &near, &nodes(), &cache_on_n3),
        vec![0, 0, 100, 0]
    );
    assert_eq!(placed(&near, &nodes(), &cache_on_n3), "n3");
    let apart = with_terms(
        "podAntiAffinity",
        "",
        &format!("{{weight: 10, podAffinityTerm: {}}}", term("web", "zone")),
    );
    assert_eq!(
        scores(&InterPodAffinity, &apart, &nodes(), &web_on_n1),
        vec![0, 0, 100, 100]
    );
    // Nothing selected anywhere: no preference at all.
    assert!(scores(&InterPodAffinity, &near, &nodes(), &[]).is_empty());
}

#[test]
fn existing_pods_terms_attract_and_repel_the_newcomer() {
    let newcomer = pod_with("p", &[("app", "web")], "");
    // A bound pod requiring web pods in its zone pulls web pods there (hardPodAffinityWeight).
    let mut friend = with_terms("podAffinity", &term("web", "zone"), "");
    friend.metadata.labels = labels(&[("app", "friend")]);
    friend.spec.node_name = Some("n3".into());
    assert_eq!(
        scores(&InterPodAffinity, &newcomer, &nodes(), &[friend]),
        vec![0, 0, 100, 0]
    );
    // A bound pod preferring to be away from web pods pushes them out of its zone.
    let mut loner = with_terms(
        "podAntiAffinity",
        "",
        &format!("{{weight: 30, podAffinityTerm: {}}}", term("web", "zone")),
    );
    loner.metadata.labels = labels(&[("app", "loner")]);
    loner.spec.node_name = Some("n1".into());
    assert_eq!(
        scores(&InterPodAffinity, &newcomer, &nodes(), &[loner]),
        vec![0, 0, 100, 100]
    );
}
