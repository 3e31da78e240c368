//! The cluster as one scheduling decision sees it: nodes, the pods placed on each, and per-node
//! aggregates (requested resources). It is updated in place, pod by pod and node by node, so
//! the scheduler's cache keeps one for its whole term instead of rebuilding it per decision.

use edge_api::scheduling::LabelSelector;
use edge_api::{Node, Pod};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

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

    fn sub(&mut self, other: Resources) {
        self.cpu = self.cpu.saturating_sub(other.cpu);
        self.memory = self.memory.saturating_sub(other.memory);
    }
}

/// Per-node sums, kept up to date as pods come and go rather than recomputed per decision.
#[derive(Clone, Debug, Default)]
pub struct NodeResources {
    pub allocatable: Resources,
    /// The node's `pods` allocatable (0: no limit).
    pub max_pods: u64,
    pub requested: Resources,
    pub nonzero_requested: Resources,
}

struct NodeEntry {
    node: Arc<Node>,
    pods: Vec<Arc<Pod>>,
    ready: bool,
    resources: NodeResources,
}

impl NodeEntry {
    fn new(node: Arc<Node>) -> NodeEntry {
        let mut e = NodeEntry {
            node,
            pods: Vec::new(),
            ready: false,
            resources: NodeResources::default(),
        };
        e.read_node();
        e
    }

    /// Reads what the entry keeps from its Node object (parsed once, not per decision).
    fn read_node(&mut self) {
        let n = &self.node;
        self.ready = n.is_ready();
        self.resources.allocatable = Resources {
            cpu: n.allocatable("cpu"),
            memory: n.allocatable("memory"),
        };
        self.resources.max_pods = n.allocatable("pods");
    }

    fn add(&mut self, pod: Arc<Pod>) {
        self.resources.requested.add(Resources::requested_by(&pod));
        self.resources
            .nonzero_requested
            .add(Resources::nonzero_requested_by(&pod));
        self.pods.push(pod);
    }

    fn remove(&mut self, key: &str) -> Option<Arc<Pod>> {
        let i = self.pods.iter().position(|p| has_key(p, key))?;
        let pod = self.pods.swap_remove(i);
        self.resources.requested.sub(Resources::requested_by(&pod));
        self.resources
            .nonzero_requested
            .sub(Resources::nonzero_requested_by(&pod));
        Some(pod)
    }
}

/// `namespace/name`: how the scheduler names a pod.
pub fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace, pod.metadata.name)
}

/// Whether `pod_key(pod) == key`, without building the key.
fn has_key(pod: &Pod, key: &str) -> bool {
    key.strip_prefix(pod.metadata.namespace.as_str())
        .and_then(|rest| rest.strip_prefix('/'))
        == Some(pod.metadata.name.as_str())
}

fn has_pod_terms(pod: &Pod) -> bool {
    pod.spec
        .affinity
        .as_ref()
        .is_some_and(|a| a.has_pod_terms())
}

type ByKey = HashMap<String, Arc<Pod>>;

/// Placed pods by namespace and by label, so that the pods a selector picks are found without
/// visiting every pod (spread and inter-pod affinity count them for every decision).
#[derive(Default)]
struct PodIndex {
    /// namespace -> pod key -> pod.
    all: HashMap<String, ByKey>,
    /// namespace -> label key -> label value -> pod key -> pod.
    labeled: HashMap<String, HashMap<String, HashMap<String, ByKey>>>,
}

impl PodIndex {
    fn add(&mut self, key: &str, pod: &Arc<Pod>) {
        let ns = &pod.metadata.namespace;
        self.all
            .entry(ns.clone())
            .or_default()
            .insert(key.to_string(), pod.clone());
        let labeled = self.labeled.entry(ns.clone()).or_default();
        for (k, v) in &pod.metadata.labels {
            labeled
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .insert(key.to_string(), pod.clone());
        }
    }

    fn remove(&mut self, key: &str, pod: &Pod) {
        let ns = &pod.metadata.namespace;
        if let Some(all) = self.all.get_mut(ns) {
            all.remove(key);
        }
        let Some(labeled) = self.labeled.get_mut(ns) else {
            return;
        };
        for (k, v) in &pod.metadata.labels {
            let Some(values) = labeled.get_mut(k) else {
                continue;
            };
            if let Some(pods) = values.get_mut(v) {
                pods.remove(key);
                if pods.is_empty() {
                    values.remove(v);
                }
            }
        }
    }

