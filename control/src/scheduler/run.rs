//! The scheduler loop on the leader: whenever pods or nodes change (or every few seconds), place
//! each pending pod and commit the placement as a raft Bind naming the snapshot revision.

use super::{default_plugins, schedule, Placement, Snapshot};
use crate::context::ControlPlane;
use crate::store::Command;
use edge_api::meta::{condition, set_condition, Condition};
use edge_api::object::{Kind, Object};
use edge_api::wire::{ApiError, ErrorCode};
use edge_api::Pod;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

const RESCAN: Duration = Duration::from_secs(2);

pub async fn run(cp: Arc<ControlPlane>) {
    let hub = cp.raft.store.watch_hub();
    loop {
        if !cp.raft.is_leader() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        // Subscribe before the pass so a change made during it triggers another pass.
        let mut changes = match hub.subscribe_from(u64::MAX) {
            Ok(s) => s.live,
            Err(_) => {
                tokio::time::sleep(RESCAN).await;
                continue;
            }
        };
        if let Err(e) = pass(&cp).await {
            debug!(error = %e, "scheduling pass failed; will retry");
        }
        let deadline = tokio::time::sleep(RESCAN);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                ev = changes.recv() => match ev {
                    Ok(ev) if matches!(ev.object.kind(), Kind::Pod | Kind::Node) => break,
                    Ok(_) => continue,
                    Err(_) => break,
                },
                _ = &mut deadline => break,
            }
        }
    }
}

fn is_pending(p: &Pod) -> bool {
    p.spec.node_name.is_none()
        && p.metadata.deletion_timestamp.is_none()
        && !p.status.phase.is_terminal()
}

/// One pass: place every pending pod, taking a fresh snapshot after each bind so the next
/// decision sees it (a Bind made from an older snapshot would be rejected as stale).
pub async fn pass(cp: &ControlPlane) -> Result<(), ApiError> {
    let plugins = default_plugins();
    loop {
        let snap = cp.current().await?;
        let to_pods = |v: Vec<Object>| {
            v.into_iter().filter_map(|o| match o {
                Object::Pod(p) => Some(p),
                _ => None,
            })
        };
        let pods: Vec<Pod> = to_pods(
            snap.list(Kind::Pod, None)
                .map_err(super::super::apiserver::objects::internal)?,
        )
        .collect();
        let nodes: Vec<_> = snap
            .list(Kind::Node, None)
            .map_err(super::super::apiserver::objects::internal)?
            .into_iter()
            .filter_map(|o| match o {
                Object::Node(n) => Some(n),
                _ => None,
            })
            .collect();
        // Indexed once and shared by every pending pod placed from this snapshot.
        let snapshot = Snapshot::new(&nodes, &pods);
        let mut bound_one = false;
        for pod in pods.iter().filter(|p| is_pending(p)) {
            let key = Object::Pod(pod.clone()).key();
            match schedule(pod, &snapshot, &plugins) {
                Placement::Node(node) => {
                    let cmd = Command::Bind {
                        key: key.clone(),
                        node: node.clone(),
                        snapshot_revision: snap.revision,
                    };
                    match cp.propose(cmd).await {
                        Ok(_) => {
                            info!(pod = %key, node = %node, "scheduled");
                            bound_one = true;
                            break;
                        }
                        Err(e) if e.code == ErrorCode::Conflict => {
                            debug!(pod = %key, error = %e, "stale placement, retrying");
                            bound_one = true;
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Placement::Unschedulable { summary, .. } => {
                    mark_unschedulable(cp, pod, &summary).await
                }
            }
        }
        if !bound_one {
            return Ok(());
        }
    }
}

/// Records why the pod waits, as kube-scheduler does, only when the reason changed.
async fn mark_unschedulable(cp: &ControlPlane, pod: &Pod, summary: &str) {
    let current = condition(&pod.status.conditions, "PodScheduled");
    if current.is_some_and(|c| c.message == summary && !c.is_true()) {
        return;
    }
    let mut updated = pod.clone();
    set_condition(
        &mut updated.status.conditions,
        Condition::new("PodScheduled", false, "Unschedulable", summary),
    );
    let obj = Object::Pod(updated);
    warn!(pod = %obj.key(), reason = summary, "unschedulable");
    if let Err(e) = cp
        .update_status(&crate::apiserver::authz::Scope::Everything, obj)
        .await
    {
        debug!(error = %e, "could not record unschedulable status");
    }
}
