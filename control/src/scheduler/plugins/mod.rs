//! The plugin interface (kube-scheduler's PreFilter/Filter and PreScore/Score/NormalizeScore
//! folded into two calls) and the default plugin set with kube-scheduler's default weights.

mod basic;
mod inter_pod_affinity;
mod node_affinity;
mod taints;
mod topology_spread;

pub use basic::{NodePorts, NodeReady, NodeResourcesFit};
pub use inter_pod_affinity::InterPodAffinity;
pub use node_affinity::NodeAffinity;
pub use taints::TaintToleration;
pub use topology_spread::PodTopologySpread;

use super::snapshot::{NodeInfo, Snapshot};
use edge_api::Pod;
use std::borrow::Cow;

/// The highest score a plugin gives a node after normalization.
pub const MAX_NODE_SCORE: i64 = 100;

/// Why a node was rejected. Mostly fixed strings, so rejecting thousands of nodes allocates
/// nothing; equal reasons are counted together in the summary.
pub type Reason = Cow<'static, str>;

/// A per-pod check of one node: `Err(reason)` when the node cannot take the pod.
pub trait Filter<'a> {
    fn filter(&self, node: &NodeInfo<'a>) -> Result<(), Reason>;
}

impl<'a, F: Fn(&NodeInfo<'a>) -> Result<(), Reason>> Filter<'a> for F {
    fn filter(&self, node: &NodeInfo<'a>) -> Result<(), Reason> {
        self(node)
    }
}

/// A per-pod score of the nodes that passed every filter.
pub trait Scorer<'a> {
    /// The raw score, in whatever unit the plugin counts.
    fn score(&self, node: &NodeInfo<'a>) -> i64;
    /// Rescales the raw scores of `nodes` (in the same order) to 0..=MAX_NODE_SCORE.
    fn normalize(&self, nodes: &[NodeInfo<'a>], scores: &mut [i64]);
}

pub type BoxFilter<'a> = Box<dyn Filter<'a> + 'a>;
pub type BoxScorer<'a> = Box<dyn Scorer<'a> + 'a>;

/// A scheduling plugin. Both calls run once per `schedule()` and do the work that depends only
/// on the pod and the snapshot there (over all nodes and pods, once), so the returned
/// per-node closures stay cheap. `None` means "nothing to check or prefer for this pod".
pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;

    fn filter<'a>(&self, _pod: &'a Pod, _snap: &'a Snapshot) -> Option<BoxFilter<'a>> {
        None
    }

    /// `feasible` are the nodes that passed every filter, in snapshot order.
    fn scorer<'a>(
        &self,
        _pod: &'a Pod,
        _snap: &'a Snapshot,
        _feasible: &[NodeInfo<'a>],
    ) -> Option<BoxScorer<'a>> {
        None
    }

    /// How much this plugin's normalized score counts in the sum.
    fn weight(&self) -> i64 {
        1
    }
}

/// Every plugin, in kube-scheduler's filter order, so the first failing one gives the reason
/// kube-scheduler would print.
pub fn default_plugins() -> Vec<Box<dyn Plugin>> {
    vec![
        Box::new(NodeReady),
        Box::new(TaintToleration),
        Box::new(NodeAffinity),
        Box::new(NodePorts),
        Box::new(NodeResourcesFit),
        Box::new(PodTopologySpread),
        Box::new(InterPodAffinity),
    ]
}

pub(crate) fn filter_fn<'a>(
    f: impl Fn(&NodeInfo<'a>) -> Result<(), Reason> + 'a,
) -> Option<BoxFilter<'a>> {
    Some(Box::new(f))
}

/// How a closure scorer's raw scores become 0..=100.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Normalize {
    /// Already 0..=100.
    None,
    /// kube-scheduler's DefaultNormalizeScore: scaled by the maximum; reversed, fewer is better.
    ByMax { reverse: bool },
    /// Scaled between the minimum and the maximum (scores may be negative).
    MinMax,
}

impl Normalize {
    pub fn apply(self, scores: &mut [i64]) {
        match self {
            Normalize::None => {}
            Normalize::ByMax { reverse } => {
                let max = scores.iter().copied().max().unwrap_or(0);
                for s in scores.iter_mut() {
                    let scaled = if max == 0 {
                        0
                    } else {
                        MAX_NODE_SCORE * *s / max
                    };
                    *s = if reverse {
                        MAX_NODE_SCORE - scaled
                    } else {
                        scaled
                    };
                }
            }
            Normalize::MinMax => {
                let min = scores.iter().copied().min().unwrap_or(0);
                let max = scores.iter().copied().max().unwrap_or(0);
                for s in scores.iter_mut() {
                    *s = if max > min {
                        MAX_NODE_SCORE * (*s - min) / (max - min)
                    } else {
                        0
                    };
                }
            }
        }
    }
}

struct FnScorer<F> {
    score: F,
    normalize: Normalize,
}

impl<'a, F: Fn(&NodeInfo<'a>) -> i64> Scorer<'a> for FnScorer<F> {
    fn score(&self, node: &NodeInfo<'a>) -> i64 {
        (self.score)(node)
    }

    fn normalize(&self, _nodes: &[NodeInfo<'a>], scores: &mut [i64]) {
        self.normalize.apply(scores)
    }
}

pub(crate) fn scorer_fn<'a>(
    normalize: Normalize,
    score: impl Fn(&NodeInfo<'a>) -> i64 + 'a,
) -> Option<BoxScorer<'a>> {
    Some(Box::new(FnScorer { score, normalize }))
}
