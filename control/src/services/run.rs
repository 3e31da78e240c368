//! The endpoints controller's loop on the raft leader: whenever services, pods, nodes or
//! endpoints change (or every few seconds), reconcile and write only what differs, each write
//! a compare-and-swap proposal so a concurrent change makes it retry from a fresh snapshot.

use super::endpoints::{reconcile, Action};
use crate::apiserver::objects::internal;
use crate::context::ControlPlane;
use crate::store::{Command, Precondition, Snapshot};
use chrono::Utc;
use edge_api::object::{Kind, Object};
use edge_api::service::Endpoints;
use edge_api::wire::{ApiError, ErrorCode};
use edge_api::{Node, Pod, Service};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info};

const RESCAN: Duration = Duration::from_secs(5);
/// After a change, further changes this soon are handled by the same pass (a burst of pod
/// updates costs a few passes, not one per pod).
const COALESCE: Duration = Duration::from_millis(30);

pub async fn run(cp: Arc<ControlPlane>) {
    let hub = cp.raft.store.watch_hub();
    loop {
        if !cp.raft.is_leader() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        // Subscribe before the pass so that a change made during it triggers another pass.
        let mut changes = match hub.subscribe_from(u64::MAX) {
            Ok(s) => s.live,
            Err(_) => {
                tokio::time::sleep(RESCAN).await;
                continue;
            }
        };
        if let Err(e) = pass(&cp).await {
            debug!(error = %e, "endpoints pass failed; will retry");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let deadline = tokio::time::sleep(RESCAN);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                ev = changes.recv() => match ev {
                    Ok(ev) if relevant(ev.object.kind()) => {
                        tokio::time::sleep(COALESCE).await;
                        break;
                    }
                    Ok(_) => continue,
                    Err(_) => break,
                },
                _ = &mut deadline => break,
            }
        }
    }
}

fn relevant(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Service | Kind::Endpoints | Kind::Pod | Kind::Node
    )
}

/// One reconciliation from a fresh snapshot; a write that loses a race ends the pass early (the
/// loop runs again on the change that beat it).
pub async fn pass(cp: &ControlPlane) -> Result<(), ApiError> {
    let snap = cp.current().await?;
    let services: Vec<Service> = objects(&snap, Kind::Service, None, |o| match o {
        Object::Service(s) => Some(s),
        _ => None,
    })?;
    let existing: Vec<Endpoints> = objects(&snap, Kind::Endpoints, None, |o| match o {
        Object::Endpoints(e) => Some(e),
        _ => None,
    })?;
    // Only the namespaces of services with a selector need their pods read: a cluster with
    // many pods and few services must not decode every pod on every change.
    let namespaces: BTreeSet<&str> = services
        .iter()
        .filter(|s| !s.spec.selector.is_empty())
        .map(|s| s.metadata.namespace.as_str())
        .collect();
    if namespaces.is_empty() && existing.is_empty() {
        return Ok(());
    }
    let mut pods: Vec<Pod> = Vec::new();
    for ns in &namespaces {
        pods.extend(objects(&snap, Kind::Pod, Some(ns), |o| match o {
            Object::Pod(p) => Some(p),
            _ => None,
        })?);
    }
    let nodes: Vec<Node> = if namespaces.is_empty() {
        Vec::new()
    } else {
        objects(&snap, Kind::Node, None, |o| match o {
            Object::Node(n) => Some(n),
            _ => None,
        })?
    };
    for action in reconcile(&services, &pods, &nodes, &existing) {
        let (cmd, what) = command(action);
        match cp.propose(cmd).await {
            Ok(_) => info!(endpoints = %what, "endpoints updated"),
            Err(e)
                if matches!(
                    e.code,
                    ErrorCode::Conflict | ErrorCode::AlreadyExists | ErrorCode::NotFound
                ) =>
            {
                debug!(endpoints = %what, error = %e, "endpoints changed meanwhile; will reconcile again");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn objects<T>(
    snap: &Snapshot,
    kind: Kind,
    namespace: Option<&str>,
    pick: impl Fn(Object) -> Option<T>,
) -> Result<Vec<T>, ApiError> {
    Ok(snap
        .list(kind, namespace)
        .map_err(internal)?
        .into_iter()
        .filter_map(pick)
        .collect())
}

/// The raft command for an action; identity and timestamps are chosen here, before proposing,
/// so the state machine stays deterministic.
fn command(action: Action) -> (Command, String) {
    match action {
        Action::Put {
            mut endpoints,
            revision,
        } => {
            let what = format!(
                "{}/{}",
                endpoints.metadata.namespace, endpoints.metadata.name
            );
            let precondition = match revision {
                Some(rv) => Precondition::Revision(rv),
                None => {
                    let m = &mut endpoints.metadata;
                    m.uid = uuid::Uuid::new_v4().to_string();
                    m.creation_timestamp = Some(Utc::now());
                    m.generation = 1;
                    Precondition::Absent
                }
            };
            let cmd = Command::Put {
                object: Object::Endpoints(*endpoints),
                precondition,
            };
            (cmd, what)
        }
        Action::Delete { key, revision } => {
            let what = format!("{}/{} (service gone)", key.namespace, key.name);
            let cmd = Command::Delete {
                key,
                precondition: Precondition::Revision(revision),
            };
            (cmd, what)
        }
    }
}
