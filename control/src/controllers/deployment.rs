//! Deployment: one ReplicaSet per pod template (`<name>-<pod-template-hash>`), rolled by the
//! strategy in `deployment_rollout`, with revisions, pause, history cleanup, and the
//! Available/Progressing conditions (ProgressDeadlineExceeded when a rollout stalls).

use super::deployment_rollout::{
    history_to_delete, new_rs_replicas, proportional_scale, recreate_step, resolve_bounds,
    rolling_step, RsView, Scales,
};
use super::pods::count;
use super::{
    all_keys, controller_uid, object_ref, own_key, owner_key, owner_ref, template_hash, Action,
    Controller, EventNote, Reconciled, World, POD_TEMPLATE_HASH, REVISION,
};
use chrono::{DateTime, Utc};
use edge_api::apps::{Deployment, DeploymentStatus, DeploymentStrategyType, ReplicaSet};
use edge_api::meta::{condition, set_condition, Condition};
use edge_api::object::{Kind, Object, ObjectKey};
use edge_api::wire::WatchEvent;
use edge_api::PodTemplateSpec;
use std::collections::BTreeMap;
use std::time::Duration;

const COMPONENT: &str = "deployment-controller";
const DEFAULT_DEADLINE: i32 = 600;
const DEFAULT_HISTORY: i32 = 10;

pub struct DeploymentController;

impl Controller for DeploymentController {
    fn name(&self) -> &'static str {
        "deployment"
    }

    fn reads(&self) -> &'static [Kind] {
        &[
            Kind::Namespace,
            Kind::Pod,
            Kind::ReplicaSet,
            Kind::Deployment,
        ]
    }

    fn keys_for(&self, ev: &WatchEvent, out: &mut Vec<ObjectKey>) {
        own_key(ev, Kind::Deployment, out);
        match ev.object.kind() {
            Kind::ReplicaSet => owner_key(ev, Kind::Deployment, out),
            // A pod's ReplicaSet is `<deployment>-<hash>`; its availability moves the rollout.
            Kind::Pod => {
                let meta = ev.object.meta();
                let Some(hash) = meta.labels.get(POD_TEMPLATE_HASH) else {
                    return;
                };
                let suffix = format!("-{hash}");
                for r in meta.owner_references.iter().filter(|r| r.controller) {
                    if let Some(name) = r.name.strip_suffix(&suffix) {
                        out.push(ObjectKey::new(Kind::Deployment, &meta.namespace, name));
                    }
                }
            }
            _ => {}
        }
    }

    fn primaries(&self, world: &World) -> Vec<ObjectKey> {
        all_keys(world, Kind::Deployment)
    }

    fn reconcile(&self, key: &ObjectKey, world: &World, now: DateTime<Utc>) -> Reconciled {
        match world.deployment(key) {
            Some(d) => reconcile(d, world, now),
            None => Reconciled::default(),
        }
    }
}

pub fn revision_of(meta: &edge_api::ObjectMeta) -> i64 {
    meta.annotations
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Templates are the same rollout target when they differ at most by the hash label.
fn same_template(rs: &PodTemplateSpec, d: &PodTemplateSpec) -> bool {
    let mut t = rs.clone();
    t.metadata.labels.remove(POD_TEMPLATE_HASH);
    t == *d
}

/// The ReplicaSets this Deployment controls (adopting matching orphans, releasing its own that
/// stopped matching), and the adopt/release writes.
fn claim<'a>(d: &Deployment, world: &'a World) -> (Vec<&'a ReplicaSet>, Vec<Action>) {
    let (mut owned, mut actions) = (Vec::new(), Vec::new());
    let meta = &d.metadata;
    let deleting = meta.deletion_timestamp.is_some();
    for rs in world
        .replica_sets
        .iter()
        .filter(|r| r.metadata.namespace == meta.namespace)
    {
        let matches = d.spec.selector.matches(&rs.metadata.labels);
        match controller_uid(&rs.metadata) {
            Some(uid) if uid == meta.uid => {
                if matches || deleting {
                    owned.push(rs);
                } else {
                    let mut released = rs.clone();
                    released
                        .metadata
                        .owner_references
                        .retain(|r| r.uid != meta.uid);
                    actions.push(Action::Update(Object::ReplicaSet(released)));
                }
            }
            None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                let mut adopted = rs.clone();
                adopted
                    .metadata
                    .owner_references
                    .push(owner_ref(Kind::Deployment, meta));
                actions.insert(0, Action::Update(Object::ReplicaSet(adopted)));
                owned.push(rs);
            }
            _ => {}
        }
    }
    (owned, actions)
}

