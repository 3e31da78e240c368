//! One container of a pod, started again and again under the restart policy: resolve its
//! configuration (volumes, env; waiting `CreateContainerConfigError` until it can), run the
//! command or serve the HTTP component, watch its probes, and back off between crashes.

use crate::env::{self, ConfigError};
use crate::probes;
use crate::sandbox::{self, NetworkGrants, RunSpec};
use crate::volumes;
use crate::worker::{waiting, PodRun};
use chrono::Utc;
use edge_api::pod::{RestartPolicy, StateRunning, StateTerminated};
use edge_api::{Container, ContainerState};
use edge_runtime::{ComponentKind, ExitStatus, LoadedComponent, OutputSink, RuntimeError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Retry delays while a container cannot be configured (missing ConfigMap, port in use).
const CONFIG_RETRY_FIRST: Duration = Duration::from_secs(1);
const CONFIG_RETRY_MAX: Duration = Duration::from_secs(30);

/// How one run of a container ended: exit code, reason, message (as `StateTerminated`).
pub type Termination = (i32, String, String);

/// Kubernetes-style exit code and reason for how a component ended.
pub fn termination(exit: &Result<ExitStatus, RuntimeError>) -> Termination {
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

/// Whether the restart policy restarts a container that ended with `exit_code`.
pub fn restarts(policy: RestartPolicy, exit_code: i32) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => exit_code != 0,
        RestartPolicy::Never => false,
    }
}

/// The CrashLoopBackOff message; it carries the last termination so that the reason
/// (MemoryLimitExceeded, Trapped, a failed liveness probe) stays visible while waiting.
pub fn backoff_message(delay: Duration, container: &str, last: &Termination) -> String {
    let (code, reason, message) = last;
    let mut out = format!(
        "back-off {}s restarting failed component {container}; last exit: {reason} (exit code {code})",
        delay.as_secs()
    );
    if !message.is_empty() {
        out.push_str(": ");
        out.push_str(message);
    }
    out
}

/// What a container needs before it can start, or why it must wait.
struct Waiting {
    reason: &'static str,
    message: String,
}

impl From<ConfigError> for Waiting {
    fn from(e: ConfigError) -> Waiting {
        Waiting {
            reason: "CreateContainerConfigError",
            message: e.0,
        }
    }
}

/// A container ready to start: its spec, and for an HTTP component its bound listener.
struct Prepared {
    spec: RunSpec,
    listener: Option<tokio::net::TcpListener>,
}

pub(crate) async fn run(run: Arc<PodRun>, i: usize, c: Container, comp: LoadedComponent) {
    let ctx = &run.ctx;
    let rep = &run.rep;
    let m = &run.pod.metadata;
    let log_path = ctx.logs.file(&m.namespace, &m.name, &m.uid, &c.name);
    let mut crashes = 0u32;
    loop {
        let prepared = prepare_with_retry(&run, i, &c, comp.kind()).await;
        let sink: Arc<dyn OutputSink> = match ctx.logs.sink(log_path.clone()) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot open log file; output is discarded");
                Arc::new(Discard)
            }
        };
        let started = Utc::now();
        let began = Instant::now();
        let probe_state = probes::ProbeSet::new(&c);
        rep.set_ready(i, false, String::new());
        rep.container(i, |cs| {
            cs.state = ContainerState {
                running: Some(StateRunning {
                    started_at: Some(started),
                }),
                ..Default::default()
            };
            cs.ready = probe_state.ready_when_running();
        });
        let instance = async {
            match prepared.listener {
                Some(listener) => {
                    let on_failure = crate::httppod::failure_reporter(rep.clone(), c.name.clone());
                    crate::httppod::serve(ctx, &comp, prepared.spec, sink, listener, on_failure)
                        .await
                }
                None => {
                    let exit = sandbox::run_command(&ctx.runtime, &comp, prepared.spec, sink).await;
                    termination(&exit)
                }
            }
        };
        let probed = crate::proxy::probing_pod_address(&c, ctx.proxy.local_ip());
        let probing = probes::watch(&probed, tokio::time::Instant::now(), |ready, why| {
            rep.set_ready(i, ready, why)
        });
        let ended: Termination = tokio::select! {
            t = instance => t,
            why = probing => (137, "Unhealthy".into(), why),
        };
        let (exit_code, reason, message) = ended.clone();
        tracing::info!(pod = %m.name, container = %c.name, exit_code, %reason, %message, "component ended");
        rep.container(i, |cs| {
            cs.state = ContainerState {
                terminated: Some(StateTerminated {
                    exit_code,
                    reason,
                    message,
                    started_at: Some(started),
                    finished_at: Some(Utc::now()),
                }),
                ..Default::default()
            };
        });
        if !restarts(run.pod.spec.restart_policy, exit_code) {
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
            cs.last_state = std::mem::take(&mut cs.state);
            cs.state = waiting("CrashLoopBackOff", &backoff_message(delay, &c.name, &ended));
        });
        tokio::time::sleep(delay).await;
    }
}

