//! Desired pods to running pod workers, level-triggered: given the pods assigned to this node,
//! start what is missing, stop what is gone, and leave healthy pods alone.

use crate::fencing::Fate;
use crate::localstore::LocalStore;
use crate::worker::{PodWorker, WorkerContext};
use edge_api::{Pod, PodPhase};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use tracing::info;

pub struct Supervisor {
    ctx: WorkerContext,
    store: LocalStore,
    /// Workers by pod uid: a pod re-created under the same name is a different pod.
    workers: Mutex<HashMap<String, PodWorker>>,
    /// Whether the control plane's list has been applied since the agent started; held while
    /// a whole desired set is applied, so the local store's copy never overrides a fresher list.
    synced: Mutex<bool>,
}

/// What to do with one desired pod, decided from it and whether a worker runs it.
#[derive(Debug, PartialEq, Eq)]
pub enum PodAction {
    Start,
    Keep,
    /// Marked for deletion: stop it, then confirm the deletion to the control plane.
    Terminate,
    /// Finished before (known from its stored status): do not run it again.
    LeaveFinished,
}

pub fn decide(pod: &Pod, has_worker: bool) -> PodAction {
    if pod.metadata.deletion_timestamp.is_some() {
        PodAction::Terminate
    } else if has_worker {
        PodAction::Keep
    } else if pod.status.phase.is_terminal() {
        PodAction::LeaveFinished
    } else {
        PodAction::Start
    }
}

impl Supervisor {
    pub fn new(ctx: WorkerContext, store: LocalStore) -> Supervisor {
        Supervisor {
            ctx,
            store,
            workers: Mutex::new(HashMap::new()),
            synced: Mutex::new(false),
        }
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodWorker>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the running set exactly `desired`. Returns the pods that are terminating and
    /// have now been stopped, whose deletion the caller must confirm.
    fn sync_all(&self, desired: &[Pod]) -> Vec<Pod> {
        let running: HashSet<String> = self.workers().keys().cloned().collect();
        let mut stopped = Vec::new();
        for fate in crate::fencing::reconcile(&running, desired) {
            match fate {
                Fate::Stop(uid) => self.remove(&uid),
                Fate::Act(pod, action) => stopped.extend(self.act(pod, action)),
            }
        }
        self.collect_garbage(desired);
        stopped
    }

    /// Applies the control plane's list of the pods bound here, which is authoritative (see
    /// `fencing`). Returns the terminating pods now stopped, whose deletion must be confirmed.
    pub fn sync_from_control_plane(&self, bound: &[Pod]) -> Vec<Pod> {
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        *synced = true;
        self.sync_all(bound)
    }

    /// Starts the pods last known from the local store, unless the control plane's list came
    /// first (it is fresher: it knows what was evicted meanwhile). Returns how many it started.
    pub fn start_from_local_store(&self) -> usize {
        let synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if *synced {
            return 0;
        }
        let known = match self.store.pods() {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the last known pods");
                return 0;
            }
        };
        if !known.is_empty() {
            info!(
                pods = known.len(),
                "control plane not reachable yet: starting the last known pods from the local store"
            );
        }
        self.sync_all(&known);
        known.len()
    }

    /// Sends again the status of each running pod whose status the control plane holds
    /// differently (it marked it not Ready while the link was down, or missed updates), since
    /// statuses are otherwise sent only when they change.
    pub fn resend_stale_statuses(&self, bound: &[Pod]) {
        let workers = self.workers();
        for p in bound {
            let Some(w) = workers.get(&p.metadata.uid) else {
                continue;
            };
            let status = w.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if status != p.status {
                let mut pod = w.pod.clone();
                pod.status = status;
                let _ = self.ctx.status_tx.send(pod);
            }
        }
    }

