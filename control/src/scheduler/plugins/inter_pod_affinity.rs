//! InterPodAffinity: required pod affinity and anti-affinity (the pod's own, and existing
//! pods' anti-affinity against it) filter; preferred terms on either side score.
//!
//! "The same place" is a topology domain: nodes sharing the value of the term's topologyKey
//! label. Counts are kept per (key, value) and built once per decision from the pods the terms
//! select (found through the snapshot's label index), so a node is checked with a few map
//! lookups rather than by scanning the pods of its domain.

use super::{filter_fn, scorer_fn, BoxFilter, BoxScorer, Normalize, Plugin};
use crate::scheduler::snapshot::{NodeInfo, Snapshot};
use edge_api::scheduling::{PodAffinityTerm, WeightedPodAffinityTerm};
use edge_api::Pod;
use std::collections::HashMap;

pub const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// kube-scheduler's hardPodAffinityWeight: how much an existing pod's required affinity for
/// the incoming pod counts as a preference.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

pub struct InterPodAffinity;

/// Totals per topology key, then per value.
#[derive(Default)]
struct Domains<'a>(HashMap<&'a str, HashMap<&'a str, i64>>);

impl<'a> Domains<'a> {
    /// Adds `n` to the domain of `node` for `term`'s key; nodes without the key have none.
    fn add(&mut self, node: &NodeInfo<'a>, term: &'a PodAffinityTerm, n: i64) {
        if let Some(value) = node.label(&term.topology_key) {
            *self
                .0
                .entry(term.topology_key.as_str())
                .or_default()
                .entry(value)
                .or_default() += n;
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|m| m.get(value))
            .copied()
            .unwrap_or(0)
    }

    /// The sum over every key the node carries of its domain's total.
    fn on(&self, node: &NodeInfo) -> i64 {
        self.0
            .iter()
            .filter_map(|(key, values)| values.get(node.label(key)?))
            .sum()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

struct Terms<'a> {
    affinity: &'a [PodAffinityTerm],
    anti: &'a [PodAffinityTerm],
    preferred: &'a [WeightedPodAffinityTerm],
    preferred_anti: &'a [WeightedPodAffinityTerm],
}

fn terms(pod: &Pod) -> Terms<'_> {
    let a = pod.spec.affinity.as_ref();
    let aff = a.and_then(|a| a.pod_affinity.as_ref());
    let anti = a.and_then(|a| a.pod_anti_affinity.as_ref());
    Terms {
        affinity: aff.map(|p| p.required.as_slice()).unwrap_or_default(),
        anti: anti.map(|p| p.required.as_slice()).unwrap_or_default(),
        preferred: aff.map(|p| p.preferred.as_slice()).unwrap_or_default(),
        preferred_anti: anti.map(|p| p.preferred.as_slice()).unwrap_or_default(),
    }
}

/// Whether `term`, written in `owner`, selects `other`.
fn selects(term: &PodAffinityTerm, owner: &Pod, other: &Pod) -> bool {
    term.selects(
        &owner.metadata.namespace,
        &other.metadata.namespace,
        &other.metadata.labels,
    )
}

/// The nodes of the placed pods `term`, written in `owner`, selects (once per pod): found
/// through the snapshot's label index rather than by visiting every pod.
fn selected<'a>(
    snap: &'a Snapshot,
    term: &'a PodAffinityTerm,
    owner: &'a Pod,
) -> impl Iterator<Item = NodeInfo<'a>> + 'a {
    let mut namespaces: Vec<&'a str> = if term.namespaces.is_empty() {
        vec![owner.metadata.namespace.as_str()]
    } else {
        term.namespaces.iter().map(String::as_str).collect()
    };
    namespaces.sort_unstable();
    namespaces.dedup();
    let selector = term.label_selector.as_ref();
    namespaces.into_iter().flat_map(move |ns| {
        selector
            .into_iter()
            .flat_map(move |s| snap.pods_selected(ns, s))
            .map(|(node, _)| node)
    })
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn filter<'a>(&self, pod: &'a Pod, snap: &'a Snapshot) -> Option<BoxFilter<'a>> {
        let own = terms(pod);
        // Existing pods whose required anti-affinity selects this pod keep it out of their domain.
        let mut existing_anti = Domains::default();
        for (n, other) in snap.with_affinity() {
            for t in terms(other).anti.iter().filter(|t| selects(t, other, pod)) {
                existing_anti.add(&n, t, 1);
            }
        }
        if own.affinity.is_empty() && own.anti.is_empty() && existing_anti.is_empty() {
            return None;
        }
        let (mut affinity, mut anti) = (Domains::default(), Domains::default());
        for t in own.affinity {
            for n in selected(snap, t, pod) {
                affinity.add(&n, t, 1);
            }
        }
        for t in own.anti {
            for n in selected(snap, t, pod) {
                anti.add(&n, t, 1);
            }
        }
        // The first pod of a group whose affinity selects itself may go anywhere, or the group
        // could never start.
        let first_of_group = affinity.is_empty()
            && !own.affinity.is_empty()
            && own.affinity.iter().all(|t| selects(t, pod, pod));
        filter_fn(move |n: &NodeInfo<'a>| {
            let mut found = true;
            for t in own.affinity {
                match n.label(&t.topology_key) {
                    Some(v) => found &= affinity.get(&t.topology_key, v) > 0,
                    None => return Err(ERR_AFFINITY.into()),
                }
            }
            if !found && !first_of_group {
                return Err(ERR_AFFINITY.into());
            }
            for t in own.anti {
                if n.label(&t.topology_key)
                    .is_some_and(|v| anti.get(&t.topology_key, v) > 0)
                {
                    return Err(ERR_ANTI_AFFINITY.into());
                }
            }
            let repelled = existing_anti.0.iter().any(|(key, values)| {
                n.label(key)
                    .is_some_and(|v| values.get(v).is_some_and(|c| *c > 0))
            });
            if repelled {
                return Err(ERR_EXISTING_ANTI_AFFINITY.into());
            }
            Ok(())
        })
    }

    fn scorer<'a>(
        &self,
        pod: &'a Pod,
        snap: &'a Snapshot,
        _feasible: &[NodeInfo<'a>],
    ) -> Option<BoxScorer<'a>> {
        let own = terms(pod);
        let mut score = Domains::default();
        // The pod's own preferences look at every bound pod.
        for (list, sign) in [(own.preferred, 1), (own.preferred_anti, -1)] {
            for w in list {
                let t = &w.pod_affinity_term;
                for n in selected(snap, t, pod) {
                    score.add(&n, t, sign * i64::from(w.weight));
                }
            }
        }
        // Existing pods' terms that select this pod pull it near them or push it away.
        for (n, other) in snap.with_affinity() {
            let theirs = terms(other);
            for t in theirs.affinity.iter().filter(|t| selects(t, other, pod)) {
                score.add(&n, t, HARD_POD_AFFINITY_WEIGHT);
            }
            for (list, sign) in [(theirs.preferred, 1), (theirs.preferred_anti, -1)] {
                for w in list
                    .iter()
                    .filter(|w| selects(&w.pod_affinity_term, other, pod))
                {
                    score.add(&n, &w.pod_affinity_term, sign * i64::from(w.weight));
                }
            }
        }
        if score.is_empty() {
            return None;
        }
        scorer_fn(Normalize::MinMax, move |n: &NodeInfo<'a>| score.on(n))
    }

    fn weight(&self) -> i64 {
        2
    }
}
