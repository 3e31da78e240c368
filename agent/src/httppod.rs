//! HTTP components as containers: the agent owns the listener on the container's port, the
//! runtime instantiates the component per request. A failed request (deadline, memory limit,
//! trap) does not stop the pod; the last one is shown in the pod status, throttled so that a
//! failing endpoint under load does not turn into a status write per request.

use crate::container::{tcp_ports, Termination};
use crate::env::ConfigError;
use crate::sandbox::{self, HandlerFailure, RunSpec, ServeError};
use crate::worker::{Reporter, WorkerContext};
use edge_api::Container;
use edge_runtime::{LoadedComponent, OutputSink};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A repeated failure of the same kind is reported at most this often.
const FAILURE_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// The port an HTTP component serves on: its first declared TCP port.
pub fn serving_port(c: &Container) -> Result<u16, ConfigError> {
    tcp_ports(c).first().copied().ok_or_else(|| {
        ConfigError(
            "an HTTP component needs a containerPort (ports: [{containerPort: 8080}])".into(),
        )
    })
}

/// Binds `ip:port` (the node's pod address, or every address); the error reads well in a
/// waiting state.
pub async fn listen(ip: std::net::IpAddr, port: u16) -> Result<tokio::net::TcpListener, String> {
    let addr = std::net::SocketAddr::new(ip, port);
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Serves until the future is dropped (pod stopped, liveness restart) or the server fails.
pub async fn serve(
    ctx: &WorkerContext,
    comp: &LoadedComponent,
    spec: RunSpec,
    sink: Arc<dyn OutputSink>,
    listener: tokio::net::TcpListener,
    on_failure: Arc<dyn Fn(HandlerFailure) + Send + Sync>,
) -> Termination {
    let limits = ctx.http.clone();
    // The service proxy hands requests for this port straight to the handler while it serves.
    let (proxy, port) = (ctx.proxy.clone(), listener.local_addr().map(|a| a.port()));
    let local =
        move |h: &edge_runtime::HttpHandler| port.ok().map(|p| proxy.register_local(p, h.clone()));
    match sandbox::serve_http(
        &ctx.runtime,
        comp,
        spec,
        limits,
        sink,
        listener,
        on_failure,
        local,
    )
    .await
    {
        Ok(()) => (0, "Completed".into(), "the HTTP server stopped".into()),
        Err(ServeError::Start(m)) => (128, "StartError".into(), m),
    }
}

/// Decides whether a handler failure is worth a status update now.
#[derive(Debug, Default)]
pub struct FailureThrottle {
    last: Option<(String, Instant)>,
    count: u64,
}

impl FailureThrottle {
    /// Counts a failure of `reason` at `now`; true when it should be reported.
    pub fn admit(&mut self, reason: &str, now: Instant) -> bool {
        self.count = self.count.saturating_add(1);
        let report = match &self.last {
            Some((r, at)) => r != reason || now.duration_since(*at) >= FAILURE_REPORT_INTERVAL,
            None => true,
        };
        if report {
            self.last = Some((reason.to_string(), now));
        }
        report
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// The callback the runtime calls on each failed request of container `name`.
pub(crate) fn failure_reporter(
    rep: Arc<Reporter>,
    name: String,
) -> Arc<dyn Fn(HandlerFailure) + Send + Sync> {
    let throttle = Mutex::new(FailureThrottle::default());
    Arc::new(move |failure: HandlerFailure| {
        let (reason, message) = sandbox::failure_reason(&failure);
        let (report, count) = {
            let mut t = throttle.lock().unwrap_or_else(|p| p.into_inner());
            (t.admit(reason, Instant::now()), t.count())
        };
        let pod = &rep.pod.metadata.name;
        if !report {
            tracing::debug!(%pod, container = %name, reason, message, "request failed");
            return;
        }
        tracing::warn!(%pod, container = %name, reason, message, "request failed");
        // The API has no lastState yet: the pod's reason/message carry the last failure.
        let text = format!(
            "container {name}: last failed request: {message} ({count} failed since start)"
        );
        rep.update(|s| {
            s.reason = reason.to_string();
            s.message = text;
        });
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_component_needs_a_port() {
        let c = Container::default();
        assert!(serving_port(&c).unwrap_err().0.contains("containerPort"));
        let c = Container {
            ports: vec![
                edge_api::pod::ContainerPort {
                    container_port: 8080,
                    name: None,
                    protocol: "TCP".into(),
                },
                edge_api::pod::ContainerPort {
                    container_port: 9090,
                    name: None,
                    protocol: "TCP".into(),
                },
            ],
            ..Default::default()
        };
        assert_eq!(serving_port(&c), Ok(8080));
    }

    #[test]
    fn failures_are_throttled_per_reason() {
        let mut t = FailureThrottle::default();
        let t0 = Instant::now();
        assert!(t.admit("Trapped", t0));
        assert!(!t.admit("Trapped", t0 + Duration::from_secs(1)));
        assert!(t.admit("DeadlineExceeded", t0 + Duration::from_secs(2)));
        assert!(!t.admit("DeadlineExceeded", t0 + Duration::from_secs(3)));
        assert!(t.admit("DeadlineExceeded", t0 + Duration::from_secs(13)));
        assert_eq!(t.count(), 5);
    }
}
