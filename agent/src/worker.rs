//! One pod on this node: fetch and load its components, run each under its restart policy with
//! crash-loop back-off, and publish the pod's status as it changes.

use crate::blobs::BlobCache;
use crate::logs::LogStore;
use chrono::Utc;
use edge_api::meta::{set_condition, Condition};
use edge_api::pod::{Container, RestartPolicy, StateRunning, StateTerminated, StateWaiting};
use edge_api::{ContainerState, ContainerStatus, Pod, PodPhase, PodStatus};
use edge_runtime::{CommandSpec, ExitStatus, LoadedComponent, Runtime, RuntimeError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Restart back-off: `base` doubling up to `max`, reset after a run of `reset_after`.
#[derive(Clone, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The delay before restart number `crashes` (1-based) in the current streak.
    pub fn delay(&self, crashes: u32) -> Duration {
        let factor = 2u32.saturating_pow(crashes.saturating_sub(1).min(16));
        self.base.saturating_mul(factor).min(self.max)
    }
}

#[derive(Clone)]
pub struct WorkerContext {
    pub runtime: Runtime,
    pub blobs: BlobCache,
    pub logs: LogStore,
    pub backoff: Backoff,
    /// Every status change is sent here as the whole pod (metadata + new status).
    pub status_tx: mpsc::UnboundedSender<Pod>,
}

pub struct PodWorker {
    pub pod: Pod,
    pub status: Arc<Mutex<PodStatus>>,
    task: tokio::task::JoinHandle<()>,
}

impl PodWorker {
    pub fn spawn(ctx: WorkerContext, pod: Pod) -> PodWorker {
        let status = Arc::new(Mutex::new(initial_status(&pod)));
        let task = tokio::spawn(run_pod(ctx, pod.clone(), status.clone()));
        PodWorker { pod, status, task }
    }

    /// Stops every component of the pod; dropping the runtime futures ends the guests.
    pub fn stop(self) {
        self.task.abort();
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

fn initial_status(pod: &Pod) -> PodStatus {
    let mut status = pod.status.clone();
    status.phase = PodPhase::Pending;
    status.observed_generation = Some(pod.metadata.generation);
    status.container_statuses = pod
        .spec
        .containers
        .iter()
        .map(|c| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone(),
            state: waiting("ContainerCreating", ""),
            ..Default::default()
        })
        .collect();
    set_condition(
        &mut status.conditions,
        Condition::new("PodScheduled", true, "", ""),
    );
    status
}

fn waiting(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(StateWaiting {
            reason: reason.into(),
            message: message.into(),
        }),
        ..Default::default()
    }
}

/// The pod phase from its containers, as the kubelet computes it.
pub fn pod_phase(statuses: &[ContainerStatus], finished: bool) -> PodPhase {
    if finished {
        let all_ok = statuses.iter().all(|c| {
            c.state
                .terminated
                .as_ref()
                .is_some_and(|t| t.exit_code == 0)
        });
        return if all_ok {
            PodPhase::Succeeded
        } else {
            PodPhase::Failed
        };
    }
    let started = statuses
        .iter()
        .any(|c| c.state.running.is_some() || c.restart_count > 0 || c.state.terminated.is_some());
    if started {
        PodPhase::Running
    } else {
        PodPhase::Pending
    }
}

struct Reporter {
    pod: Pod,
    status: Arc<Mutex<PodStatus>>,
    tx: mpsc::UnboundedSender<Pod>,
}

impl Reporter {
    fn update(&self, f: impl FnOnce(&mut PodStatus)) {
        let snapshot = {
            let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s);
            let all_running = !s.container_statuses.is_empty()
                && s.container_statuses
                    .iter()
                    .all(|c| c.state.running.is_some());
            for c in &mut s.container_statuses {
                c.ready = c.state.running.is_some();
            }
            set_condition(
                &mut s.conditions,
                Condition::new("ContainersReady", all_running, "", ""),
            );
            set_condition(
                &mut s.conditions,
                Condition::new("Ready", all_running, "", ""),
            );
            s.clone()
        };
        let mut pod = self.pod.clone();
        pod.status = snapshot;
        // The session may be gone during shutdown; the status is then simply not reported.
        let _ = self.tx.send(pod);
    }

    fn container(&self, index: usize, f: impl FnOnce(&mut ContainerStatus)) {
        self.update(|s| {
            if let Some(c) = s.container_statuses.get_mut(index) {
                f(c);
            }
            let finished = false;
            s.phase = pod_phase(&s.container_statuses, finished);
        });
    }
}

