//! TaintToleration: which taints rule a node out, and how soft taints lower its score.

use super::*;
use edge_api::scheduling::TaintEffect::{NoExecute, NoSchedule, PreferNoSchedule};

fn tolerating(yaml: &str) -> Pod {
    pod_with("p", &[], &format!("  tolerations: {yaml}"))
}

#[test]
fn untolerated_hard_taints_filter_with_the_taint_named() {
    let gpu = |effect| tainted(big("n", &[]), "dedicated", "gpu", effect);
    let cases = [
        (big("n", &[]), "[]", None),
        (
            gpu(NoSchedule),
            "[]",
            Some("node(s) had untolerated taint {dedicated: gpu}"),
        ),
        (
            gpu(NoExecute),
            "[]",
            Some("node(s) had untolerated taint {dedicated: gpu}"),
        ),
        (gpu(PreferNoSchedule), "[]", None),
        (gpu(NoSchedule), "[{key: dedicated, value: gpu}]", None),
        (
            gpu(NoSchedule),
            "[{key: dedicated, value: cpu}]",
            Some("node(s) had untolerated taint {dedicated: gpu}"),
        ),
        (
            gpu(NoSchedule),
            "[{key: dedicated, operator: Exists}]",
            None,
        ),
        (
            gpu(NoSchedule),
            "[{key: dedicated, operator: Exists, effect: NoExecute}]",
            Some("node(s) had untolerated taint {dedicated: gpu}"),
        ),
        (gpu(NoSchedule), "[{operator: Exists}]", None),
        (
            tainted(big("n", &[]), "spot", "", NoExecute),
            "[]",
            Some("node(s) had untolerated taint {spot: }"),
        ),
        (
            tainted(gpu(NoSchedule), "zone", "edge", NoSchedule),
            "[{key: dedicated, operator: Exists}]",
            Some("node(s) had untolerated taint {zone: edge}"),
        ),
    ];
    for (node, tolerations, want) in cases {
        let got = verdicts(
            &TaintToleration,
            &tolerating(tolerations),
            std::slice::from_ref(&node),
            &[],
        );
        assert_eq!(
            got,
            vec![want.map(str::to_string)],
            "{:?} / {tolerations}",
            node.spec.taints
        );
    }
}

#[test]
fn fewer_untolerated_soft_taints_score_higher() {
    let soft = |n, key| tainted(n, key, "", PreferNoSchedule);
    let nodes = [
        big("a", &[]),
        soft(big("b", &[]), "x"),
        soft(soft(big("c", &[]), "x"), "y"),
    ];
    let cases = [
        ("[]", vec![100, 50, 0]),
        ("[{key: x, operator: Exists}]", vec![100, 100, 0]),
        (
            "[{key: x, operator: Exists, effect: PreferNoSchedule}]",
            vec![100, 100, 0],
        ),
        // A toleration for another effect does not soften a PreferNoSchedule taint.
        (
            "[{key: x, operator: Exists, effect: NoSchedule}]",
            vec![100, 50, 0],
        ),
        ("[{operator: Exists}]", vec![100, 100, 100]),
    ];
    for (tolerations, want) in cases {
        assert_eq!(
            scores(&TaintToleration, &tolerating(tolerations), &nodes, &[]),
            want,
            "{tolerations}"
        );
    }
    assert!(scores(&TaintToleration, &tolerating("[]"), &[big("a", &[])], &[]).is_empty());
}

#[test]
fn a_soft_taint_outweighs_a_little_load() {
    // TaintToleration weighs 3, least-allocated 1: the busier untainted node still wins.
    let nodes = [
        tainted(
            node("a", "2", "2Gi", &[], true),
            "maintenance",
            "",
            PreferNoSchedule,
        ),
        node("b", "2", "2Gi", &[], true),
    ];
    let pods = [pod("x", "1", "1Gi", Some("b"))];
    assert_eq!(placed(&pod("p", "100m", "64Mi", None), &nodes, &pods), "b");
}
