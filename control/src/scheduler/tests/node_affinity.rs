//! NodeAffinity: nodeSelector and required terms filter with one reason; preferred terms score.

use super::*;

const NO_MATCH: &str = "node(s) didn't match Pod's node affinity/selector";

fn requiring(terms: &str) -> Pod {
    pod_with(
        "p",
        &[],
        &format!("  affinity: {{nodeAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: {{nodeSelectorTerms: {terms}}}}}}}"),
    )
}

#[test]
fn required_terms_filter() {
    let nodes = [
        big("a", &[("zone", "north"), ("cores", "16")]),
        big("b", &[("zone", "south"), ("cores", "4")]),
        big("c", &[]),
    ];
    let cases = [
        ("[{matchExpressions: [{key: zone, operator: In, values: [north]}]}]", [true, false, false]),
        ("[{matchExpressions: [{key: zone, operator: NotIn, values: [north]}]}]", [false, true, true]),
        ("[{matchExpressions: [{key: zone, operator: Exists}]}]", [true, true, false]),
        ("[{matchExpressions: [{key: zone, operator: DoesNotExist}]}]", [false, false, true]),
        ("[{matchExpressions: [{key: cores, operator: Gt, values: ['8']}]}]", [true, false, false]),
        ("[{matchExpressions: [{key: cores, operator: Lt, values: ['8']}]}]", [false, true, false]),
        // Terms are ORed, expressions within a term ANDed.
        (
            "[{matchExpressions: [{key: zone, operator: In, values: [north]}]}, {matchExpressions: [{key: zone, operator: DoesNotExist}]}]",
            [true, false, true],
        ),
        (
            "[{matchExpressions: [{key: zone, operator: Exists}, {key: cores, operator: Lt, values: ['8']}]}]",
            [false, true, false],
        ),
        ("[{matchFields: [{key: metadata.name, operator: In, values: [c]}]}]", [false, false, true]),
    ];
    for (terms, fits) in cases {
        let got = verdicts(&NodeAffinity, &requiring(terms), &nodes, &[]);
        let want: Vec<Option<String>> = fits
            .iter()
            .map(|ok| (!ok).then(|| NO_MATCH.to_string()))
            .collect();
        assert_eq!(got, want, "{terms}");
    }
}

#[test]
fn node_selector_and_affinity_must_both_match_with_one_reason() {
    let nodes = [
        big("a", &[("zone", "north"), ("disk", "ssd")]),
        big("b", &[("zone", "north")]),
        big("c", &[("disk", "ssd")]),
    ];
    let mut p = requiring("[{matchExpressions: [{key: zone, operator: In, values: [north]}]}]");
    p.spec.node_selector.insert("disk".into(), "ssd".into());
    assert_eq!(placed(&p, &nodes, &[]), "a");
    p.spec.node_selector.insert("disk".into(), "nvme".into());
    assert_eq!(
        summary(&p, &nodes, &[]),
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    );
    assert_eq!(
        verdicts(&NodeAffinity, &pod("q", "", "", None), &nodes, &[]),
        vec![None; 3]
    );
}

#[test]
fn preferred_terms_score_by_summed_weight() {
    let nodes = [
        big("a", &[("zone", "north"), ("disk", "ssd")]),
        big("b", &[("zone", "north")]),
        big("c", &[("disk", "ssd")]),
        big("d", &[]),
    ];
    let p = pod_with(
        "p",
        &[],
        "  affinity:
    nodeAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - {weight: 60, preference: {matchExpressions: [{key: zone, operator: In, values: [north]}]}}
      - {weight: 20, preference: {matchExpressions: [{key: disk, operator: In, values: [ssd]}]}}",
    );
    assert_eq!(scores(&NodeAffinity, &p, &nodes, &[]), vec![100, 75, 25, 0]);
    assert_eq!(placed(&p, &nodes, &[]), "a");
    // A preference outweighs a little load (weight 2 against least-allocated's 1).
    let busy = [pod("x", "2", "2Gi", Some("a"))];
    assert_eq!(placed(&p, &nodes, &busy), "a");
    assert!(scores(&NodeAffinity, &pod("q", "", "", None), &nodes, &[]).is_empty());
}