async fn run_pod(ctx: WorkerContext, pod: Pod, status: Arc<Mutex<PodStatus>>) {
    let reporter = Arc::new(Reporter {
        pod: pod.clone(),
        status,
        tx: ctx.status_tx.clone(),
    });
    reporter.update(|_| {});
    let mut components = Vec::new();
    for (i, c) in pod.spec.containers.iter().enumerate() {
        match load_with_retry(&ctx, &reporter, i, c).await {
            Some(l) => components.push(l),
            None => {
                reporter.update(|s| {
                    s.phase = PodPhase::Failed;
                    s.reason = "InvalidComponent".into();
                });
                return;
            }
        }
    }
    reporter.update(|s| s.start_time = Some(Utc::now()));
    let runs = pod
        .spec
        .containers
        .iter()
        .zip(components)
        .enumerate()
        .map(|(i, (c, comp))| {
            run_container(
                ctx.clone(),
                reporter.clone(),
                pod.clone(),
                i,
                c.clone(),
                comp,
            )
        });
    futures::future::join_all(runs).await;
    reporter.update(|s| s.phase = pod_phase(&s.container_statuses, true));
}

/// Loads a component, retrying while the control plane is unreachable; `None` if it can never
/// work (not wasm, does not compile, not a command).
async fn load_with_retry(
    ctx: &WorkerContext,
    rep: &Reporter,
    i: usize,
    c: &Container,
) -> Option<LoadedComponent> {
    let mut delay = Duration::from_millis(500);
    loop {
        let result = match ctx.blobs.get(&c.image).await {
            Ok(bytes) => ctx
                .runtime
                .load(c.image.strip_prefix("sha256:").unwrap_or(&c.image), &bytes)
                .await
                .map_err(LoadError::Runtime),
            Err(e) => Err(LoadError::Fetch(e.to_string())),
        };
        match result {
            Ok(l) if l.kind() == edge_runtime::ComponentKind::Command => return Some(l),
            Ok(l) => {
                let msg = format!(
                    "component {} is a {:?}, not a wasi:cli command; this agent runs commands",
                    c.image,
                    l.kind()
                );
                rep.container(i, |cs| cs.state = waiting("UnsupportedComponent", &msg));
                return None;
            }
            Err(LoadError::Runtime(e)) if permanent(&e) => {
                rep.container(i, |cs| {
                    cs.state = waiting("InvalidComponent", &e.to_string())
                });
                return None;
            }
            Err(e) => {
                tracing::warn!(component = %c.image, error = %e, "cannot load component yet; retrying");
                rep.container(i, |cs| {
                    cs.state = waiting("ComponentPullBackOff", &e.to_string())
                });
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("{0}")]
    Fetch(String),
    #[error("{0}")]
    Runtime(RuntimeError),
}

fn permanent(e: &RuntimeError) -> bool {
    !matches!(
        e,
        RuntimeError::Io { .. } | RuntimeError::Cache { .. } | RuntimeError::Engine { .. }
    )
}

fn spec_for(pod: &Pod, c: &Container) -> CommandSpec {
    let mut args = vec![c.name.clone()];
    args.extend(c.args.iter().cloned());
    let mut env: Vec<(String, String)> = vec![
        ("POD_NAME".into(), pod.metadata.name.clone()),
        ("POD_NAMESPACE".into(), pod.metadata.namespace.clone()),
    ];
    env.extend(c.env.iter().map(|e| (e.name.clone(), e.value.clone())));
    let memory_limit_bytes = c
        .resources
        .limits
        .get("memory")
        .and_then(|q| edge_api::quantity::parse("memory", q).ok());
    CommandSpec {
        args,
        env,
        memory_limit_bytes,
    }
}

/// Kubernetes-style exit code and reason for how a component ended.
pub fn termination(exit: &Result<ExitStatus, RuntimeError>) -> (i32, String, String) {
    match exit {
        Ok(ExitStatus::Exited(0)) => (0, "Completed".into(), String::new()),
        Ok(ExitStatus::Exited(code)) => (*code, "Error".into(), String::new()),
        Ok(ExitStatus::MemoryLimitExceeded { message }) => {
            (137, "MemoryLimitExceeded".into(), message.clone())
        }
        Ok(ExitStatus::Trapped { message }) => (134, "Trapped".into(), message.clone()),
        Err(e) => (128, "StartError".into(), e.to_string()),
    }
}

async fn run_container(
    ctx: WorkerContext,
    rep: Arc<Reporter>,
    pod: Pod,
    i: usize,
    c: Container,
    comp: LoadedComponent,
) {
    let log_path = ctx.logs.file(
        &pod.metadata.namespace,
        &pod.metadata.name,
        &pod.metadata.uid,
        &c.name,
    );
    let mut crashes = 0u32;
    loop {
        let sink: Arc<dyn edge_runtime::OutputSink> = match ctx.logs.sink(log_path.clone()) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot open log file; output is discarded");
                Arc::new(Discard)
            }
        };
        let started = Utc::now();
        let began = Instant::now();
        rep.container(i, |cs| {
            cs.state = ContainerState {
                running: Some(StateRunning {
                    started_at: Some(started),
                }),
                ..Default::default()
            };
        });
        let exit = ctx
            .runtime
            .run_command(&comp, spec_for(&pod, &c), sink)
            .await;
        let (exit_code, reason, message) = termination(&exit);
        tracing::info!(pod = %pod.metadata.name, container = %c.name, exit_code, %reason, "component exited");
        rep.container(i, |cs| {
            cs.state = ContainerState {
                terminated: Some(StateTerminated {
                    exit_code,
                    reason: reason.clone(),
                    message: message.clone(),
                    started_at: Some(started),
                    finished_at: Some(Utc::now()),
                }),
                ..Default::default()
            };
        });
        let restart = match pod.spec.restart_policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        };
        if !restart {
            return;
        }
        crashes = if began.elapsed() >= ctx.backoff.reset_after {
            1
        } else {
            crashes + 1
        };
        let delay = ctx.backoff.delay(crashes);
        rep.container(i, |cs| {
            cs.restart_count += 1;
            let msg = format!(
                "back-off {}s restarting failed component {}",
                delay.as_secs(),
                c.name
            );
            cs.state = waiting("CrashLoopBackOff", &msg);
        });
        tokio::time::sleep(delay).await;
    }
}