/// Prepares the container, showing why it waits and retrying until it can start.
async fn prepare_with_retry(
    run: &PodRun,
    i: usize,
    c: &Container,
    kind: ComponentKind,
) -> Prepared {
    let mut delay = CONFIG_RETRY_FIRST;
    loop {
        match prepare(run, c, kind).await {
            Ok(p) => return p,
            Err(w) => {
                tracing::info!(pod = %run.pod.metadata.name, container = %c.name, reason = w.reason, message = %w.message, "container cannot start yet");
                run.rep
                    .container(i, |cs| cs.state = waiting(w.reason, &w.message));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(CONFIG_RETRY_MAX);
            }
        }
    }
}

async fn prepare(run: &PodRun, c: &Container, kind: ComponentKind) -> Result<Prepared, Waiting> {
    let pod = &run.pod;
    let ns = pod.metadata.namespace.clone();
    let plan = run.plan.clone().map_err(Waiting::from)?;
    let refs = crate::configsource::references(pod, [c]);
    let data = run.ctx.config.lookup_all(&ns, refs).await;
    {
        let _guard = run.setup_lock.lock().await;
        let (plan, data) = (plan.clone(), data.clone());
        tokio::task::spawn_blocking(move || volumes::setup(&plan, &ns, &data))
            .await
            .map_err(|e| ConfigError(format!("volume setup failed: {e}")))??;
    }
    let request_timeout = match pod
        .metadata
        .annotations
        .get(crate::sandbox::REQUEST_TIMEOUT_ANNOTATION)
    {
        Some(v) => Some(parse_seconds(v).ok_or_else(|| {
            ConfigError({
                format!(
                    "annotation {}: {v:?} is not a duration like \"2s\" or \"500ms\"",
                    crate::sandbox::REQUEST_TIMEOUT_ANNOTATION
                )
            })
        })?),
        None => None,
    };
    let mut spec = RunSpec {
        request_timeout,
        args: std::iter::once(c.name.clone())
            .chain(c.args.iter().cloned())
            .collect(),
        env: env::with_services(
            env::resolve_env(pod, c, &data)?,
            run.ctx.proxy.service_env(&pod.metadata.namespace),
        ),
        memory_limit_bytes: c
            .resources
            .limits
            .get("memory")
            .and_then(|q| edge_api::quantity::parse("memory", q).ok()),
        preopens: volumes::preopens(&plan, c)?,
        network: NetworkGrants {
            listen: tcp_ports(c),
            outbound: (c.outbound.iter().cloned())
                .chain(run.ctx.proxy.service_grants(&pod.metadata.namespace))
                .collect(),
            services: Some(run.ctx.proxy.routes_for(&pod.metadata.namespace)),
        },
        output_bytes_per_sec: run.ctx.output_bytes_per_sec,
    };
    // A bad outbound entry can only be fixed by changing the pod: say so before starting.
    spec.network
        .validate()
        .map_err(|e| ConfigError(e.to_string()))?;
    let listener = match kind {
        ComponentKind::HttpHandler => {
            // The agent owns the listener; the per-request instances need no listening grant.
            spec.network.listen.clear();
            let port = crate::httppod::serving_port(c)?;
            let listener = crate::httppod::listen(run.ctx.proxy.bind_ip(), port)
                .await
                .map_err(|message| Waiting {
                    reason: "CreateContainerError",
                    message,
                })?;
            Some(listener)
        }
        _ => None,
    };
    Ok(Prepared { spec, listener })
}

