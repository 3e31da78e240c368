//! Job: runs pods to completion — `completions` successes, at most `parallelism` at a time —
//! and fails after `backoffLimit` failures or `activeDeadlineSeconds`; a finished Job is
//! deleted `ttlSecondsAfterFinished` later.

use super::pods::{self, is_active, is_ready, sort_for_deletion};
use super::{
    all_keys, object_ref, own_key, owner_key, Action, Controller, EventNote, Reconciled, World,
};
use chrono::{DateTime, Utc};
use edge_api::apps::{Job, JobStatus};
use edge_api::meta::{condition, set_condition, Condition};
use edge_api::object::{Kind, Object, ObjectKey};
use edge_api::pod::RestartPolicy;
use edge_api::scheduling::LabelSelector;
use edge_api::wire::WatchEvent;
use edge_api::{Pod, PodPhase};
use std::collections::BTreeMap;
use std::time::Duration;

const COMPONENT: &str = "job-controller";
pub const JOB_NAME: &str = "job-name";
pub const CONTROLLER_UID: &str = "controller-uid";
/// Kubernetes' pod failure back-off: 10 s, doubled per failure, at most 6 minutes.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

pub struct JobController;

impl Controller for JobController {
    fn name(&self) -> &'static str {
        "job"
    }

    fn reads(&self) -> &'static [Kind] {
        &[Kind::Namespace, Kind::Node, Kind::Pod, Kind::Job]
    }

    fn keys_for(&self, ev: &WatchEvent, out: &mut Vec<ObjectKey>) {
        own_key(ev, Kind::Job, out);
        if ev.object.kind() == Kind::Pod {
            owner_key(ev, Kind::Job, out);
        }
    }

    fn primaries(&self, world: &World) -> Vec<ObjectKey> {
        all_keys(world, Kind::Job)
    }

    fn reconcile(&self, key: &ObjectKey, world: &World, now: DateTime<Utc>) -> Reconciled {
        match world.job(key) {
            Some(j) => reconcile(j, world, now),
            None => Reconciled::default(),
        }
    }
}

pub fn is_finished(status: &JobStatus) -> Option<&Condition> {
    status
        .conditions
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.is_true())
}

/// When a pod's components last stopped.
fn finished_at(p: &Pod) -> Option<DateTime<Utc>> {
    p.status
        .container_statuses
        .iter()
        .filter_map(|c| c.state.terminated.as_ref().and_then(|t| t.finished_at))
        .max()
}

