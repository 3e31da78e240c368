//! This machine as a Node object: name, labels, capacity (cpu, memory, pods), system info,
//! and how the runtime allocates instances (the `PoolingAllocator` condition).

use crate::sandbox::AllocatorKind;
use edge_api::meta::Condition;
use edge_api::{Node, NodeStatus};
use std::collections::BTreeMap;

/// Pods a node accepts by default, as the kubelet's default.
pub const DEFAULT_MAX_PODS: u32 = 110;

/// Total memory in bytes from /proc/meminfo, if readable.
pub fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| edge_api::validation::dns1123_subdomain(s).is_ok())
        .unwrap_or_else(|| "edge-node".to_string())
}

pub fn node_object(name: &str, labels: &BTreeMap<String, String>) -> Node {
    let mut node = Node {
        api_version: edge_api::API_VERSION.into(),
        ..Default::default()
    };
    node.metadata.name = name.to_string();
    node.metadata.labels = labels.clone();
    node.metadata
        .labels
        .insert("kubernetes.io/hostname".into(), name.to_string());
    node.metadata
        .labels
        .insert("kubernetes.io/arch".into(), arch().into());
    node.metadata
        .labels
        .insert("kubernetes.io/os".into(), std::env::consts::OS.into());
    node
}

/// Go-style architecture names, as Kubernetes labels use them.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// `PoolingAllocator`: True when per-request instances come from wasmtime's pooling allocator
/// (cheap HTTP components); False with the reason when instances are allocated on demand.
pub fn allocator_condition(allocator: &AllocatorKind) -> Condition {
    match allocator {
        AllocatorKind::Pooling => Condition::new(
            "PoolingAllocator",
            true,
            "Pooling",
            "instances come from the pooling allocator (copy-on-write memory)",
        ),
        AllocatorKind::OnDemand { reason } => {
            Condition::new("PoolingAllocator", false, "OnDemand", reason)
        }
    }
}

pub fn node_status(max_pods: u32, allocator: &AllocatorKind) -> NodeStatus {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut capacity = BTreeMap::new();
    capacity.insert("cpu".to_string(), cpus.to_string());
    if let Some(mem) = total_memory() {
        capacity.insert(
            "memory".to_string(),
            edge_api::quantity::format("memory", mem),
        );
    }
    capacity.insert("pods".to_string(), max_pods.to_string());
    let mut status = NodeStatus {
        allocatable: capacity.clone(),
        capacity,
        ..Default::default()
    };
    status.conditions.push(Condition::new(
        "Ready",
        true,
        "AgentReady",
        "edge agent is posting ready status",
    ));
    status.conditions.push(allocator_condition(allocator));
    status.node_info.architecture = arch().into();
    status.node_info.operating_system = std::env::consts::OS.into();
    status.node_info.agent_version = env!("CARGO_PKG_VERSION").into();
    status.node_info.runtime_version = "wasmtime 48".into();
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reports_capacity() {
        let s = node_status(10, &AllocatorKind::Pooling);
        assert!(edge_api::quantity::parse("cpu", &s.capacity["cpu"]).unwrap() >= 1000);
        assert_eq!(s.capacity["pods"], "10");
        let mut n = node_object("n1", &BTreeMap::new());
        n.status = s;
        assert!(n.is_ready());
        assert!(n.allocatable("memory") > 0);
        let pooling = edge_api::meta::condition(&n.status.conditions, "PoolingAllocator");
        assert!(pooling.is_some_and(|c| c.is_true()));
    }

    #[test]
    fn on_demand_allocator_says_why() {
        let s = node_status(
            10,
            &AllocatorKind::OnDemand {
                reason: "virtual memory is limited".into(),
            },
        );
        let c = edge_api::meta::condition(&s.conditions, "PoolingAllocator").unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "OnDemand")
        );
        assert_eq!(c.message, "virtual memory is limited");
    }
}
