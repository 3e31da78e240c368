//! Job decisions.

use super::sim::Sim;
use super::*;
use crate::controllers::job::{
    failure_backoff, job_condition, reconcile, JobController, CONTROLLER_UID, JOB_NAME,
};
use edge_api::object::ObjectKey;
use edge_api::pod::{ContainerStatus, StateTerminated};
use std::time::Duration;

fn finished(mut p: Pod, code: i32, at: DateTime<Utc>) -> Pod {
    p.status.phase = if code == 0 {
        PodPhase::Succeeded
    } else {
        PodPhase::Failed
    };
    p.status.container_statuses.push(ContainerStatus {
        name: "main".into(),
        state: edge_api::ContainerState {
            terminated: Some(StateTerminated {
                exit_code: code,
                finished_at: Some(at),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    });
    p
}

fn job_pod(j: &Job, name: &str, phase: PodPhase) -> Pod {
    let mut p = pod(name, Kind::Job, &j.metadata, Some("n1"), phase);
    p.metadata.labels = labels(&[
        (CONTROLLER_UID, &j.metadata.uid),
        (JOB_NAME, &j.metadata.name),
    ]);
    p
}

fn updated_job(actions: &[Action]) -> Job {
    match updated(actions, Kind::Job) {
        Some(Object::Job(j)) => j.clone(),
        other => panic!("no job update: {other:?}"),
    }
}

#[test]
fn pods_are_started_up_to_parallelism_and_remaining_completions() {
    // (completions, parallelism, succeeded, active, expected new pods)
    let table = [
        (5, 2, 0, 0, 2),
        (5, 2, 4, 0, 1),
        (5, 2, 3, 1, 1),
        (5, 2, 0, 2, 0),
        (1, 3, 0, 0, 1),
    ];
    for (completions, parallelism, succeeded, active, want) in table {
        let j = job("batch", completions, parallelism);
        let mut objects = vec![Object::Node(node("n1")), Object::Job(j.clone())];
        for i in 0..succeeded {
            let p = job_pod(&j, &format!("ok-{i}"), PodPhase::Running);
            objects.push(Object::Pod(finished(p, 0, t0())));
        }
        for i in 0..active {
            objects.push(Object::Pod(job_pod(
                &j,
                &format!("run-{i}"),
                PodPhase::Running,
            )));
        }
        let out = reconcile(&j, &world(objects), t0());
        let made = created(&out.actions);
        assert_eq!(
            made.len(),
            want,
            "{completions}/{parallelism} with {succeeded} done, {active} running"
        );
        for o in made {
            let p = o.as_pod().expect("pod");
            assert_eq!(p.metadata.labels[JOB_NAME], "batch");
            assert_eq!(p.metadata.labels[CONTROLLER_UID], "uid-batch");
            assert_eq!(p.spec.restart_policy, edge_api::pod::RestartPolicy::Never);
        }
    }
}

#[test]
fn enough_successes_complete_the_job() {
    let j = job("batch", 2, 2);
    let objects = vec![
        Object::Job(j.clone()),
        Object::Pod(finished(job_pod(&j, "a", PodPhase::Running), 0, t0())),
        Object::Pod(finished(job_pod(&j, "b", PodPhase::Running), 0, t0())),
    ];
    let out = reconcile(&j, &world(objects), t0() + secs(1));
    let u = updated_job(&out.actions);
    let c = job_condition(&u, "Complete").expect("Complete");
    assert!(c.is_true());
    assert_eq!(u.status.succeeded, 2);
    assert_eq!(u.status.completion_time, Some(t0() + secs(1)));
    assert_eq!(event_reasons(&out.actions), ["Completed"]);
    assert!(created(&out.actions).is_empty());
}

#[test]
fn failures_past_the_backoff_limit_fail_the_job_and_stop_its_pods() {
    let mut j = job("batch", 3, 1);
    j.spec.backoff_limit = Some(1);
    let now = t0() + secs(100);
    let fail = |name: &str| Object::Pod(finished(job_pod(&j, name, PodPhase::Running), 3, t0()));
    // One failure is within the limit: a replacement after the back-off.
    let w = world([Object::Node(node("n1")), Object::Job(j.clone()), fail("f1")]);
    let out = reconcile(&j, &w, now);
    assert_eq!(created(&out.actions).len(), 1);
    // Two exceed it: Failed, and the running pod is stopped.
    let w = world([
        Object::Node(node("n1")),
        Object::Job(j.clone()),
        fail("f1"),
        fail("f2"),
        Object::Pod(job_pod(&j, "running", PodPhase::Running)),
    ]);
    let out = reconcile(&j, &w, now);
    let u = updated_job(&out.actions);
    let c = job_condition(&u, "Failed").expect("Failed");
    assert_eq!(c.reason, "BackoffLimitExceeded");
    assert_eq!(u.status.failed, 2);
    assert_eq!(deleted_pods(&out.actions), ["running"]);
    assert!(created(&out.actions).is_empty());
    assert_eq!(event_reasons(&out.actions), ["BackoffLimitExceeded"]);
}

#[test]
fn a_failed_pod_is_replaced_only_after_the_back_off() {
    let j = job("batch", 1, 1);
    let w = world([
        Object::Node(node("n1")),
        Object::Job(j.clone()),
        Object::Pod(finished(job_pod(&j, "f1", PodPhase::Running), 1, t0())),
    ]);
    let early = reconcile(&j, &w, t0() + secs(4));
    assert!(created(&early.actions).is_empty());
    assert_eq!(early.requeue_after, Some(Duration::from_secs(6)));
    let later = reconcile(&j, &w, t0() + secs(10));
    assert_eq!(created(&later.actions).len(), 1);
    assert_eq!(failure_backoff(1), Duration::from_secs(10));
    assert_eq!(failure_backoff(3), Duration::from_secs(40));
    assert_eq!(failure_backoff(30), Duration::from_secs(360));
}

#[test]
fn restarts_count_as_failures_with_on_failure() {
    let mut j = job("batch", 1, 1);
    j.spec.backoff_limit = Some(2);
    j.spec.template.spec.restart_policy = edge_api::pod::RestartPolicy::OnFailure;
    let mut p = job_pod(&j, "crashy", PodPhase::Running);
    p.status.container_statuses.push(ContainerStatus {
        name: "main".into(),
        restart_count: 3,
        ..Default::default()
    });
    let w = world([
        Object::Node(node("n1")),
        Object::Job(j.clone()),
        Object::Pod(p),
    ]);
    let u = updated_job(&reconcile(&j, &w, t0()).actions);
    assert_eq!(
        job_condition(&u, "Failed").map(|c| c.reason.as_str()),
        Some("BackoffLimitExceeded")
    );
}

#[test]
fn the_active_deadline_fails_a_running_job() {
    let mut j = job("batch", 1, 1);
    j.spec.active_deadline_seconds = Some(30);
    j.status.start_time = Some(t0());
    let w = world([
        Object::Node(node("n1")),
        Object::Job(j.clone()),
        Object::Pod(job_pod(&j, "slow", PodPhase::Running)),
    ]);
    let early = reconcile(&j, &w, t0() + secs(20));
    assert_eq!(early.requeue_after, Some(Duration::from_secs(10)));
    let out = reconcile(&j, &w, t0() + secs(31));
    let u = updated_job(&out.actions);
    assert_eq!(
        job_condition(&u, "Failed").map(|c| c.reason.as_str()),
        Some("DeadlineExceeded")
    );
    assert_eq!(deleted_pods(&out.actions), ["slow"]);
}

#[test]
fn a_finished_job_is_deleted_after_its_ttl() {
    let mut j = job("batch", 1, 1);
    j.spec.ttl_seconds_after_finished = Some(60);
    j.status.completion_time = Some(t0());
    let mut c = Condition::new("Complete", true, "CompletionsReached", "");
    c.last_transition_time = Some(t0());
    j.status.conditions.push(c);
    let w = world([Object::Job(j.clone())]);
    let early = reconcile(&j, &w, t0() + secs(59));
    assert_eq!(early.requeue_after, Some(Duration::from_secs(1)));
    assert!(early
        .actions
        .iter()
        .all(|a| !matches!(a, Action::Delete { .. })));
    let due = reconcile(&j, &w, t0() + secs(60));
    assert!(due.actions.iter().any(
        |a| matches!(a, Action::Delete { key, .. } if *key == ObjectKey::new(Kind::Job, "default", "batch"))
    ));
}

#[test]
fn five_completions_two_at_a_time_never_run_more_than_two() {
    let j = job("batch", 5, 2);
    let key = ObjectKey::new(Kind::Job, "default", "batch");
    let mut sim = Sim::new([
        namespace("default"),
        Object::Node(node("n1")),
        Object::Job(j),
    ]);
    let c = JobController;
    for _ in 0..30 {
        sim.run(&c);
        let active = sim
            .pods()
            .filter(|p| crate::controllers::pods::is_active(p))
            .count();
        assert!(active <= 2, "{active} active pods");
        sim.agents("n1", 10, 10);
        // Every running pod finishes successfully before the next look.
        let running: Vec<Pod> = sim
            .pods()
            .filter(|p| p.status.phase == PodPhase::Running)
            .cloned()
            .collect();
        let now = sim.now;
        let done: Vec<Action> = running
            .into_iter()
            .map(|p| Action::Update(Object::Pod(finished(p, 0, now))))
            .collect();
        sim.apply(&done).expect("finish");
        sim.advance(1);
    }
    let Some(Object::Job(done)) = sim.get(&key) else {
        panic!("job")
    };
    assert!(job_condition(done, "Complete").is_some_and(|c| c.is_true()));
    assert_eq!(done.status.succeeded, 5);
    assert_eq!(sim.creations[&Kind::Pod], 5, "exactly five pods were made");
}