    /// The smallest set that holds every pod of `namespace` the selector can match.
    fn candidates(&self, namespace: &str, selector: &LabelSelector) -> Option<&ByKey> {
        if selector.match_labels.is_empty() {
            return self.all.get(namespace);
        }
        let labeled = self.labeled.get(namespace)?;
        let mut best: Option<&ByKey> = None;
        for (k, v) in &selector.match_labels {
            let pods = labeled.get(k).and_then(|values| values.get(v))?;
            if best.is_none_or(|b| pods.len() < b.len()) {
                best = Some(pods);
            }
        }
        best
    }
}

/// Nodes and the pods placed on them, indexed for `schedule()` calls.
#[derive(Default)]
pub struct Snapshot {
    entries: Vec<NodeEntry>,
    /// Node name -> position in `entries`.
    index: HashMap<String, usize>,
    /// Every placed pod's node, by pod key.
    placed: HashMap<String, String>,
    /// Pods bound to a node the snapshot does not have: they count once it appears.
    orphans: HashMap<String, Vec<Arc<Pod>>>,
    /// Placed pods that carry pod (anti-)affinity terms: the inter-pod affinity plugin needs
    /// only these when the pod being placed has no terms of its own.
    with_affinity: HashMap<String, Arc<Pod>>,
    pods: PodIndex,
    /// label key -> value -> the nodes carrying it: the topology domains that exist, and the
    /// nodes a nodeSelector can pick.
    labels: HashMap<String, HashMap<String, HashSet<String>>>,
}

/// What a plugin sees of one candidate node.
#[derive(Clone, Copy)]
pub struct NodeInfo<'a> {
    /// The node's position in the snapshot.
    pub index: usize,
    pub node: &'a Node,
    /// The node's Ready condition is True (read once per node update).
    pub ready: bool,
    /// The pods placed on the node that still occupy it (finished pods are left out).
    pub pods: &'a [Arc<Pod>],
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

impl Snapshot {
    /// A snapshot of `nodes` with those of `pods` that are bound and still occupy their node.
    pub fn new(nodes: &[Node], pods: &[Pod]) -> Snapshot {
        let mut snap = Snapshot::default();
        for n in nodes {
            snap.set_node(Arc::new(n.clone()));
        }
        for p in pods {
            snap.place(Arc::new(p.clone()));
        }
        snap
    }