    /// Drops what no desired pod needs: pod directories left by pods deleted while the agent
    /// was down, and local copies of ConfigMaps/Secrets no pod references any more.
    fn collect_garbage(&self, desired: &[Pod]) {
        let keep: std::collections::HashSet<&str> =
            desired.iter().map(|p| p.metadata.uid.as_str()).collect();
        crate::volumes::remove_orphans(&self.ctx.pods_dir, &keep);
        if let Err(e) = self
            .store
            .retain_config(&crate::configsource::used_keys(desired))
        {
            tracing::warn!(error = %e, "local store");
        }
    }

    /// Applies one pod's desired state; returns it if it was terminating and is now stopped.
    pub fn upsert(&self, pod: &Pod) -> Option<Pod> {
        let has_worker = self.workers().contains_key(&pod.metadata.uid);
        self.act(pod, decide(pod, has_worker))
    }

    fn act(&self, pod: &Pod, action: PodAction) -> Option<Pod> {
        let uid = pod.metadata.uid.clone();
        match action {
            PodAction::Keep | PodAction::LeaveFinished => None,
            PodAction::Start => {
                info!(pod = %pod.metadata.name, namespace = %pod.metadata.namespace, "starting pod");
                let worker = PodWorker::spawn(self.ctx.clone(), pod.clone());
                self.workers().insert(uid, worker);
                None
            }
            PodAction::Terminate => {
                if let Some(w) = self.workers().remove(&uid) {
                    info!(pod = %pod.metadata.name, "stopping pod (deleted)");
                    w.stop_and_remove(self.ctx.pods_dir.clone());
                } else {
                    crate::volumes::remove_pod_dir(&self.ctx.pods_dir, &uid);
                }
                Some(pod.clone())
            }
        }
    }

    /// Stops a pod that is no longer assigned here and forgets its logs and volumes.
    pub fn remove(&self, uid: &str) {
        if let Some(w) = self.workers().remove(uid) {
            info!(pod = %w.pod.metadata.name, "stopping pod (no longer assigned)");
            let m = &w.pod.metadata;
            self.ctx.logs.remove_pod(&m.namespace, &m.name, &m.uid);
            w.stop_and_remove(self.ctx.pods_dir.clone());
        } else {
            crate::volumes::remove_pod_dir(&self.ctx.pods_dir, uid);
        }
        if let Err(e) = self.store.remove(uid) {
            tracing::warn!(error = %e, "local store");
        }
    }

    /// The pod with this namespace/name that this node runs or ran.
    pub fn find(&self, namespace: &str, name: &str) -> Option<Pod> {
        let workers = self.workers();
        let w = workers
            .values()
            .find(|w| w.pod.metadata.namespace == namespace && w.pod.metadata.name == name)?;
        let mut pod = w.pod.clone();
        pod.status = w.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Some(pod)
    }

    /// Whether the pod's components are all done (for ending a followed log).
    pub fn is_done(&self, uid: &str) -> bool {
        self.workers().get(uid).is_none_or(|w| w.is_finished())
    }

    /// Namespace/name and phase of every pod this node runs, for embedders and tests.
    pub fn pods(&self) -> Vec<(String, String, PodPhase)> {
        let workers = self.workers();
        let mut out: Vec<_> = workers
            .values()
            .map(|w| {
                let phase = w.status.lock().unwrap_or_else(|p| p.into_inner()).phase;
                (
                    w.pod.metadata.namespace.clone(),
                    w.pod.metadata.name.clone(),
                    phase,
                )
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    /// Stops every pod and keeps their volumes: the agent is shutting down, not the pods.
    pub fn stop_all(&self) {
        for (_, w) in self.workers().drain() {
            w.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let mut p = Pod::default();
        assert_eq!(decide(&p, false), PodAction::Start);
        assert_eq!(decide(&p, true), PodAction::Keep);
        p.status.phase = PodPhase::Succeeded;
        assert_eq!(decide(&p, false), PodAction::LeaveFinished);
        p.metadata.deletion_timestamp = Some(chrono::Utc::now());
        assert_eq!(decide(&p, true), PodAction::Terminate);
    }
}
