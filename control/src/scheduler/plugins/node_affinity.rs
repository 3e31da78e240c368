//! NodeAffinity: the pod's nodeSelector and required node affinity filter nodes (one reason
//! for both, as kube-scheduler prints it); preferred terms score by their summed weights.

use super::{filter_fn, scorer_fn, BoxFilter, BoxScorer, Normalize, Plugin};
use crate::scheduler::snapshot::{NodeInfo, Snapshot};
use edge_api::scheduling::{NodeSelector, PreferredSchedulingTerm};
use edge_api::{Node, Pod};

pub const ERR_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";

pub struct NodeAffinity;

fn required(pod: &Pod) -> Option<&NodeSelector> {
    pod.spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()
}

fn preferred(pod: &Pod) -> &[PreferredSchedulingTerm] {
    pod.spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .map(|n| n.preferred.as_slice())
        .unwrap_or_default()
}

/// Whether the pod has a nodeSelector or required node affinity at all.
pub fn restricts_nodes(pod: &Pod) -> bool {
    !pod.spec.node_selector.is_empty() || required(pod).is_some()
}

/// Whether `node` satisfies the pod's nodeSelector and required node affinity. Topology
/// spread counts only such nodes (its default nodeAffinityPolicy, Honor).
pub fn node_matches(pod: &Pod, node: &Node) -> bool {
    let labels = &node.metadata.labels;
    pod.spec
        .node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && required(pod).is_none_or(|r| r.matches(&node.metadata.name, labels))
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter<'a>(&self, pod: &'a Pod, _snap: &'a Snapshot) -> Option<BoxFilter<'a>> {
        if !restricts_nodes(pod) {
            return None;
        }
        filter_fn(move |n: &NodeInfo<'a>| {
            if node_matches(pod, n.node) {
                Ok(())
            } else {
                Err(ERR_NODE_AFFINITY.into())
            }
        })
    }

    fn scorer<'a>(
        &self,
        pod: &'a Pod,
        _snap: &'a Snapshot,
        _feasible: &[NodeInfo<'a>],
    ) -> Option<BoxScorer<'a>> {
        let terms = preferred(pod);
        if terms.is_empty() {
            return None;
        }
        scorer_fn(
            Normalize::ByMax { reverse: false },
            move |n: &NodeInfo<'a>| {
                terms
                    .iter()
                    .filter(|t| t.preference.matches(n.name(), &n.node.metadata.labels))
                    .map(|t| i64::from(t.weight))
                    .sum()
            },
        )
    }

    fn weight(&self) -> i64 {
        2
    }
}