    /// Adds the node, or replaces it keeping the pods placed on it.
    pub fn set_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone();
        if let Some(&i) = self.index.get(&name) {
            let old = std::mem::replace(&mut self.entries[i].node, node.clone());
            self.index_labels(&old, false);
            self.index_labels(&node, true);
            self.entries[i].read_node();
            return;
        }
        self.index_labels(&node, true);
        let mut entry = NodeEntry::new(node);
        for pod in self.orphans.remove(&name).unwrap_or_default() {
            entry.add(pod);
        }
        self.index.insert(name, self.entries.len());
        self.entries.push(entry);
    }

    /// Removes the node; its pods wait as orphans in case it comes back.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let entry = self.entries.swap_remove(i);
        self.index_labels(&entry.node, false);
        if let Some(moved) = self.entries.get(i) {
            self.index.insert(moved.node.metadata.name.clone(), i);
        }
        if !entry.pods.is_empty() {
            self.orphans.insert(name.to_string(), entry.pods);
        }
    }

    fn index_labels(&mut self, node: &Node, add: bool) {
        let name = &node.metadata.name;
        for (k, v) in &node.metadata.labels {
            let values = self.labels.entry(k.clone()).or_default();
            if add {
                values.entry(v.clone()).or_default().insert(name.clone());
            } else if let Some(nodes) = values.get_mut(v) {
                nodes.remove(name);
                if nodes.is_empty() {
                    values.remove(v);
                }
            }
        }
    }

    /// Places (or moves) the pod on the node its spec names. A pod that names no node or no
    /// longer occupies one (it finished) is taken out instead.
    pub fn place(&mut self, pod: Arc<Pod>) {
        let key = pod_key(&pod);
        self.unplace(&key);
        let Some(node) = pod.spec.node_name.clone() else {
            return;
        };
        if !pod.occupies_node() {
            return;
        }
        if has_pod_terms(&pod) {
            self.with_affinity.insert(key.clone(), pod.clone());
        }
        self.pods.add(&key, &pod);
        match self.index.get(&node) {
            Some(&i) => self.entries[i].add(pod),
            None => self.orphans.entry(node.clone()).or_default().push(pod),
        }
        self.placed.insert(key, node);
    }

    /// Takes the pod off its node, returning it if it was placed.
    pub fn unplace(&mut self, key: &str) -> Option<Arc<Pod>> {
        let node = self.placed.remove(key)?;
        self.with_affinity.remove(key);
        let pod = match self.index.get(&node) {
            Some(&i) => self.entries[i].remove(key)?,
            None => {
                let orphans = self.orphans.get_mut(&node)?;
                let i = orphans.iter().position(|p| has_key(p, key))?;
                let pod = orphans.swap_remove(i);
                if orphans.is_empty() {
                    self.orphans.remove(&node);
                }
                pod
            }
        };
        self.pods.remove(key, &pod);
        Some(pod)
    }

    /// The node the pod is placed on, if it is.
    pub fn placement(&self, key: &str) -> Option<&str> {
        self.placed.get(key).map(String::as_str)
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn node(&self, index: usize) -> NodeInfo<'_> {
        let e = &self.entries[index];
        NodeInfo {
            index,
            node: &e.node,
            ready: e.ready,
            pods: &e.pods,
            resources: &e.resources,
        }
    }

    pub fn node_named(&self, name: &str) -> Option<NodeInfo<'_>> {
        self.index.get(name).map(|&i| self.node(i))
    }

    pub fn node_infos(&self) -> impl Iterator<Item = NodeInfo<'_>> + '_ {
        (0..self.entries.len()).map(|i| self.node(i))
    }

    /// The placed pods of `namespace` that `selector` matches, each with its node (pods on
    /// nodes the snapshot does not have are left out), found through the label index.
    pub fn pods_selected<'s>(
        &'s self,
        namespace: &str,
        selector: &'s LabelSelector,
    ) -> impl Iterator<Item = (NodeInfo<'s>, &'s Pod)> + 's {
        self.pods
            .candidates(namespace, selector)
            .into_iter()
            .flat_map(|pods| pods.values())
            .filter(|p| selector.matches(&p.metadata.labels))
            .filter_map(|p| Some((self.node_named(p.spec.node_name.as_deref()?)?, &**p)))
    }

    /// The values the nodes carry for label `key`: the topology domains of that key.
    pub fn domains(&self, key: &str) -> impl Iterator<Item = &str> + '_ {
        self.labels
            .get(key)
            .into_iter()
            .flat_map(|values| values.keys().map(String::as_str))
    }

    /// The positions, in order, of the nodes that carry every label of `selector` (a pod's
    /// nodeSelector), found through the label index; None for an empty selector (every node).
    pub fn nodes_labeled(&self, selector: &BTreeMap<String, String>) -> Option<Vec<usize>> {
        let mut smallest: Option<&HashSet<String>> = None;
        for (k, v) in selector {
            let Some(nodes) = self.labels.get(k).and_then(|values| values.get(v)) else {
                return Some(Vec::new());
            };
            if smallest.is_none_or(|s| nodes.len() < s.len()) {
                smallest = Some(nodes);
            }
        }
        let mut found: Vec<usize> = smallest?
            .iter()
            .filter_map(|name| self.index.get(name).copied())
            .filter(|&i| {
                let labels = &self.entries[i].node.metadata.labels;
                selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect();
        found.sort_unstable();
        Some(found)
    }

    /// Placed pods with pod (anti-)affinity terms, each with its node.
    pub fn with_affinity(&self) -> impl Iterator<Item = (NodeInfo<'_>, &Pod)> + '_ {
        self.with_affinity.values().filter_map(|p| {
            let node = self.node_named(p.spec.node_name.as_deref()?)?;
            Some((node, &**p))
        })
    }
}
