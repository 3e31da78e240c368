//! One pod on this node: fetch and load its components, give it its volumes, run each
//! component as a container (see `container.rs`), keep projected ConfigMaps/Secrets fresh,
//! and publish the pod's status as it changes.

use crate::blobs::BlobCache;
use crate::configsource::{self, ConfigSource};
use crate::logs::LogStore;
use crate::sandbox::HttpLimits;
use crate::volumes::{self, VolumePlan};
use chrono::Utc;
use edge_api::meta::{set_condition, Condition};
use edge_api::pod::StateWaiting;
use edge_api::{Container, ContainerState, ContainerStatus, Pod, PodPhase, PodStatus};
use edge_runtime::{ComponentKind, LoadedComponent, Runtime, RuntimeError};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

pub use crate::container::termination;

/// How often projected ConfigMap/Secret volumes are compared with the control plane's copy.
const CONFIG_REFRESH: Duration = Duration::from_secs(60);

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
    pub(crate) config: ConfigSource,
    /// `pods/` under the data directory: one directory per pod uid, holding its volumes.
    pub pods_dir: PathBuf,
    pub http: HttpLimits,
    pub output_bytes_per_sec: Option<u64>,
    /// Services for pods: their env vars and grants, wasi:http routes, in-process HTTP handlers.
    pub(crate) proxy: crate::proxy::Proxy,
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

    /// Stops every component of the pod; dropping the runtime futures ends the guests. The
    /// pod's volumes stay (an agent restart keeps its pods' emptyDirs, as the kubelet does).
    pub fn stop(self) {
        self.task.abort();
    }

    /// Stops the pod for good and removes its volumes once its task has really ended (so a
    /// setup still in flight cannot recreate them).
    pub fn stop_and_remove(self, pods_dir: PathBuf) {
        self.task.abort();
        let uid = self.pod.metadata.uid;
        let task = self.task;
        tokio::spawn(async move {
            let _ = task.await;
            let _ =
                tokio::task::spawn_blocking(move || volumes::remove_pod_dir(&pods_dir, &uid)).await;
        });
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
            restart_count: known_restarts(pod, &c.name),
            ..Default::default()
        })
        .collect();
    set_condition(
        &mut status.conditions,
        Condition::new("PodScheduled", true, "", ""),
    );
    status
}

/// Restarts counted before this worker (the pod ran before the agent restarted): an agent
/// restart is not the container's failure, so the count carries over rather than resetting.
fn known_restarts(pod: &Pod, container: &str) -> u32 {
    pod.status
        .container_statuses
        .iter()
        .find(|c| c.name == container)
        .map_or(0, |c| c.restart_count)
}

pub(crate) fn waiting(reason: &str, message: &str) -> ContainerState {
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

/// The Ready/ContainersReady conditions from the containers' readiness, kubelet-style;
/// `why[i]` is the last readiness probe failure of container `i`, if any.
pub fn readiness_conditions(statuses: &[ContainerStatus], why: &[String]) -> Condition {
    let unready: Vec<&str> = statuses
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    if statuses.is_empty() || !unready.is_empty() {
        let mut message = format!("containers with unready status: [{}]", unready.join(" "));
        for w in why.iter().filter(|w| !w.is_empty()) {
            message.push_str("; ");
            message.push_str(w);
        }
        Condition::new("Ready", false, "ContainersNotReady", &message)
    } else {
        Condition::new("Ready", true, "", "")
    }
}

/// Publishes one pod's status; shared by its containers.
pub(crate) struct Reporter {
    pub(crate) pod: Pod,
    status: Arc<Mutex<PodStatus>>,
    tx: mpsc::UnboundedSender<Pod>,
    /// The last readiness probe failure per container, for the Ready condition's message.
    unready_why: Mutex<Vec<String>>,
}

impl Reporter {
    pub(crate) fn update(&self, f: impl FnOnce(&mut PodStatus)) {
        let snapshot = {
            let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s);
            for c in &mut s.container_statuses {
                // Only a running container can be ready, whatever its probes said last.
                c.ready &= c.state.running.is_some();
            }
            let why = self
                .unready_why
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let ready = readiness_conditions(&s.container_statuses, &why);
            let mut containers_ready = ready.clone();
            containers_ready.type_ = "ContainersReady".into();
            set_condition(&mut s.conditions, containers_ready);
            set_condition(&mut s.conditions, ready);
            s.clone()
        };
        let mut pod = self.pod.clone();
        pod.status = snapshot;
        // The session may be gone during shutdown; the status is then simply not reported.
        let _ = self.tx.send(pod);
    }

    pub(crate) fn container(&self, index: usize, f: impl FnOnce(&mut ContainerStatus)) {
        self.update(|s| {
            if let Some(c) = s.container_statuses.get_mut(index) {
                f(c);
            }
            let finished = false;
            s.phase = pod_phase(&s.container_statuses, finished);
        });
    }

    /// Readiness from probes; `why` is the failure, empty when ready.
    pub(crate) fn set_ready(&self, index: usize, ready: bool, why: String) {
        {
            let mut w = self.unready_why.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(slot) = w.get_mut(index) {
                *slot = why;
            }
        }
        self.container(index, |cs| cs.ready = ready);
    }
}

