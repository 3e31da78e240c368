//! The decisions behind `edgectl rollout`, as pure functions: how far a rollout is (kubectl's
//! status lines), the revision history from the ReplicaSets, and what `undo` writes back.

use anyhow::{bail, Result};
use edge_api::apps::{DaemonSet, DaemonSetUpdateStrategyType, Deployment, ReplicaSet};
use edge_api::{ObjectMeta, PodTemplateSpec};
use std::collections::BTreeMap;

/// Every ReplicaSet and the Deployment carry their revision in this annotation.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Why a revision was made, shown by `rollout history`.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// The template annotation `rollout restart` sets.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// The label that ties a ReplicaSet and its pods to one template.
pub const TEMPLATE_HASH: &str = "pod-template-hash";

/// Deployment annotations that belong to the Deployment, not to a revision (kubectl's list):
/// a rollback keeps these and takes every other annotation from the revision's ReplicaSet.
const KEPT_ON_ROLLBACK: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// Where a rollout stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Not finished; the line says what is awaited.
    Waiting(String),
    Done(String),
    /// It will not finish by itself (the progress deadline passed).
    Failed(String),
}

/// kubectl's reading of a Deployment's rollout.
pub fn deployment_progress(d: &Deployment) -> Progress {
    let name = &d.metadata.name;
    let s = &d.status;
    if d.metadata.generation > s.observed_generation {
        return Progress::Waiting("Waiting for deployment spec update to be observed...".into());
    }
    if let Some(c) = edge_api::meta::condition(&s.conditions, "Progressing") {
        if c.reason == "ProgressDeadlineExceeded" {
            let mut msg = format!("deployment {name:?} exceeded its progress deadline");
            if !c.message.is_empty() {
                msg.push_str(&format!(": {}", c.message));
            }
            return Progress::Failed(msg);
        }
    }
    let want = d.spec.replicas.unwrap_or(1);
    if s.updated_replicas < want {
        return Progress::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {} out of {want} new replicas have been updated...",
            s.updated_replicas
        ));
    }
    if s.replicas > s.updated_replicas {
        return Progress::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            s.replicas - s.updated_replicas
        ));
    }
    if s.available_replicas < s.updated_replicas {
        return Progress::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {} of {} updated replicas are available...",
            s.available_replicas, s.updated_replicas
        ));
    }
    Progress::Done(format!("deployment {name:?} successfully rolled out"))
}

/// kubectl's reading of a DaemonSet's rollout.
pub fn daemonset_progress(ds: &DaemonSet) -> Result<Progress> {
    let name = &ds.metadata.name;
    if ds.spec.update_strategy.type_ != DaemonSetUpdateStrategyType::RollingUpdate {
        bail!("rollout status is only available for the RollingUpdate strategy type");
    }
    let s = &ds.status;
    Ok(if ds.metadata.generation > s.observed_generation {
        Progress::Waiting("Waiting for daemon set spec update to be observed...".into())
    } else if s.updated_number_scheduled < s.desired_number_scheduled {
        Progress::Waiting(format!(
            "Waiting for daemon set {name:?} rollout to finish: {} out of {} new pods have been updated...",
            s.updated_number_scheduled, s.desired_number_scheduled
        ))
    } else if s.number_available < s.desired_number_scheduled {
        Progress::Waiting(format!(
            "Waiting for daemon set {name:?} rollout to finish: {} of {} updated pods are available...",
            s.number_available, s.desired_number_scheduled
        ))
    } else {
        Progress::Done(format!("daemon set {name:?} successfully rolled out"))
    })
}

/// The revision an object's annotation names, if it is a number.
pub fn revision_of(meta: &ObjectMeta) -> Option<u64> {
    meta.annotations.get(REVISION)?.trim().parse().ok()
}

/// The ReplicaSets the Deployment controls (by owner uid), by revision, oldest first.
pub fn owned_replicasets<'a>(d: &Deployment, all: &'a [ReplicaSet]) -> Vec<&'a ReplicaSet> {
    let mut owned: Vec<&ReplicaSet> = all
        .iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .any(|o| o.controller && o.uid == d.metadata.uid)
        })
        .collect();
    owned.sort_by_key(|rs| {
        (
            revision_of(&rs.metadata).unwrap_or(0),
            rs.metadata.name.clone(),
        )
    });
    owned
}

/// `rollout history`'s rows: each revision with its change cause (`<none>` without one). The
/// current revision falls back to the Deployment's own change cause when its ReplicaSet has none.
pub fn history(d: &Deployment, all: &[ReplicaSet]) -> Vec<(u64, String)> {
    let current = revision_of(&d.metadata);
    owned_replicasets(d, all)
        .into_iter()
        .filter_map(|rs| {
            let rev = revision_of(&rs.metadata)?;
            let own = rs.metadata.annotations.get(CHANGE_CAUSE);
            let inherited = (current == Some(rev))
                .then(|| d.metadata.annotations.get(CHANGE_CAUSE))
                .flatten();
            let cause = own
                .or(inherited)
                .cloned()
                .unwrap_or_else(|| "<none>".into());
            Some((rev, cause))
        })
        .collect()
}

/// The template of a revision without its hash label, as a Deployment holds it.
fn without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    t.metadata.labels.remove(TEMPLATE_HASH);
    t
}

/// What `rollout undo` does.
#[derive(Debug, PartialEq)]
pub enum Undo {
    /// Write this Deployment back (the revision's template and annotations).
    RollBack(Box<Deployment>),
    /// The current template already is that revision's.
    Skip(u64),
}

/// Plans a rollback to `to` (default: the revision before the newest), like kubectl's.
pub fn plan_undo(d: &Deployment, all: &[ReplicaSet], to: Option<u64>) -> Result<Undo> {
    let name = &d.metadata.name;
    if d.spec.paused {
        bail!("you cannot rollback a paused deployment; resume it first with 'edgectl rollout resume deployment/{name}' and try again");
    }
    let owned = owned_replicasets(d, all);
    let with_rev: Vec<(u64, &ReplicaSet)> = owned
        .iter()
        .filter_map(|rs| revision_of(&rs.metadata).map(|r| (r, *rs)))
        .collect();
    let (rev, rs) = match to {
        Some(n) => with_rev
            .iter()
            .find(|(r, _)| *r == n)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("unable to find specified revision {n} in history"))?,
        None => match with_rev.len() {
            0 | 1 => bail!("no previous revision of deployment {name:?} to roll back to"),
            n => with_rev[n - 2],
        },
    };
    let template = without_hash(&rs.spec.template);
    if template == without_hash(&d.spec.template) {
        return Ok(Undo::Skip(rev));
    }
    let mut next = d.clone();
    next.spec.template = template;
    let mut annotations: BTreeMap<String, String> = KEPT_ON_ROLLBACK
        .iter()
        .filter_map(|k| {
            d.metadata
                .annotations
                .get(*k)
                .map(|v| (k.to_string(), v.clone()))
        })
        .collect();
    for (k, v) in &rs.metadata.annotations {
        if !KEPT_ON_ROLLBACK.contains(&k.as_str()) {
            annotations.insert(k.clone(), v.clone());
        }
    }
    next.metadata.annotations = annotations;
    Ok(Undo::RollBack(Box::new(next)))
}

/// `rollout restart`: a new template annotation makes a new revision with the same spec.
pub fn restart(template: &mut PodTemplateSpec, now: chrono::DateTime<chrono::Utc>) {
    template.metadata.annotations.insert(
        RESTARTED_AT.into(),
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