fn view(rs: &ReplicaSet, world: &World, min_ready: i32, now: DateTime<Utc>) -> (RsView, i32) {
    let pods: Vec<_> = world.pods_controlled_by(&rs.metadata.uid).collect();
    let c = count(pods.iter().copied(), min_ready, now);
    let running = pods
        .iter()
        .filter(|p| !p.status.phase.is_terminal())
        .count() as i32;
    let v = RsView {
        name: rs.metadata.name.clone(),
        replicas: super::replicaset::desired(rs),
        active: c.active,
        available: c.available,
        running,
        revision: revision_of(&rs.metadata),
    };
    (v, c.ready)
}

/// The ReplicaSet for the Deployment's current template.
/// The annotation `kubectl rollout history` shows as CHANGE-CAUSE.
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

fn new_replica_set(d: &Deployment, hash: &str, replicas: i32, revision: i64) -> ReplicaSet {
    let mut rs = ReplicaSet {
        api_version: edge_api::API_VERSION.into(),
        ..Default::default()
    };
    rs.metadata.name = format!("{}-{hash}", d.metadata.name);
    rs.metadata.namespace = d.metadata.namespace.clone();
    rs.spec.template = d.spec.template.clone();
    rs.spec
        .template
        .metadata
        .labels
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    rs.metadata.labels = rs.spec.template.metadata.labels.clone();
    rs.metadata
        .annotations
        .insert(REVISION.into(), revision.to_string());
    // `rollout history` reads each revision's cause from its ReplicaSet, as in Kubernetes.
    if let Some(cause) = d.metadata.annotations.get(CHANGE_CAUSE) {
        rs.metadata
            .annotations
            .insert(CHANGE_CAUSE.into(), cause.clone());
    }
    rs.metadata.owner_references = vec![owner_ref(Kind::Deployment, &d.metadata)];
    rs.spec.selector = d.spec.selector.clone();
    rs.spec
        .selector
        .match_labels
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    rs.spec.replicas = Some(replicas);
    rs.spec.min_ready_seconds = d.spec.min_ready_seconds;
    rs
}

fn scaled_message(name: &str, from: i32, to: i32) -> String {
    let dir = if to > from { "up" } else { "down" };
    format!("Scaled {dir} replica set {name} from {from} to {to}")
}