/// The delay before replacing a failed pod: 10 s doubled per earlier failure, at most 6 min.
pub fn failure_backoff(failures: i32) -> Duration {
    let doublings = (failures - 1).clamp(0, 16) as u32;
    BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> Option<Duration> {
    (at > now).then(|| (at - now).to_std().unwrap_or_default())
}

pub fn reconcile(job: &Job, world: &World, now: DateTime<Utc>) -> Reconciled {
    let mut out = Reconciled::default();
    let meta = &job.metadata;
    let about = object_ref(Kind::Job, meta);
    let selector = job.spec.selector.clone().unwrap_or_else(|| LabelSelector {
        match_labels: BTreeMap::from([(CONTROLLER_UID.to_string(), meta.uid.clone())]),
        ..Default::default()
    });
    let (owned, claims) = pods::claim(Kind::Job, meta, &selector, world);
    out.actions.extend(claims);
    let mut active: Vec<&Pod> = owned.iter().copied().filter(|p| is_active(p)).collect();
    let phase = |ph: PodPhase| owned.iter().filter(|p| p.status.phase == ph).count() as i32;
    let (succeeded, failed) = (phase(PodPhase::Succeeded), phase(PodPhase::Failed));
    let spec = &job.spec;
    let completions = spec.completions.unwrap_or(1).max(0);
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6).max(0);

    let mut status = job.status.clone();
    status.start_time.get_or_insert(now);
    let mut to_delete: Vec<&Pod> = Vec::new();
    let mut created = 0;
    if is_finished(&job.status).is_none() && meta.deletion_timestamp.is_none() {
        // With OnFailure the pod stays and its components restart: those restarts are failures.
        let restarts: i32 = match spec.template.spec.restart_policy {
            RestartPolicy::OnFailure => active.iter().map(|p| p.restarts() as i32).sum(),
            _ => 0,
        };
        let started = status.start_time.unwrap_or(now);
        let deadline = spec
            .active_deadline_seconds
            .map(|s| started + chrono::Duration::seconds(s));
        let failure = if failed + restarts > backoff_limit {
            Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ))
        } else if deadline.is_some_and(|d| d <= now) {
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ))
        } else {
            None
        };
        if let Some((reason, message)) = failure {
            let c = Condition::new("Failed", true, reason, message);
            set_condition(&mut status.conditions, at(c, now));
            out.actions.push(Action::Event(EventNote::warning(
                &about, COMPONENT, reason, message,
            )));
            to_delete = active.clone();
        } else if succeeded >= completions {
            let c = Condition::new(
                "Complete",
                true,
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            );
            set_condition(&mut status.conditions, at(c, now));
            status.completion_time = Some(now);
            out.actions.push(Action::Event(EventNote::normal(
                &about,
                COMPONENT,
                "Completed",
                "Job completed",
            )));
            to_delete = active.clone();
        } else {
            if let Some(d) = deadline.and_then(|d| until(d, now)) {
                out.requeue_within(d);
            }
            let want = parallelism.min(completions - succeeded).max(0);
            let have = active.len() as i32;
            let last_failure = owned
                .iter()
                .filter(|p| p.status.phase == PodPhase::Failed)
                .filter_map(|p| finished_at(p))
                .max();
            let wait = last_failure.and_then(|t| {
                let backoff = chrono::Duration::from_std(failure_backoff(failed)).ok()?;
                until(t + backoff, now)
            });
            if have < want && world.namespace_active(&meta.namespace) {
                match wait {
                    Some(d) => out.requeue_within(d),
                    None => {
                        for _ in 0..(want - have) as usize {
                            out.actions.push(new_pod(job));
                            created += 1;
                        }
                    }
                }
            } else if have > want {
                sort_for_deletion(&mut active);
                to_delete = active
                    .iter()
                    .take((have - want) as usize)
                    .copied()
                    .collect();
            }
        }
    }
    for p in &to_delete {
        out.actions.push(pods::delete(p, world, now));
    }
    status.active = active.len() as i32 + created - to_delete.len() as i32;
    status.ready = active.iter().filter(|p| is_ready(p)).count() as i32;
    status.succeeded = succeeded;
    status.failed = failed;
    if let Some(expired) = ttl_due(job, &status, now, &mut out) {
        if expired {
            out.actions.push(Action::Delete {
                key: Object::Job(job.clone()).key(),
                resource_version: meta.resource_version,
            });
            return out;
        }
    }
    if status != job.status {
        let mut updated = job.clone();
        updated.status = status;
        // Status first: the events describe it.
        let at = out
            .actions
            .iter()
            .position(|a| matches!(a, Action::Event(_)))
            .unwrap_or(out.actions.len());
        out.actions.insert(at, Action::Update(Object::Job(updated)));
    }
    out
}

fn at(mut c: Condition, now: DateTime<Utc>) -> Condition {
    c.last_transition_time = Some(now);
    c
}

/// For a finished Job with a TTL: whether it is due for deletion (else a requeue is set).
fn ttl_due(
    job: &Job,
    status: &JobStatus,
    now: DateTime<Utc>,
    out: &mut Reconciled,
) -> Option<bool> {
    let ttl = job.spec.ttl_seconds_after_finished?;
    let finished = is_finished(status)?;
    let since = status
        .completion_time
        .filter(|_| finished.type_ == "Complete")
        .or(finished.last_transition_time)
        .unwrap_or(now);
    let due = since + chrono::Duration::seconds(i64::from(ttl));
    match until(due, now) {
        Some(d) => {
            out.requeue_within(d);
            Some(false)
        }
        None => Some(true),
    }
}

fn new_pod(job: &Job) -> Action {
    let meta = &job.metadata;
    let labels = BTreeMap::from([
        (JOB_NAME.to_string(), meta.name.clone()),
        (CONTROLLER_UID.to_string(), meta.uid.clone()),
    ]);
    let pod = pods::from_template(&job.spec.template, Kind::Job, meta, &labels);
    pods::create(pod, Kind::Job, meta, COMPONENT)
}

/// Exposed for tests: the Job's condition of `type_`, if set.
pub fn job_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a Condition> {
    condition(&job.status.conditions, type_)
}
