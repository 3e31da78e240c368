//! The scheduler's decision: a pure function from a snapshot (nodes, pods) and a pending pod
//! to a node, built from filter and score plugins, with the per-node rejection reasons kept.

mod plugins;
pub mod run;
mod snapshot;

pub use plugins::{
    default_plugins, BoxFilter, BoxScorer, Filter, InterPodAffinity, NodeAffinity, NodePorts,
    NodeReady, NodeResourcesFit, Normalize, Plugin, PodTopologySpread, Reason, Scorer,
    TaintToleration, MAX_NODE_SCORE,
};
pub use snapshot::{NodeInfo, NodeResources, Resources, Snapshot};

use edge_api::Pod;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    Node(String),
    /// No node fits: the reason for each node, and a kube-scheduler-style summary.
    Unschedulable {
        summary: String,
        per_node: BTreeMap<String, String>,
    },
}

/// Picks a node for `pod`: every plugin's filter in order (the first failure is the node's
/// reason), then the weighted sum of normalized scores over the nodes left. Ties are broken by
/// node name so the result is deterministic.
pub fn schedule<'a>(
    pod: &'a Pod,
    snap: &'a Snapshot<'a>,
    plugins: &[Box<dyn Plugin>],
) -> Placement {
    let filters: Vec<BoxFilter<'a>> = plugins.iter().filter_map(|p| p.filter(pod, snap)).collect();
    let mut rejected = Vec::new();
    let mut feasible = Vec::new();
    for info in snap.node_infos() {
        match filters.iter().find_map(|f| f.filter(&info).err()) {
            Some(reason) => rejected.push((info.name(), reason)),
            None => feasible.push(info),
        }
    }
    match feasible.as_slice() {
        [] => {
            // Reasons are kept as strings only when they are reported.
            let per_node: BTreeMap<String, String> = rejected
                .into_iter()
                .map(|(n, r)| (n.to_string(), r.into_owned()))
                .collect();
            return Placement::Unschedulable {
                summary: summarize(snap.nodes.len(), &per_node),
                per_node,
            };
        }
        // One candidate needs no scoring.
        [only] => return Placement::Node(only.name().to_string()),
        _ => {}
    }
    let mut totals = vec![0i64; feasible.len()];
    let mut scores = vec![0i64; feasible.len()];
    for plugin in plugins {
        let Some(scorer) = plugin.scorer(pod, snap, &feasible) else {
            continue;
        };
        for (s, n) in scores.iter_mut().zip(&feasible) {
            *s = scorer.score(n);
        }
        scorer.normalize(&feasible, &mut scores);
        for (t, s) in totals.iter_mut().zip(&scores) {
            *t += s * plugin.weight();
        }
    }
    let mut best = 0;
    for i in 1..feasible.len() {
        let (s, b) = (totals[i], totals[best]);
        if s > b || (s == b && feasible[i].name() < feasible[best].name()) {
            best = i;
        }
    }
    Placement::Node(feasible[best].name().to_string())
}

/// "0/3 nodes are available: 2 Insufficient memory, 1 node(s) were not ready."
/// Reasons are ordered by count, then alphabetically, so the message is deterministic.
pub fn summarize(total: usize, per_node: &BTreeMap<String, String>) -> String {
    if total == 0 {
        return "0/0 nodes are available: no nodes are registered.".into();
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for reason in per_node.values() {
        *counts.entry(reason.as_str()).or_default() += 1;
    }
    let mut parts: Vec<(usize, &str)> = counts.into_iter().map(|(r, c)| (c, r)).collect();
    parts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let parts: Vec<String> = parts.iter().map(|(c, r)| format!("{c} {r}")).collect();
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

#[cfg(test)]
mod tests;