pub fn reconcile(d: &Deployment, world: &World, now: DateTime<Utc>) -> Reconciled {
    let mut out = Reconciled::default();
    let meta = &d.metadata;
    let about = object_ref(Kind::Deployment, meta);
    let (rss, claims) = claim(d, world);
    out.actions.extend(claims);
    let desired = d.spec.replicas.unwrap_or(1).max(0);
    let min_ready = d.spec.min_ready_seconds;
    let views: Vec<(RsView, i32)> = rss.iter().map(|r| view(r, world, min_ready, now)).collect();
    let new_idx = rss
        .iter()
        .position(|r| same_template(&r.spec.template, &d.spec.template));
    let mut old: Vec<RsView> = (0..rss.len())
        .filter(|i| Some(*i) != new_idx)
        .map(|i| views[i].0.clone())
        .collect();
    old.sort_by_key(|r| (r.revision, r.name.clone()));
    let max_old_revision = old.iter().map(|r| r.revision).max().unwrap_or(0);
    let new = new_idx.map(|i| &views[i].0);
    let rolling = d.spec.strategy.type_ == DeploymentStrategyType::RollingUpdate;
    let (surge, unavailable) = match (rolling, d.spec.strategy.rolling_update.as_ref()) {
        (true, r) => resolve_bounds(
            desired,
            r.and_then(|r| r.max_surge.as_ref()),
            r.and_then(|r| r.max_unavailable.as_ref()),
        ),
        (false, _) => (0, 0),
    };

    let mut scales = Scales::new();
    let mut create: Option<i32> = None;
    if meta.deletion_timestamp.is_none() {
        if d.spec.paused {
            let all: Vec<RsView> = views.iter().map(|v| v.0.clone()).collect();
            scales = proportional_scale(desired, &all);
        } else if rolling {
            match new {
                None => create = Some(new_rs_replicas(desired, surge, None, &old)),
                Some(n) => scales = rolling_step(desired, surge, unavailable, n, &old),
            }
        } else {
            scales = recreate_step(desired, new, &old);
            create = scales.remove("");
        }
    }
    if !world.namespace_active(&meta.namespace) {
        create = None;
    }

    // Writes to ReplicaSets, one Update each: revision bump and scale together.
    let mut changed: BTreeMap<String, ReplicaSet> = BTreeMap::new();
    let mut events = Vec::new();
    let mut revision = revision_of(meta);
    let mut found_again = false;
    if let Some(i) = new_idx {
        revision = views[i].0.revision;
        if revision <= max_old_revision {
            // Back to an older template: its ReplicaSet becomes the newest revision.
            revision = max_old_revision + 1;
            found_again = true;
            let mut bumped = rss[i].clone();
            bumped
                .metadata
                .annotations
                .insert(REVISION.into(), revision.to_string());
            changed.insert(bumped.metadata.name.clone(), bumped);
        }
    }
    for (name, n) in &scales {
        let Some(rs) = rss.iter().find(|r| &r.metadata.name == name) else {
            continue;
        };
        let entry = changed.entry(name.clone()).or_insert_with(|| (*rs).clone());
        entry.spec.replicas = Some(*n);
        entry.metadata.generation += 1;
        let msg = scaled_message(name, super::replicaset::desired(rs), *n);
        events.push(EventNote::normal(
            &about,
            COMPONENT,
            "ScalingReplicaSet",
            &msg,
        ));
    }
    out.actions.extend(
        changed
            .into_values()
            .map(|rs| Action::Update(Object::ReplicaSet(rs))),
    );

    let hash = template_hash(&d.spec.template);
    let new_name = match new_idx {
        Some(i) => rss[i].metadata.name.clone(),
        None => format!("{}-{hash}", meta.name),
    };
    if let Some(replicas) = create {
        revision = max_old_revision + 1;
        let rs = new_replica_set(d, &hash, replicas, revision);
        let msg = scaled_message(&new_name, 0, replicas);
        out.actions.push(Action::Create {
            object: Object::ReplicaSet(rs),
            generate_name: None,
            event: (replicas > 0)
                .then(|| EventNote::normal(&about, COMPONENT, "ScalingReplicaSet", &msg)),
        });
    }
    if meta.deletion_timestamp.is_none() && !d.spec.paused {
        let limit = d.spec.revision_history_limit.unwrap_or(DEFAULT_HISTORY);
        for name in history_to_delete(&old, limit) {
            if let Some(rs) = rss.iter().find(|r| r.metadata.name == name) {
                out.actions.push(Action::Delete {
                    key: Object::ReplicaSet((*rs).clone()).key(),
                    resource_version: rs.metadata.resource_version,
                });
            }
        }
    }

    let mut status = DeploymentStatus {
        observed_generation: meta.generation,
        conditions: d.status.conditions.clone(),
        ..Default::default()
    };
    for (v, ready) in &views {
        status.replicas += v.active;
        status.ready_replicas += ready;
        status.available_replicas += v.available;
    }
    status.updated_replicas = new.map_or(0, |n| n.active);
    status.unavailable_replicas = (desired - status.available_replicas).max(0);
    let progress = Progress {
        desired,
        max_unavailable: unavailable,
        new_name: &new_name,
        created_new: create.is_some(),
        found_again,
        new_exists: new_idx.is_some() || create.is_some(),
    };
    let requeue = set_conditions(d, &mut status, &progress, now);
    if let Some(after) = requeue {
        out.requeue_within(after);
    }
    let mut updated = d.clone();
    updated.status = status;
    if revision > 0 {
        updated
            .metadata
            .annotations
            .insert(REVISION.into(), revision.to_string());
    }
    if updated != *d {
        out.actions
            .push(Action::Update(Object::Deployment(updated)));
    }
    out.actions.extend(events.into_iter().map(Action::Event));
    out
}

struct Progress<'a> {
    desired: i32,
    max_unavailable: i32,
    new_name: &'a str,
    created_new: bool,
    found_again: bool,
    new_exists: bool,
}

