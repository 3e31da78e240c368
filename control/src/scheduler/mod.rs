//! The scheduler's decision: a pure function from a snapshot (nodes, pods) and a pending pod
//! to a node, built from filter and score plugins, with the per-node rejection reasons kept.

mod cache;
mod plugins;
pub mod run;
mod snapshot;

pub use plugins::{
    default_plugins, BoxFilter, BoxScorer, Filter, InterPodAffinity, NodeAffinity, NodePorts,
    NodeReady, NodeResourcesFit, Normalize, Plugin, PodTopologySpread, Reason, Scorer,
    TaintToleration, MAX_NODE_SCORE,
};
pub use snapshot::{pod_key, NodeInfo, NodeResources, Resources, Snapshot};

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

/// kube-scheduler's `minFeasibleNodesToFind`: below this many nodes every node is examined.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// kube-scheduler's `minFeasibleNodesPercentageToFind`.
pub const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// How many feasible nodes a decision looks for before it stops filtering and scores them:
/// kube-scheduler's `numFeasibleNodesToFind` with its adaptive default for
/// `percentageOfNodesToScore` (50% minus 1% per 125 nodes, at least 5%, at least 100 nodes),
/// so a decision costs about the same at 5,000 nodes as at 1,000.
pub fn feasible_nodes_to_find(nodes: usize) -> usize {
    if nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return nodes;
    }
    let percentage = 50usize
        .saturating_sub(nodes / 125)
        .max(MIN_FEASIBLE_NODES_PERCENTAGE);
    (nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// A placement and how many nodes were examined to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub placement: Placement,
    /// Nodes filtered (feasible or not): the next decision starts after them, as
    /// kube-scheduler's `nextStartNodeIndex` does, so every node gets its turn.
    pub examined: usize,
}

/// Picks a node for `pod`, examining nodes from the first; see `schedule_from`.
pub fn schedule(pod: &Pod, snap: &Snapshot, plugins: &[Box<dyn Plugin>]) -> Placement {
    schedule_from(pod, snap, plugins, 0).placement
}

/// Picks a node for `pod`: every plugin's filter in order (the first failure is the node's
/// reason) over the nodes from position `start` on, wrapping around, until
/// `feasible_nodes_to_find` nodes passed; then the weighted sum of normalized scores over
/// those. Ties are broken by node name. When no node fits, every node was examined, so the
/// reasons cover the whole cluster.
///
/// A pod with a nodeSelector is first tried on the nodes carrying its labels only (found
/// through the snapshot's label index, like kube-scheduler's PreFilterResult): every other node
/// would fail NodeAffinity anyway.
pub fn schedule_from<'a>(
    pod: &'a Pod,
    snap: &'a Snapshot,
    plugins: &[Box<dyn Plugin>],
    start: usize,
) -> Decision {
    let filters: Vec<BoxFilter<'a>> = plugins.iter().filter_map(|p| p.filter(pod, snap)).collect();
    let narrowed = snap
        .nodes_labeled(&pod.spec.node_selector)
        .map(|nodes| search(snap, &filters, Some(&nodes), start))
        .filter(|s| !s.feasible.is_empty());
    let found = narrowed.unwrap_or_else(|| search(snap, &filters, None, start));
    let placement = match found.feasible.as_slice() {
        [] => {
            // Reasons are kept as strings only when they are reported.
            let per_node: BTreeMap<String, String> = found
                .rejected
                .into_iter()
                .map(|(n, r)| (n.to_string(), r.into_owned()))
                .collect();
            Placement::Unschedulable {
                summary: summarize(snap.len(), &per_node),
                per_node,
            }
        }
        // One candidate needs no scoring.
        [only] => Placement::Node(only.name().to_string()),
        feasible => Placement::Node(best(pod, snap, plugins, feasible).to_string()),
    };
    Decision {
        placement,
        examined: found.examined,
    }
}

struct Search<'a> {
    feasible: Vec<NodeInfo<'a>>,
    rejected: Vec<(&'a str, Reason)>,
    examined: usize,
}

/// Filters nodes (all of them, or those at `positions`) from `start` on, wrapping around,
/// until enough passed.
fn search<'a>(
    snap: &'a Snapshot,
    filters: &[BoxFilter<'a>],
    positions: Option<&[usize]>,
    start: usize,
) -> Search<'a> {
    let total = positions.map_or(snap.len(), <[usize]>::len);
    let wanted = feasible_nodes_to_find(total);
    let mut found = Search {
        feasible: Vec::with_capacity(wanted),
        rejected: Vec::new(),
        examined: 0,
    };
    while found.examined < total && found.feasible.len() < wanted {
        let k = (start + found.examined) % total;
        let info = snap.node(positions.map_or(k, |p| p[k]));
        found.examined += 1;
        match filters.iter().find_map(|f| f.filter(&info).err()) {
            Some(reason) => found.rejected.push((info.name(), reason)),
            None => found.feasible.push(info),
        }
    }
    found
}

/// The feasible node with the highest weighted score; ties go to the first name.
fn best<'a>(
    pod: &'a Pod,
    snap: &'a Snapshot,
    plugins: &[Box<dyn Plugin>],
    feasible: &[NodeInfo<'a>],
) -> &'a str {
    let mut totals = vec![0i64; feasible.len()];
    let mut scores = vec![0i64; feasible.len()];
    for plugin in plugins {
        let Some(scorer) = plugin.scorer(pod, snap, feasible) else {
            continue;
        };
        for (s, n) in scores.iter_mut().zip(feasible) {
            *s = scorer.score(n);
        }
        scorer.normalize(feasible, &mut scores);
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
    feasible[best].name()
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
