//! The scheduler's cache: nodes and pods as the watch reports them, kept as one `Snapshot`
//! updated per event instead of a relist per decision; the pods assumed placed while their bind
//! is in flight (kube-scheduler's assume / confirm / forget); and the queue of pending pods.

use super::snapshot::{pod_key, Snapshot};
use edge_api::object::Object;
use edge_api::wire::{EventType, WatchEvent};
use edge_api::{Node, Pod};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// A pod waiting for a node: not bound, not being deleted, not finished.
pub fn is_pending(p: &Pod) -> bool {
    p.spec.node_name.is_none()
        && p.metadata.deletion_timestamp.is_none()
        && !p.status.phase.is_terminal()
}

/// Whether another pod's placement can make this pod schedulable: pod affinity may now be
/// satisfied, or a spread constraint's smallest domain may have grown.
fn waits_on_other_pods(p: &Pod) -> bool {
    let affinity = p
        .spec
        .affinity
        .as_ref()
        .and_then(|a| a.pod_affinity.as_ref())
        .is_some_and(|a| !a.required.is_empty());
    affinity || !p.spec.topology_spread_constraints.is_empty()
}

#[derive(Default)]
pub struct Cache {
    snapshot: Snapshot,
    /// The stored version of every pod that exists, by key.
    pods: HashMap<String, Arc<Pod>>,
    /// Pods whose bind is proposed but not yet seen committed: key -> node.
    assumed: HashMap<String, String>,
    /// Pending pods waiting for a decision, oldest first. A key may have gone stale (the pod
    /// was bound or deleted meanwhile); `pop` skips those.
    active: VecDeque<String>,
    queued: HashSet<String>,
    /// Pods no node could take at their last attempt; retried when the cluster changes.
    unschedulable: HashSet<String>,
    /// Events up to this revision were in the listing the cache started from.
    listed_at: u64,
    revision: u64,
}