fn at(mut c: Condition, now: DateTime<Utc>) -> Condition {
    c.last_transition_time = Some(now);
    c
}

fn unknown(reason: &str, message: &str, now: DateTime<Utc>) -> Condition {
    let mut c = at(Condition::new("Progressing", false, reason, message), now);
    c.status = "Unknown".into();
    c
}

/// Sets Available and Progressing; returns when to look again for the progress deadline.
///
/// Conditions here carry one timestamp; Kubernetes' Progressing also has lastUpdateTime,
/// moved on every step of progress. So on progress the condition is written anew with the
/// current time: its lastTransitionTime then says when the rollout last moved, which is what
/// progressDeadlineSeconds counts from.
fn set_conditions(
    d: &Deployment,
    status: &mut DeploymentStatus,
    p: &Progress,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let available = status.available_replicas >= p.desired - p.max_unavailable;
    let avail = if available {
        Condition::new(
            "Available",
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        Condition::new(
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    set_condition(&mut status.conditions, at(avail, now));

    let deadline = d.spec.progress_deadline_seconds.unwrap_or(DEFAULT_DEADLINE);
    let current = condition(&d.status.conditions, "Progressing").cloned();
    let reason = current.as_ref().map(|c| c.reason.as_str()).unwrap_or("");
    let name = p.new_name;
    let complete = status.updated_replicas == p.desired
        && status.available_replicas == p.desired
        && status.replicas == p.desired
        && p.new_exists;
    let old_now = status.replicas - status.updated_replicas;
    let old_before = d.status.replicas - d.status.updated_replicas;
    // Readiness that flickers (a crashing component) is not progress; availability is.
    let progressed = status.updated_replicas > d.status.updated_replicas
        || old_now < old_before
        || status.available_replicas > d.status.available_replicas;
    let next = if d.spec.paused {
        (reason != "DeploymentPaused")
            .then(|| unknown("DeploymentPaused", "Deployment is paused", now))
    } else if reason == "DeploymentPaused" {
        Some(unknown("DeploymentResumed", "Deployment is resumed", now))
    } else if p.created_new {
        let msg = format!("Created new replica set {name:?}");
        Some(Condition::new(
            "Progressing",
            true,
            "NewReplicaSetCreated",
            &msg,
        ))
    } else if complete {
        let msg = format!("ReplicaSet {name:?} has successfully progressed.");
        Some(Condition::new(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            &msg,
        ))
    } else if p.found_again || (current.is_none() && p.new_exists) {
        let msg = format!("Found new replica set {name:?}");
        Some(Condition::new(
            "Progressing",
            true,
            "FoundNewReplicaSet",
            &msg,
        ))
    } else if progressed {
        let msg = format!("ReplicaSet {name:?} is progressing.");
        Some(Condition::new(
            "Progressing",
            true,
            "ReplicaSetUpdated",
            &msg,
        ))
    } else {
        None
    };
    let mut requeue = None;
    let cond = match next {
        // Progress restarts the deadline clock (see above), so the time is always now.
        Some(c) if c.is_true() && c.reason != "NewReplicaSetAvailable" => {
            let c = at(c, now);
            status.conditions.retain(|x| x.type_ != "Progressing");
            status.conditions.push(c.clone());
            Some(c)
        }
        Some(c) => {
            set_condition(&mut status.conditions, at(c, now));
            condition(&status.conditions, "Progressing").cloned()
        }
        None => current,
    };
    let cond = cond?;
    let waiting = !d.spec.paused
        && !complete
        && !matches!(
            cond.reason.as_str(),
            "NewReplicaSetAvailable" | "ProgressDeadlineExceeded" | "DeploymentPaused"
        );
    if waiting {
        let since = cond.last_transition_time.unwrap_or(now);
        let due = since + chrono::Duration::seconds(i64::from(deadline));
        if due <= now {
            let msg = format!("ReplicaSet {name:?} has timed out progressing.");
            let mut failed = Condition::new("Progressing", false, "ProgressDeadlineExceeded", &msg);
            failed = at(failed, now);
            set_condition(&mut status.conditions, failed);
        } else {
            requeue = (due - now).to_std().ok();
        }
    }
    requeue
}