struct Discard;

impl edge_runtime::OutputSink for Discard {
    fn write(&self, _: edge_runtime::OutputStream, _: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(state: ContainerState, restarts: u32) -> ContainerStatus {
        ContainerStatus {
            name: "c".into(),
            state,
            restart_count: restarts,
            ..Default::default()
        }
    }

    fn terminated(code: i32) -> ContainerState {
        ContainerState {
            terminated: Some(StateTerminated {
                exit_code: code,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn phases() {
        assert_eq!(
            pod_phase(&[cs(waiting("ContainerCreating", ""), 0)], false),
            PodPhase::Pending
        );
        let running = ContainerState {
            running: Some(StateRunning::default()),
            ..Default::default()
        };
        assert_eq!(pod_phase(&[cs(running, 0)], false), PodPhase::Running);
        assert_eq!(
            pod_phase(&[cs(waiting("CrashLoopBackOff", ""), 2)], false),
            PodPhase::Running
        );
        assert_eq!(
            pod_phase(&[cs(terminated(0), 0), cs(terminated(0), 0)], true),
            PodPhase::Succeeded
        );
        assert_eq!(
            pod_phase(&[cs(terminated(0), 0), cs(terminated(3), 0)], true),
            PodPhase::Failed
        );
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::from_secs(10));
        assert_eq!(b.delay(2), Duration::from_secs(20));
        assert_eq!(b.delay(5), Duration::from_secs(160));
        assert_eq!(b.delay(6), Duration::from_secs(300));
        assert_eq!(b.delay(60), Duration::from_secs(300));
    }

    #[test]
    fn exit_reasons() {
        assert_eq!(termination(&Ok(ExitStatus::Exited(3))).1, "Error");
        assert_eq!(termination(&Ok(ExitStatus::Exited(0))).1, "Completed");
        let m = termination(&Ok(ExitStatus::MemoryLimitExceeded {
            message: "x".into(),
        }));
        assert_eq!((m.0, m.1.as_str()), (137, "MemoryLimitExceeded"));
    }
}