impl Cache {
    /// A cache of a listing made at `revision`. Pending pods queue oldest first.
    pub fn new(revision: u64, nodes: Vec<Node>, pods: Vec<Pod>) -> Cache {
        let mut cache = Cache {
            listed_at: revision,
            revision,
            ..Default::default()
        };
        for n in nodes {
            cache.snapshot.set_node(Arc::new(n));
        }
        let mut pending = Vec::new();
        for p in pods {
            let pod = Arc::new(p);
            let key = pod_key(&pod);
            if is_pending(&pod) {
                pending.push((pod.metadata.creation_timestamp, key.clone()));
            } else {
                cache.snapshot.place(pod.clone());
            }
            cache.pods.insert(key, pod);
        }
        pending.sort();
        for (_, key) in pending {
            cache.enqueue(key);
        }
        cache
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The highest revision of any event applied (or of the listing).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The node a bind in flight is taking the pod to.
    #[cfg(test)]
    pub fn assumed(&self, key: &str) -> Option<&str> {
        self.assumed.get(key).map(String::as_str)
    }

    #[cfg(test)]
    pub fn is_unschedulable(&self, key: &str) -> bool {
        self.unschedulable.contains(key)
    }

    /// Applies one committed change from the watch. Events already in the listing are skipped.
    pub fn apply(&mut self, ev: &WatchEvent) {
        if ev.resource_version <= self.listed_at {
            return;
        }
        self.revision = self.revision.max(ev.resource_version);
        match &ev.object {
            Object::Node(n) => {
                if ev.event_type == EventType::Deleted {
                    self.snapshot.remove_node(&n.metadata.name);
                } else {
                    // Readiness, labels, taints or room changed: every waiting pod may now fit.
                    self.snapshot.set_node(Arc::new(n.clone()));
                    self.requeue_unschedulable(|_| true);
                }
            }
            Object::Pod(p) => self.apply_pod(ev.event_type, p),
            _ => {}
        }
    }

    fn apply_pod(&mut self, event: EventType, p: &Pod) {
        let key = pod_key(p);
        if event == EventType::Deleted {
            self.pods.remove(&key);
            self.assumed.remove(&key);
            self.unschedulable.remove(&key);
            if self.snapshot.unplace(&key).is_some() {
                self.requeue_unschedulable(|_| true);
            }
            return;
        }
        let pod = Arc::new(p.clone());
        let previous = self.pods.insert(key.clone(), pod.clone());
        if pod.spec.node_name.is_some() {
            // Bound: our assumption is confirmed (or someone else bound it).
            self.assumed.remove(&key);
            self.unschedulable.remove(&key);
            let was_placed = self.snapshot.placement(&key).is_some();
            self.snapshot.place(pod);
            match (was_placed, self.snapshot.placement(&key).is_some()) {
                // It finished: its room is free.
                (true, false) => self.requeue_unschedulable(|_| true),
                (false, true) => self.requeue_unschedulable(waits_on_other_pods),
                _ => {}
            }
            return;
        }
        if self.assumed.contains_key(&key) || !is_pending(&pod) {
            // A bind in flight settles an assumed pod: it fails if the pod changed.
            return;
        }
        // Only the status changed (e.g. the scheduler's own "Unschedulable" note): no retry.
        let same_wish = previous
            .is_some_and(|old| old.spec == pod.spec && old.metadata.labels == pod.metadata.labels);
        if same_wish && self.unschedulable.contains(&key) {
            return;
        }
        self.unschedulable.remove(&key);
        self.enqueue(key);
    }

    fn enqueue(&mut self, key: String) {
        if self.queued.insert(key.clone()) {
            self.active.push_back(key);
        }
    }

    /// The next pending pod whose stored version is at or below `revision` (a newer one would
    /// be refused as stale by a bind naming `revision`; it waits for the next round).
    pub fn pop(&mut self, revision: u64) -> Option<Arc<Pod>> {
        while let Some(key) = self.active.front() {
            let ready = self.pods.get(key).filter(|p| {
                is_pending(p)
                    && !self.assumed.contains_key(key)
                    && !self.unschedulable.contains(key)
            });
            match ready {
                Some(p) if p.metadata.resource_version > revision => return None,
                Some(p) => {
                    let p = p.clone();
                    self.queued.remove(key);
                    self.active.pop_front();
                    return Some(p);
                }
                None => {
                    self.queued.remove(key);
                    self.active.pop_front();
                }
            }
        }
        None
    }

    /// Puts a popped pod back at the head of the queue (its decision was not used).
    pub fn unpop(&mut self, key: String) {
        if self.queued.insert(key.clone()) {
            self.active.push_front(key);
        }
    }

    /// Treats the pod as placed on `node` from now on, so the next decision sees it, while its
    /// bind is in flight.
    pub fn assume(&mut self, pod: &Pod, node: &str) {
        let mut placed = pod.clone();
        placed.spec.node_name = Some(node.to_string());
        let key = pod_key(pod);
        self.snapshot.place(Arc::new(placed));
        self.assumed.insert(key, node.to_string());
    }

    /// The bind failed: takes the pod off the node it was assumed on and queues it again if it
    /// still waits for a node.
    pub fn forget(&mut self, key: &str) {
        if self.assumed.remove(key).is_none() {
            return;
        }
        self.snapshot.unplace(key);
        if self.pods.get(key).is_some_and(|p| is_pending(p)) {
            self.unpop(key.to_string());
        }
    }

    /// No node could take the pod: it waits until the cluster changes.
    pub fn mark_unschedulable(&mut self, key: &str) {
        self.unschedulable.insert(key.to_string());
    }

    /// Queues again the unschedulable pods `which` selects.
    pub fn requeue_unschedulable(&mut self, which: impl Fn(&Pod) -> bool) {
        if self.unschedulable.is_empty() {
            return;
        }
        let mut keys: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|k| self.pods.get(*k).is_some_and(|p| which(p)))
            .cloned()
            .collect();
        keys.sort();
        for key in keys {
            self.unschedulable.remove(&key);
            self.enqueue(key);
        }
    }
}
