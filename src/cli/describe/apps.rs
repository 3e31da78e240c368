//! `describe deployment|replicaset|daemonset|job`: kubectl's layouts (replica counts, strategy,
//! pod template, conditions, the ReplicaSets of a Deployment, the pods' phases).

use super::events::workload_conditions;
use super::template::pod_template;
use super::{timestamp, Doc};
use crate::cli::render::format_age;
use crate::cli::render_apps::{job_status, selector_string};
use chrono::{DateTime, Utc};
use edge_api::apps::{
    DaemonSet, Deployment, DeploymentStrategyType, Job, ReplicaSet, RollingUpdate,
};
use edge_api::{IntOrString, ObjectMeta, Pod, PodPhase, PodTemplateSpec};

/// Name, namespace, creation time, labels and annotations: every workload starts so.
fn header(d: &mut Doc, m: &ObjectMeta) {
    d.pair(0, "Name", m.name.clone());
    d.pair(0, "Namespace", m.namespace.clone());
    d.pair(0, "CreationTimestamp", timestamp(m.creation_timestamp));
    d.map(0, "Labels", &m.labels);
    d.map(0, "Annotations", &m.annotations);
}

/// `Controlled By:  Kind/name` for an object with a controller owner.
pub(super) fn controlled_by(d: &mut Doc, m: &ObjectMeta) {
    if let Some(o) = m.owner_references.iter().find(|o| o.controller) {
        d.pair(0, "Controlled By", format!("{}/{}", o.kind, o.name));
    }
}

/// The pods whose controller is the object with `uid`.
pub fn owned_pods<'a>(uid: &str, pods: &'a [Pod]) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| {
            !uid.is_empty()
                && p.metadata
                    .owner_references
                    .iter()
                    .any(|o| o.controller && o.uid == uid)
        })
        .collect()
}

/// `3 Running / 0 Waiting / 0 Succeeded / 0 Failed`, kubectl's Pods Status.
pub fn pods_status(pods: &[&Pod]) -> String {
    let n = |phase: PodPhase| pods.iter().filter(|p| p.status.phase == phase).count();
    format!(
        "{} Running / {} Waiting / {} Succeeded / {} Failed",
        n(PodPhase::Running),
        n(PodPhase::Pending),
        n(PodPhase::Succeeded),
        n(PodPhase::Failed)
    )
}

/// `25% max unavailable, 25% max surge` (Kubernetes' defaults when unset).
pub fn rolling_update_line(r: Option<&RollingUpdate>) -> String {
    let default = IntOrString::String("25%".into());
    let unavailable = r
        .and_then(|r| r.max_unavailable.as_ref())
        .unwrap_or(&default);
    let surge = r.and_then(|r| r.max_surge.as_ref()).unwrap_or(&default);
    format!("{unavailable} max unavailable, {surge} max surge")
}

fn same_template(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        t.metadata.labels.remove("pod-template-hash");
        t
    };
    strip(a) == strip(b)
}

/// `web-5d4f (3/3 replicas created)`, as kubectl lists a Deployment's ReplicaSets.
fn rs_line(rs: &ReplicaSet) -> String {
    format!(
        "{} ({}/{} replicas created)",
        rs.metadata.name,
        rs.status.replicas,
        rs.spec.replicas.unwrap_or(1)
    )
}

/// `edgectl describe deployment`; `replicasets` may hold any in the namespace.
pub fn describe_deployment(dep: &Deployment, replicasets: &[ReplicaSet]) -> String {
    let mut d = Doc::default();
    header(&mut d, &dep.metadata);
    d.pair(0, "Selector", selector_string(&dep.spec.selector));
    let s = &dep.status;
    d.pair(
        0,
        "Replicas",
        format!(
            "{} desired | {} updated | {} total | {} available | {} unavailable",
            dep.spec.replicas.unwrap_or(1),
            s.updated_replicas,
            s.replicas,
            s.available_replicas,
            s.unavailable_replicas
        ),
    );
    let strategy = &dep.spec.strategy;
    d.pair(0, "StrategyType", format!("{:?}", strategy.type_));
    d.pair(0, "MinReadySeconds", dep.spec.min_ready_seconds.to_string());
    if strategy.type_ == DeploymentStrategyType::RollingUpdate {
        d.pair(
            0,
            "RollingUpdateStrategy",
            rolling_update_line(strategy.rolling_update.as_ref()),
        );
    }
    if dep.spec.paused {
        d.pair(0, "Paused", "true");
    }
    pod_template(&mut d, &dep.spec.template);
    workload_conditions(&mut d, &s.conditions);
    let owned: Vec<&ReplicaSet> = replicasets
        .iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .any(|o| o.controller && o.uid == dep.metadata.uid)
        })
        .collect();
    let new = owned
        .iter()
        .find(|rs| same_template(&rs.spec.template, &dep.spec.template));
    let old: Vec<String> = owned
        .iter()
        .filter(|rs| Some(rs.metadata.uid.as_str()) != new.map(|n| n.metadata.uid.as_str()))
        .filter(|rs| rs.spec.replicas.unwrap_or(1) > 0 || rs.status.replicas > 0)
        .map(|rs| rs_line(rs))
        .collect();
    d.pair(
        0,
        "OldReplicaSets",
        if old.is_empty() {
            "<none>".to_string()
        } else {
            old.join(", ")
        },
    );
    d.pair(
        0,
        "NewReplicaSet",
        new.map_or("<none>".to_string(), |rs| rs_line(rs)),
    );
    d.render()
}