/// The container's declared TCP ports.
pub fn tcp_ports(c: &Container) -> Vec<u16> {
    c.ports
        .iter()
        .filter(|p| p.protocol.eq_ignore_ascii_case("TCP"))
        .map(|p| p.container_port)
        .collect()
}

pub(crate) struct Discard;

impl OutputSink for Discard {
    fn write(&self, _: edge_runtime::OutputStream, _: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons() {
        assert_eq!(termination(&Ok(ExitStatus::Exited(3))).1, "Error");
        assert_eq!(termination(&Ok(ExitStatus::Exited(0))).1, "Completed");
        let m = termination(&Ok(ExitStatus::MemoryLimitExceeded {
            message: "x".into(),
        }));
        assert_eq!((m.0, m.1.as_str()), (137, "MemoryLimitExceeded"));
        let t = termination(&Ok(ExitStatus::Trapped {
            message: "unreachable".into(),
        }));
        assert_eq!((t.0, t.1.as_str()), (134, "Trapped"));
    }

    #[test]
    fn restart_policy() {
        assert!(restarts(RestartPolicy::Always, 0));
        assert!(!restarts(RestartPolicy::OnFailure, 0));
        assert!(restarts(RestartPolicy::OnFailure, 137));
        assert!(!restarts(RestartPolicy::Never, 1));
    }

    #[test]
    fn backoff_message_keeps_the_last_reason() {
        let last = (
            137,
            "Unhealthy".to_string(),
            "Liveness probe failed: timeout".to_string(),
        );
        assert_eq!(
            backoff_message(Duration::from_secs(10), "web", &last),
            "back-off 10s restarting failed component web; last exit: Unhealthy (exit code 137): Liveness probe failed: timeout"
        );
    }

    #[test]
    fn only_tcp_ports_are_granted() {
        let c = Container {
            ports: vec![
                edge_api::pod::ContainerPort {
                    container_port: 8080,
                    name: None,
                    protocol: "TCP".into(),
                },
                edge_api::pod::ContainerPort {
                    container_port: 5353,
                    name: None,
                    protocol: "UDP".into(),
                },
            ],
            ..Default::default()
        };
        assert_eq!(tcp_ports(&c), vec![8080]);
    }
}

/// Parses `"2s"`, `"500ms"`, `"1m"` or plain seconds.
fn parse_seconds(v: &str) -> Option<std::time::Duration> {
    let v = v.trim();
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "" | "s" => std::time::Duration::from_secs(n),
        "ms" => std::time::Duration::from_millis(n),
        "m" => std::time::Duration::from_secs(n.checked_mul(60)?),
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod duration_tests {
    #[test]
    fn parses_durations() {
        use std::time::Duration;
        assert_eq!(super::parse_seconds("2s"), Some(Duration::from_secs(2)));
        assert_eq!(
            super::parse_seconds("500ms"),
            Some(Duration::from_millis(500))
        );
        assert_eq!(super::parse_seconds("3"), Some(Duration::from_secs(3)));
        assert_eq!(super::parse_seconds("1m"), Some(Duration::from_secs(60)));
        assert_eq!(super::parse_seconds("0s"), None);
        assert_eq!(super::parse_seconds("soon"), None);
    }
}
