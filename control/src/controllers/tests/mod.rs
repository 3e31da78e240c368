//! Table tests of the controllers' decisions over hand-built worlds, and a small simulator that
//! plays the decisions forward (store writes, agents starting and stopping pods) to check the
//! invariants a user watches: rollout bounds, one daemon pod per node, job parallelism.

mod daemonset;
mod delete;
mod deployment;
mod gc;
mod job;
mod namespace;
mod replicaset;
mod rollout;
mod sim;

use super::{owner_ref, Action, World};
use chrono::{DateTime, TimeZone, Utc};
use edge_api::apps::{DaemonSet, Deployment, Job, ReplicaSet};
use edge_api::meta::{Condition, ObjectMeta};
use edge_api::object::{Kind, Namespace, Node, Object};
use edge_api::{Container, Pod, PodPhase, PodTemplateSpec};
use std::collections::BTreeMap;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0)
        .single()
        .expect("valid time")
}

pub fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

pub fn meta(name: &str, ns: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: ns.into(),
        uid: format!("uid-{name}"),
        resource_version: 1,
        generation: 1,
        creation_timestamp: Some(t0()),
        ..Default::default()
    }
}

pub fn namespace(name: &str) -> Object {
    let mut n = Namespace {
        metadata: meta(name, ""),
        ..Default::default()
    };
    n.status.phase = "Active".into();
    Object::Namespace(n)
}

pub fn node(name: &str) -> Node {
    let mut n = Node {
        metadata: meta(name, ""),
        ..Default::default()
    };
    n.status
        .conditions
        .push(Condition::new("Ready", true, "AgentReady", ""));
    for (k, v) in [("cpu", "4"), ("memory", "4Gi"), ("pods", "110")] {
        n.status.allocatable.insert(k.into(), v.into());
    }
    n
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn template(app: &str, image: char) -> PodTemplateSpec {
    let mut t = PodTemplateSpec::default();
    t.metadata.labels = labels(&[("app", app)]);
    t.spec.containers.push(Container {
        name: "main".into(),
        image: format!("sha256:{}", image.to_string().repeat(64)),
        ..Default::default()
    });
    t
}

pub fn replica_set(name: &str, replicas: i32, app: &str) -> ReplicaSet {
    let mut rs = ReplicaSet {
        metadata: meta(name, "default"),
        ..Default::default()
    };
    rs.spec.replicas = Some(replicas);
    rs.spec.selector.match_labels = labels(&[("app", app)]);
    rs.spec.template = template(app, 'a');
    rs.metadata.labels = labels(&[("app", app)]);
    rs
}

pub fn deployment(name: &str, replicas: i32, image: char) -> Deployment {
    let mut d = Deployment {
        metadata: meta(name, "default"),
        ..Default::default()
    };
    d.spec.replicas = Some(replicas);
    d.spec.selector.match_labels = labels(&[("app", name)]);
    d.spec.template = template(name, image);
    d
}

pub fn daemon_set(name: &str) -> DaemonSet {
    let mut ds = DaemonSet {
        metadata: meta(name, "default"),
        ..Default::default()
    };
    ds.spec.selector.match_labels = labels(&[("app", name)]);
    ds.spec.template = template(name, 'a');
    ds
}

pub fn job(name: &str, completions: i32, parallelism: i32) -> Job {
    let mut j = Job {
        metadata: meta(name, "default"),
        ..Default::default()
    };
    j.spec.completions = Some(completions);
    j.spec.parallelism = Some(parallelism);
    j.spec.template = template(name, 'a');
    j.spec.template.spec.restart_policy = edge_api::pod::RestartPolicy::Never;
    j
}

/// A pod owned by `owner` (of `kind`), bound to `node` (if any), in `phase`.
pub fn pod(name: &str, kind: Kind, owner: &ObjectMeta, node: Option<&str>, phase: PodPhase) -> Pod {
    let mut p = Pod {
        metadata: meta(name, &owner.namespace),
        ..Default::default()
    };
    p.metadata.owner_references = vec![owner_ref(kind, owner)];
    p.spec.node_name = node.map(String::from);
    p.status.phase = phase;
    p
}

/// Marks a pod Ready since `since`.
pub fn ready(mut p: Pod, since: DateTime<Utc>) -> Pod {
    let mut c = Condition::new("Ready", true, "", "");
    c.last_transition_time = Some(since);
    p.status.conditions.push(c);
    p
}

pub fn world(objects: impl IntoIterator<Item = Object>) -> World {
    let mut all = vec![namespace("default")];
    all.extend(objects);
    World::new(1, all)
}

/// The objects the actions would create.
pub fn created(actions: &[Action]) -> Vec<&Object> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Create { object, .. } => Some(object),
            _ => None,
        })
        .collect()
}

/// Pods the actions delete now or mark terminating, by name.
pub fn deleted_pods(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete { key, .. } if key.kind == Kind::Pod => Some(key.name.clone()),
            Action::Update(Object::Pod(p)) if p.metadata.deletion_timestamp.is_some() => {
                Some(p.metadata.name.clone())
            }
            _ => None,
        })
        .collect()
}

/// The last update of an object of `kind` among the actions.
pub fn updated(actions: &[Action], kind: Kind) -> Option<&Object> {
    actions.iter().rev().find_map(|a| match a {
        Action::Update(o) if o.kind() == kind => Some(o),
        _ => None,
    })
}

pub fn event_reasons(actions: &[Action]) -> Vec<String> {
    let mut out = Vec::new();
    for a in actions {
        match a {
            Action::Event(n) => out.push(n.reason.clone()),
            Action::Create { event: Some(n), .. } => out.push(n.reason.clone()),
            _ => {}
        }
    }
    out
}
