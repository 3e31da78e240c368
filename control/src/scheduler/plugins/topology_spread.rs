//! PodTopologySpread: keep the pods a selector matches evenly spread over topology domains
//! (the values of a node label). DoNotSchedule constraints filter, ScheduleAnyway ones score.
//!
//! Counting follows kube-scheduler's defaults: only nodes that pass the pod's nodeSelector and
//! required node affinity and carry every constraint's key count (nodeAffinityPolicy Honor,
//! nodeTaintsPolicy Ignore); only live pods of the pod's namespace count.
//!
//! Matching pods are found through the snapshot's label index and the domains through its
//! node-label index, so a decision costs in proportion to the pods selected, not to every pod
//! on every node.

use super::node_affinity::{node_matches, restricts_nodes};
use super::{filter_fn, BoxFilter, BoxScorer, Plugin, Scorer, MAX_NODE_SCORE};
use crate::scheduler::snapshot::{NodeInfo, Snapshot};
use edge_api::scheduling::{TopologySpreadConstraint, UnsatisfiableConstraintAction};
use edge_api::Pod;
use std::collections::HashMap;

pub const ERR_SPREAD: &str = "node(s) didn't match pod topology spread constraints";
pub const ERR_SPREAD_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

pub struct PodTopologySpread;

fn constraints(pod: &Pod, action: UnsatisfiableConstraintAction) -> Vec<&TopologySpreadConstraint> {
    pod.spec
        .topology_spread_constraints
        .iter()
        .filter(|c| c.when_unsatisfiable == action)
        .collect()
}

/// Adds to each domain of `domains` the live pods the constraint selects on eligible nodes.
fn count_into<'a>(
    snap: &'a Snapshot,
    pod: &Pod,
    all: &[&TopologySpreadConstraint],
    c: &TopologySpreadConstraint,
    domains: &mut HashMap<&'a str, u32>,
) {
    let Some(selector) = &c.label_selector else {
        return;
    };
    for (n, other) in snap.pods_selected(&pod.metadata.namespace, selector) {
        if other.metadata.deletion_timestamp.is_some() || !eligible(&n, pod, all) {
            continue;
        }
        if let Some(d) = n.label(&c.topology_key).and_then(|v| domains.get_mut(v)) {
            *d += 1;
        }
    }
}

/// Nodes that count: they carry every constraint's key and pass the pod's node selection.
fn eligible(n: &NodeInfo, pod: &Pod, all: &[&TopologySpreadConstraint]) -> bool {
    has_keys(n, all) && node_matches(pod, n.node)
}

/// The eligible domains of each constraint, every count 0. Without node selection and with one
/// constraint they are the values of its key (from the index); otherwise every node is looked at.
fn eligible_domains<'a>(
    snap: &'a Snapshot,
    pod: &Pod,
    cs: &[&TopologySpreadConstraint],
) -> Vec<HashMap<&'a str, u32>> {
    if let ([c], false) = (cs, restricts_nodes(pod)) {
        return vec![snap.domains(&c.topology_key).map(|v| (v, 0)).collect()];
    }
    let mut domains = vec![HashMap::new(); cs.len()];
    for n in snap.node_infos().filter(|n| eligible(n, pod, cs)) {
        for (c, d) in cs.iter().zip(domains.iter_mut()) {
            d.insert(n.label(&c.topology_key).unwrap_or_default(), 0);
        }
    }
    domains
}

fn has_keys(n: &NodeInfo, cs: &[&TopologySpreadConstraint]) -> bool {
    cs.iter().all(|c| n.label(&c.topology_key).is_some())
}

