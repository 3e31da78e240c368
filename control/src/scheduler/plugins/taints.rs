//! TaintToleration: NoSchedule and NoExecute taints the pod does not tolerate rule a node out;
//! untolerated PreferNoSchedule taints only lower its score.

use super::{filter_fn, scorer_fn, BoxFilter, BoxScorer, Normalize, Plugin};
use crate::scheduler::snapshot::{NodeInfo, Snapshot};
use edge_api::scheduling::{first_untolerated, TaintEffect, Toleration};
use edge_api::Pod;

pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter<'a>(&self, pod: &'a Pod, _snap: &'a Snapshot) -> Option<BoxFilter<'a>> {
        filter_fn(move |n: &NodeInfo<'a>| {
            let hard = |e: TaintEffect| e != TaintEffect::PreferNoSchedule;
            match first_untolerated(&n.node.spec.taints, &pod.spec.tolerations, hard) {
                // kube-scheduler's wording, so summaries read the same.
                Some(t) => {
                    Err(format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value).into())
                }
                None => Ok(()),
            }
        })
    }

    fn scorer<'a>(
        &self,
        pod: &'a Pod,
        _snap: &'a Snapshot,
        feasible: &[NodeInfo<'a>],
    ) -> Option<BoxScorer<'a>> {
        let soft = |n: &NodeInfo| {
            n.node
                .spec
                .taints
                .iter()
                .any(|t| t.effect == TaintEffect::PreferNoSchedule)
        };
        // Without any soft taint every node would score the same: skip the work.
        if !feasible.iter().any(soft) {
            return None;
        }
        // Only tolerations that could apply to PreferNoSchedule count, as in kube-scheduler.
        let tolerations: Vec<&Toleration> = pod
            .spec
            .tolerations
            .iter()
            .filter(|t| t.effect.is_none_or(|e| e == TaintEffect::PreferNoSchedule))
            .collect();
        scorer_fn(
            Normalize::ByMax { reverse: true },
            move |n: &NodeInfo<'a>| {
                n.node
                    .spec
                    .taints
                    .iter()
                    .filter(|t| t.effect == TaintEffect::PreferNoSchedule)
                    .filter(|t| !tolerations.iter().any(|tol| tol.tolerates(t)))
                    .count() as i64
            },
        )
    }

    fn weight(&self) -> i64 {
        3
    }
}
