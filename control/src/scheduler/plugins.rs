//! Filter and score plugins: node readiness, node selector, resource fit, least-allocated.

use super::NodeInfo;
use edge_api::Pod;

pub trait FilterPlugin: Send + Sync {
    /// `Err(reason)` when the node cannot take the pod; reasons are counted in summaries.
    fn filter(&self, pod: &Pod, node: &NodeInfo) -> Result<(), String>;
}

pub trait ScorePlugin: Send + Sync {
    /// Higher is better, 0..=100.
    fn score(&self, pod: &Pod, node: &NodeInfo) -> i64;
    fn weight(&self) -> i64 {
        1
    }
}

pub fn default_filters() -> Vec<Box<dyn FilterPlugin>> {
    vec![
        Box::new(NodeReady),
        Box::new(NodeSelector),
        Box::new(ResourceFit),
    ]
}

pub fn default_scorers() -> Vec<Box<dyn ScorePlugin>> {
    vec![Box::new(LeastAllocated)]
}

pub struct NodeReady;

impl FilterPlugin for NodeReady {
    fn filter(&self, _pod: &Pod, info: &NodeInfo) -> Result<(), String> {
        if info.node.spec.unschedulable {
            return Err("node(s) were unschedulable".into());
        }
        if !info.node.is_ready() {
            return Err("node(s) were not ready".into());
        }
        Ok(())
    }
}

pub struct NodeSelector;

impl FilterPlugin for NodeSelector {
    fn filter(&self, pod: &Pod, info: &NodeInfo) -> Result<(), String> {
        let labels = &info.node.metadata.labels;
        let ok = pod
            .spec
            .node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v));
        if ok {
            Ok(())
        } else {
            Err("node(s) didn't match Pod's node affinity/selector".into())
        }
    }
}

pub struct ResourceFit;

impl FilterPlugin for ResourceFit {
    fn filter(&self, pod: &Pod, info: &NodeInfo) -> Result<(), String> {
        for resource in ["cpu", "memory"] {
            let want = pod.request(resource);
            if want == 0 {
                continue;
            }
            let free = info
                .node
                .allocatable(resource)
                .saturating_sub(info.requested(resource));
            if want > free {
                return Err(format!("Insufficient {resource}"));
            }
        }
        let max_pods = info.node.allocatable("pods");
        let running = info.pods.iter().filter(|p| p.occupies_node()).count() as u64;
        if max_pods > 0 && running >= max_pods {
            return Err("Too many pods".into());
        }
        Ok(())
    }
}

/// Prefers the node with the most free cpu and memory, as kube-scheduler's default does.
pub struct LeastAllocated;

impl ScorePlugin for LeastAllocated {
    fn score(&self, pod: &Pod, info: &NodeInfo) -> i64 {
        let mut total = 0;
        for resource in ["cpu", "memory"] {
            let alloc = info.node.allocatable(resource);
            if alloc == 0 {
                continue;
            }
            let used = info.requested(resource) + pod.request(resource);
            total += (alloc.saturating_sub(used) as u128 * 100 / alloc as u128) as i64;
        }
        total / 2
    }
}