fn self_match(pod: &Pod, c: &TopologySpreadConstraint) -> u32 {
    let hit = c
        .label_selector
        .as_ref()
        .is_some_and(|s| s.matches(&pod.metadata.labels));
    u32::from(hit)
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn filter<'a>(&self, pod: &'a Pod, snap: &'a Snapshot) -> Option<BoxFilter<'a>> {
        let hard = constraints(pod, UnsatisfiableConstraintAction::DoNotSchedule);
        if hard.is_empty() {
            return None;
        }
        // Matching pods per domain, per constraint.
        let mut counts = eligible_domains(snap, pod, &hard);
        for (c, domains) in hard.iter().zip(counts.iter_mut()) {
            count_into(snap, pod, &hard, c, domains);
        }
        let checks: Vec<(&TopologySpreadConstraint, HashMap<&str, u32>, u32, u32)> = hard
            .into_iter()
            .zip(counts)
            .map(|(c, domains)| {
                // Too few domains: the global minimum is taken as 0 (minDomains).
                let few = c
                    .min_domains
                    .is_some_and(|m| (domains.len() as i64) < i64::from(m));
                let min = if few {
                    0
                } else {
                    domains.values().copied().min().unwrap_or(0)
                };
                (c, domains, min, self_match(pod, c))
            })
            .collect();
        filter_fn(move |n: &NodeInfo<'a>| {
            for (c, domains, min, own) in &checks {
                let Some(value) = n.label(&c.topology_key) else {
                    return Err(ERR_SPREAD_LABEL.into());
                };
                let matching = domains.get(value).copied().unwrap_or(0);
                let skew = i64::from(matching + own) - i64::from(*min);
                if skew > i64::from(c.max_skew) {
                    return Err(ERR_SPREAD.into());
                }
            }
            Ok(())
        })
    }

    fn scorer<'a>(
        &self,
        pod: &'a Pod,
        snap: &'a Snapshot,
        feasible: &[NodeInfo<'a>],
    ) -> Option<BoxScorer<'a>> {
        let soft = constraints(pod, UnsatisfiableConstraintAction::ScheduleAnyway);
        if soft.is_empty() {
            return None;
        }
        // The domains that matter are those of the feasible nodes; pods are then counted in
        // them over every eligible node, feasible or not.
        let mut counts: Vec<HashMap<&'a str, u32>> = vec![HashMap::new(); soft.len()];
        for n in feasible.iter().filter(|n| has_keys(n, &soft)) {
            for (c, domains) in soft.iter().zip(counts.iter_mut()) {
                domains
                    .entry(n.label(&c.topology_key).unwrap_or_default())
                    .or_default();
            }
        }
        for (c, domains) in soft.iter().zip(counts.iter_mut()) {
            count_into(snap, pod, &soft, c, domains);
        }
        // More domains make each matching pod weigh more (kube-scheduler: ln(domains + 2)).
        let weights = counts.iter().map(|d| ((d.len() + 2) as f64).ln()).collect();
        Some(Box::new(SpreadScore {
            constraints: soft,
            counts,
            weights,
        }))
    }

    fn weight(&self) -> i64 {
        2
    }
}

struct SpreadScore<'a> {
    constraints: Vec<&'a TopologySpreadConstraint>,
    counts: Vec<HashMap<&'a str, u32>>,
    weights: Vec<f64>,
}

impl<'a> Scorer<'a> for SpreadScore<'a> {
    /// Fewer matching pods in the node's domains is better; this raw score counts them.
    fn score(&self, n: &NodeInfo<'a>) -> i64 {
        if !has_keys(n, &self.constraints) {
            return 0;
        }
        let mut score = 0.0;
        for (i, c) in self.constraints.iter().enumerate() {
            let value = n.label(&c.topology_key).unwrap_or_default();
            let matching = self.counts[i].get(value).copied().unwrap_or(0);
            score += f64::from(matching) * self.weights[i] + f64::from(c.max_skew - 1);
        }
        score.round() as i64
    }

    /// Inverts (fewest matching pods scores 100); nodes without the keys score 0.
    fn normalize(&self, nodes: &[NodeInfo<'a>], scores: &mut [i64]) {
        let counted = |i: usize| has_keys(&nodes[i], &self.constraints);
        let ranked = (0..scores.len()).filter(|&i| counted(i)).map(|i| scores[i]);
        let (min, max) = ranked.fold((i64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
        for (i, s) in scores.iter_mut().enumerate() {
            *s = if !counted(i) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}
