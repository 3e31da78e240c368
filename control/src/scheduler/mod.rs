//! The scheduler's decision: a pure function from a snapshot (nodes, pods) and a pending pod
//! to a node, built from filter and score plugins, with the per-node rejection reasons kept.

mod plugins;
pub mod run;

pub use plugins::{default_filters, default_scorers, FilterPlugin, ScorePlugin};

use edge_api::{Node, Pod};
use std::collections::BTreeMap;

/// What a plugin sees: one candidate node and the pods already bound to it.
pub struct NodeInfo<'a> {
    pub node: &'a Node,
    pub pods: Vec<&'a Pod>,
}

impl NodeInfo<'_> {
    /// Sum of the requests of the pods that still occupy this node.
    pub fn requested(&self, resource: &str) -> u64 {
        self.pods
            .iter()
            .filter(|p| p.occupies_node())
            .map(|p| p.request(resource))
            .sum()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    Node(String),
    /// No node fits: the reason for each node, and a kube-scheduler-style summary.
    Unschedulable {
        summary: String,
        per_node: BTreeMap<String, String>,
    },
}

/// Picks a node for `pod`. Ties are broken by node name so the result is deterministic.
pub fn schedule(
    pod: &Pod,
    nodes: &[Node],
    pods: &[Pod],
    filters: &[Box<dyn FilterPlugin>],
    scorers: &[Box<dyn ScorePlugin>],
) -> Placement {
    let mut per_node = BTreeMap::new();
    let mut best: Option<(i64, &str)> = None;
    for node in nodes {
        let name = node.metadata.name.as_str();
        let info = NodeInfo {
            node,
            pods: pods
                .iter()
                .filter(|p| p.spec.node_name.as_deref() == Some(name))
                .collect(),
        };
        if let Some(reason) = filters.iter().find_map(|f| f.filter(pod, &info).err()) {
            per_node.insert(name.to_string(), reason);
            continue;
        }
        let score: i64 = scorers
            .iter()
            .map(|s| s.score(pod, &info) * s.weight())
            .sum();
        let better = match best {
            None => true,
            Some((s, n)) => score > s || (score == s && name < n),
        };
        if better {
            best = Some((score, name));
        }
    }
    match best {
        Some((_, name)) => Placement::Node(name.to_string()),
        None => Placement::Unschedulable {
            summary: summarize(nodes.len(), &per_node),
            per_node,
        },
    }
}

/// "0/3 nodes are available: 2 Insufficient memory, 1 node(s) were not ready."
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