/// What every container of one pod shares.
pub(crate) struct PodRun {
    pub ctx: WorkerContext,
    pub pod: Pod,
    pub rep: Arc<Reporter>,
    /// Where the volumes live; an error (bad names) keeps every container waiting.
    pub plan: Result<VolumePlan, crate::env::ConfigError>,
    /// Volume setup is done by one container at a time (they share the directories).
    pub setup_lock: tokio::sync::Mutex<()>,
}

async fn run_pod(ctx: WorkerContext, pod: Pod, status: Arc<Mutex<PodStatus>>) {
    let rep = Arc::new(Reporter {
        pod: pod.clone(),
        status,
        tx: ctx.status_tx.clone(),
        unready_why: Mutex::new(vec![String::new(); pod.spec.containers.len()]),
    });
    rep.update(|_| {});
    let mut components = Vec::new();
    for (i, c) in pod.spec.containers.iter().enumerate() {
        match load_with_retry(&ctx, &rep, i, c).await {
            Some(l) => components.push(l),
            None => {
                rep.update(|s| {
                    s.phase = PodPhase::Failed;
                    s.reason = "InvalidComponent".into();
                });
                return;
            }
        }
    }
    rep.update(|s| s.start_time = Some(Utc::now()));
    let plan = match volumes::pod_dir(&ctx.pods_dir, &pod.metadata.uid) {
        Some(dir) => volumes::plan(&dir, &pod.spec),
        None => Err(crate::env::ConfigError(format!(
            "pod uid {:?} cannot name a directory",
            pod.metadata.uid
        ))),
    };
    let run = Arc::new(PodRun {
        ctx,
        pod: pod.clone(),
        rep: rep.clone(),
        plan,
        setup_lock: tokio::sync::Mutex::new(()),
    });
    let runs = pod
        .spec
        .containers
        .iter()
        .zip(components)
        .enumerate()
        .map(|(i, (c, comp))| crate::container::run(run.clone(), i, c.clone(), comp));
    tokio::select! {
        _ = futures::future::join_all(runs) => {}
        never = refresh_projected(&run) => match never {},
    }
    rep.update(|s| s.phase = pod_phase(&s.container_statuses, true));
}

/// Keeps ConfigMap/Secret files current while the pod runs, as the kubelet's periodic sync.
async fn refresh_projected(run: &PodRun) -> std::convert::Infallible {
    loop {
        tokio::time::sleep(CONFIG_REFRESH).await;
        let Ok(plan) = &run.plan else { continue };
        let projected = plan
            .volumes
            .iter()
            .any(|v| matches!(v.source, volumes::Source::Projected { .. }));
        if !projected {
            continue;
        }
        let ns = run.pod.metadata.namespace.clone();
        let refs = configsource::references(&run.pod, std::iter::empty::<&Container>());
        let data = run.ctx.config.lookup_all(&ns, refs).await;
        let _guard = run.setup_lock.lock().await;
        let plan = plan.clone();
        let result = tokio::task::spawn_blocking(move || volumes::setup(&plan, &ns, &data)).await;
        if let Ok(Err(e)) = result {
            // The containers keep the files they have; the next container start reports it.
            tracing::debug!(pod = %run.pod.metadata.name, error = %e, "cannot refresh projected volumes");
        }
    }
}

/// Loads a component, retrying while the control plane is unreachable; `None` if it can never
/// work (not wasm, does not compile, neither a command nor an HTTP handler).
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
            Ok(l) if l.kind() == ComponentKind::Command => return Some(l),
            Ok(l) if l.kind() == ComponentKind::HttpHandler && crate::sandbox::SERVES_HTTP => {
                return Some(l)
            }
            Ok(l) => {
                let msg = match l.kind() {
                    ComponentKind::HttpHandler => format!(
                        "component {} is a wasi:http handler; this agent's runtime cannot serve HTTP yet",
                        c.image
                    ),
                    _ => format!(
                        "component {} exports neither wasi:cli/run nor wasi:http/incoming-handler",
                        c.image
                    ),
                };
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

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::pod::{StateRunning, StateTerminated};

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
    fn ready_condition_names_unready_containers_and_why() {
        let mut a = cs(ContainerState::default(), 0);
        a.name = "a".into();
        a.ready = true;
        let mut b = a.clone();
        b.name = "b".into();
        assert!(readiness_conditions(&[a.clone(), b.clone()], &[]).is_true());
        b.ready = false;
        let why = [String::new(), "Readiness probe failed: timeout".to_string()];
        let c = readiness_conditions(&[a, b], &why);
        assert!(!c.is_true());
        assert_eq!(
            c.message,
            "containers with unready status: [b]; Readiness probe failed: timeout"
        );
        assert!(!readiness_conditions(&[], &[]).is_true());
    }

    #[test]
    fn restart_counts_survive_an_agent_restart() {
        let mut p = Pod::default();
        p.spec.containers.push(Container {
            name: "a".into(),
            ..Default::default()
        });
        p.status.phase = PodPhase::Running;
        p.status.container_statuses.push(ContainerStatus {
            name: "a".into(),
            restart_count: 3,
            ..Default::default()
        });
        let s = initial_status(&p);
        assert_eq!(s.container_statuses[0].restart_count, 3);
        assert_eq!(s.phase, PodPhase::Pending);
        p.status = PodStatus::default();
        assert_eq!(initial_status(&p).container_statuses[0].restart_count, 0);
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
}
