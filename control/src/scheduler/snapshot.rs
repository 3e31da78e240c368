//! The cluster as one scheduling decision sees it: nodes, pods grouped by node, and per-node
//! resource sums, computed once per snapshot so no plugin rescans every pod for every node.

use edge_api::{Node, Pod};
use std::collections::HashMap;

/// kube-scheduler's defaults for a container that requests nothing, used only when scoring so
/// that pods without requests still spread instead of piling onto the first node by name.
pub const DEFAULT_MILLI_CPU_REQUEST: u64 = 100;
pub const DEFAULT_MEMORY_REQUEST: u64 = 200 * 1024 * 1024;

/// Amounts in base units: millicores and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu: u64,
    pub memory: u64,
}

impl Resources {
    pub fn get(&self, resource: &str) -> u64 {
        match resource {
            "cpu" => self.cpu,
            "memory" => self.memory,
            _ => 0,
        }
    }

    /// What the pod's containers request.
    pub fn requested_by(pod: &Pod) -> Resources {
        Resources {
            cpu: pod.request("cpu"),
            memory: pod.request("memory"),
        }
    }

    /// As `requested_by`, with kube-scheduler's defaults for containers that request nothing.
    pub fn nonzero_requested_by(pod: &Pod) -> Resources {
        let mut r = Resources::default();
        for c in &pod.spec.containers {
            let get = |res: &str, default: u64| match c.resources.requests.get(res) {
                Some(q) => edge_api::quantity::parse(res, q).unwrap_or(0),
                None => default,
            };
            r.cpu += get("cpu", DEFAULT_MILLI_CPU_REQUEST);
            r.memory += get("memory", DEFAULT_MEMORY_REQUEST);
        }
        r
    }

    fn add(&mut self, other: Resources) {
        self.cpu += other.cpu;
        self.memory += other.memory;
    }
}

/// Per-node sums, parsed once per snapshot rather than once per plugin per pod.
#[derive(Clone, Debug, Default)]
pub struct NodeResources {
    pub allocatable: Resources,
    /// The node's `pods` allocatable (0: no limit).
    pub max_pods: u64,
    pub requested: Resources,
    pub nonzero_requested: Resources,
}

struct NodeEntry<'a> {
    pods: Vec<&'a Pod>,
    ready: bool,
    resources: NodeResources,
}

/// Nodes and pods, indexed for one or more `schedule()` calls over the same state.
pub struct Snapshot<'a> {
    pub nodes: &'a [Node],
    pub pods: &'a [Pod],
    entries: Vec<NodeEntry<'a>>,
    /// Bound pods that carry pod (anti-)affinity terms, with the index of their node: the
    /// inter-pod affinity plugin needs only these when the pod being placed has no terms.
    pub with_affinity: Vec<(usize, &'a Pod)>,
}

/// What a plugin sees of one candidate node.
#[derive(Clone, Copy)]
pub struct NodeInfo<'a> {
    /// The node's position in `Snapshot::nodes`.
    pub index: usize,
    pub node: &'a Node,
    /// The node's Ready condition is True (read once per snapshot).
    pub ready: bool,
    /// The pods bound to the node that still occupy it (finished pods are left out).
    pub pods: &'a [&'a Pod],
    pub resources: &'a NodeResources,
}

impl<'a> NodeInfo<'a> {
    pub fn name(&self) -> &'a str {
        &self.node.metadata.name
    }

    pub fn label(&self, key: &str) -> Option<&'a str> {
        self.node.metadata.labels.get(key).map(String::as_str)
    }
}

impl<'a> Snapshot<'a> {
    pub fn new(nodes: &'a [Node], pods: &'a [Pod]) -> Snapshot<'a> {
        let index: HashMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.metadata.name.as_str(), i))
            .collect();
        let mut entries: Vec<NodeEntry> = nodes
            .iter()
            .map(|n| NodeEntry {
                pods: Vec::new(),
                ready: n.is_ready(),
                resources: NodeResources {
                    allocatable: Resources {
                        cpu: n.allocatable("cpu"),
                        memory: n.allocatable("memory"),
                    },
                    max_pods: n.allocatable("pods"),
                    ..Default::default()
                },
            })
            .collect();
        let mut with_affinity = Vec::new();
        for pod in pods.iter().filter(|p| p.occupies_node()) {
            // Pods bound to a node that is gone occupy nothing we could place on.
            let Some(&i) = pod.spec.node_name.as_deref().and_then(|n| index.get(n)) else {
                continue;
            };
            let entry = &mut entries[i];
            entry.pods.push(pod);
            entry.resources.requested.add(Resources::requested_by(pod));
            entry
                .resources
                .nonzero_requested
                .add(Resources::nonzero_requested_by(pod));
            if pod
                .spec
                .affinity
                .as_ref()
                .is_some_and(|a| a.has_pod_terms())
            {
                with_affinity.push((i, pod));
            }
        }
        Snapshot {
            nodes,
            pods,
            entries,
            with_affinity,
        }
    }

    pub fn node(&self, index: usize) -> NodeInfo<'_> {
        let e = &self.entries[index];
        NodeInfo {
            index,
            node: &self.nodes[index],
            ready: e.ready,
            pods: &e.pods,
            resources: &e.resources,
        }
    }

    pub fn node_infos(&self) -> impl Iterator<Item = NodeInfo<'_>> + '_ {
        (0..self.nodes.len()).map(|i| self.node(i))
    }
}
