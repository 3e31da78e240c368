//! The node-local plugins: readiness/cordon, free ports, and resource fit with the
//! least-allocated score.

use super::{filter_fn, scorer_fn, BoxFilter, BoxScorer, Normalize, Plugin};
use crate::scheduler::snapshot::{NodeInfo, Resources, Snapshot};
use edge_api::scheduling::{TaintEffect, TAINT_NOT_READY, TAINT_UNSCHEDULABLE};
use edge_api::Pod;

/// Cordoned and not-ready nodes take no new pods, unless the pod tolerates the taint
/// Kubernetes puts on such nodes (`node.kubernetes.io/unschedulable`, `.../not-ready`), as
/// DaemonSet pods and catch-all tolerations do.
pub struct NodeReady;

impl Plugin for NodeReady {
    fn name(&self) -> &'static str {
        "NodeReady"
    }

    fn filter<'a>(&self, pod: &'a Pod, _snap: &'a Snapshot) -> Option<BoxFilter<'a>> {
        let tolerates = |key: &str| {
            pod.spec
                .tolerations
                .iter()
                .any(|t| t.tolerates_parts(key, "", TaintEffect::NoSchedule))
        };
        let (cordon_ok, not_ready_ok) =
            (tolerates(TAINT_UNSCHEDULABLE), tolerates(TAINT_NOT_READY));
        filter_fn(move |n: &NodeInfo<'a>| {
            if n.node.spec.unschedulable && !cordon_ok {
                return Err("node(s) were unschedulable".into());
            }
            if !n.ready && !not_ready_ok {
                return Err("node(s) were not ready".into());
            }
            Ok(())
        })
    }
}

/// An HTTP pod binds its containerPort on the node itself, so two pods asking for the same
/// port (and protocol) cannot share a node: kube-scheduler's NodePorts, for container ports.
pub struct NodePorts;

pub const ERR_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";

fn ports(pod: &Pod) -> impl Iterator<Item = (&str, u16)> {
    pod.spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .filter(|p| p.container_port != 0)
        .map(|p| (p.protocol.as_str(), p.container_port))
}

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn filter<'a>(&self, pod: &'a Pod, _snap: &'a Snapshot) -> Option<BoxFilter<'a>> {
        let wanted: Vec<(&str, u16)> = ports(pod).collect();
        if wanted.is_empty() {
            return None;
        }
        filter_fn(move |n: &NodeInfo<'a>| {
            let taken = n
                .pods
                .iter()
                .flat_map(|p| ports(p))
                .any(|used| wanted.contains(&used));
            if taken {
                Err(ERR_PORTS.into())
            } else {
                Ok(())
            }
        })
    }
}

/// Filter: the pod's cpu and memory requests fit in what the node has left, and the node's
/// pod limit is not reached. Score: kube-scheduler's LeastAllocated (most free room wins).
pub struct NodeResourcesFit;

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn filter<'a>(&self, pod: &'a Pod, _snap: &'a Snapshot) -> Option<BoxFilter<'a>> {
        let want = Resources::requested_by(pod);
        filter_fn(move |n: &NodeInfo<'a>| {
            let r = n.resources;
            if r.max_pods > 0 && n.pods.len() as u64 >= r.max_pods {
                return Err("Too many pods".into());
            }
            for resource in ["cpu", "memory"] {
                let w = want.get(resource);
                let free = r
                    .allocatable
                    .get(resource)
                    .saturating_sub(r.requested.get(resource));
                if w > 0 && w > free {
                    return Err(format!("Insufficient {resource}").into());
                }
            }
            Ok(())
        })
    }

    fn scorer<'a>(
        &self,
        pod: &'a Pod,
        _snap: &'a Snapshot,
        _feasible: &[NodeInfo<'a>],
    ) -> Option<BoxScorer<'a>> {
        let want = Resources::nonzero_requested_by(pod);
        scorer_fn(Normalize::None, move |n: &NodeInfo<'a>| {
            // Each resource scores (free after placing) * 100 / allocatable; cpu and memory
            // weigh the same; a resource the node does not report scores 0.
            let mut total = 0;
            for resource in ["cpu", "memory"] {
                let alloc = n.resources.allocatable.get(resource);
                let used = n.resources.nonzero_requested.get(resource) + want.get(resource);
                if alloc > 0 {
                    total += (alloc.saturating_sub(used) as u128 * 100 / alloc as u128) as i64;
                }
            }
            total / 2
        })
    }
}