/// `edgectl describe replicaset`; `pods` may hold any in the namespace.
pub fn describe_replicaset(rs: &ReplicaSet, pods: &[Pod]) -> String {
    let mut d = Doc::default();
    header(&mut d, &rs.metadata);
    d.pair(0, "Selector", selector_string(&rs.spec.selector));
    controlled_by(&mut d, &rs.metadata);
    d.pair(
        0,
        "Replicas",
        format!(
            "{} current / {} desired",
            rs.status.replicas,
            rs.spec.replicas.unwrap_or(1)
        ),
    );
    d.pair(
        0,
        "Pods Status",
        pods_status(&owned_pods(&rs.metadata.uid, pods)),
    );
    pod_template(&mut d, &rs.spec.template);
    workload_conditions(&mut d, &rs.status.conditions);
    d.render()
}

/// `edgectl describe daemonset`.
pub fn describe_daemonset(ds: &DaemonSet, pods: &[Pod]) -> String {
    let mut d = Doc::default();
    header(&mut d, &ds.metadata);
    d.pair(0, "Selector", selector_string(&ds.spec.selector));
    let ns = &ds.spec.template.spec.node_selector;
    if ns.is_empty() {
        d.pair(0, "Node-Selector", "<none>");
    } else {
        d.map(0, "Node-Selector", ns);
    }
    let s = &ds.status;
    d.pair(
        0,
        "Desired Number of Nodes Scheduled",
        s.desired_number_scheduled.to_string(),
    );
    d.pair(
        0,
        "Current Number of Nodes Scheduled",
        s.current_number_scheduled.to_string(),
    );
    d.pair(
        0,
        "Number of Nodes Scheduled with Up-to-date Pods",
        s.updated_number_scheduled.to_string(),
    );
    d.pair(
        0,
        "Number of Nodes Scheduled with Available Pods",
        s.number_available.to_string(),
    );
    d.pair(
        0,
        "Number of Nodes Misscheduled",
        s.number_misscheduled.to_string(),
    );
    d.pair(
        0,
        "Pods Status",
        pods_status(&owned_pods(&ds.metadata.uid, pods)),
    );
    d.pair(
        0,
        "StrategyType",
        format!("{:?}", ds.spec.update_strategy.type_),
    );
    pod_template(&mut d, &ds.spec.template);
    workload_conditions(&mut d, &s.conditions);
    d.render()
}

/// `edgectl describe job`.
pub fn describe_job(j: &Job, pods: &[Pod], now: DateTime<Utc>) -> String {
    let mut d = Doc::default();
    header(&mut d, &j.metadata);
    let selector = j
        .spec
        .selector
        .as_ref()
        .map(selector_string)
        .unwrap_or_else(|| format!("controller-uid={}", j.metadata.uid));
    d.pair(0, "Selector", selector);
    controlled_by(&mut d, &j.metadata);
    d.pair(
        0,
        "Parallelism",
        j.spec.parallelism.unwrap_or(1).to_string(),
    );
    d.pair(
        0,
        "Completions",
        j.spec.completions.unwrap_or(1).to_string(),
    );
    d.pair(
        0,
        "Backoff Limit",
        j.spec.backoff_limit.unwrap_or(6).to_string(),
    );
    if let Some(s) = j.spec.active_deadline_seconds {
        d.pair(0, "Active Deadline Seconds", format!("{s}s"));
    }
    if let Some(s) = j.spec.ttl_seconds_after_finished {
        d.pair(0, "TTL Seconds After Finished", s.to_string());
    }
    let s = &j.status;
    d.pair(0, "Status", job_status(j));
    if s.start_time.is_some() {
        d.pair(0, "Start Time", timestamp(s.start_time));
    }
    if let Some(done) = s.completion_time {
        d.pair(0, "Completed At", timestamp(Some(done)));
    }
    if let Some(start) = s.start_time {
        d.pair(
            0,
            "Duration",
            format_age(s.completion_time.unwrap_or(now) - start),
        );
    }
    let owned = owned_pods(&j.metadata.uid, pods);
    d.pair(
        0,
        "Pods Statuses",
        format!(
            "{} Active ({} Ready) / {} Succeeded / {} Failed",
            s.active, s.ready, s.succeeded, s.failed
        ),
    );
    if !owned.is_empty() {
        d.pair(0, "Pods", pods_status(&owned));
    }
    pod_template(&mut d, &j.spec.template);
    workload_conditions(&mut d, &s.conditions);
    d.render()
}
