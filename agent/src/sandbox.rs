//! The one place where the agent speaks to edge-runtime's run/serve API: it turns the
//! agent's neutral [`RunSpec`] into a command run or an HTTP server, and relays the server's
//! request failures. Keeping this in one file keeps the container logic independent of the
//! runtime's exact signatures.

use edge_runtime::{
    CommandSpec, ExitStatus, HttpSpec, LoadedComponent, OutputSink, Runtime, RuntimeError,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

pub use edge_runtime::{AllocatorKind, HandlerFailure, NetworkGrants, Preopen};

/// Everything needed to start one instance of a container's component, whatever its kind.
#[derive(Clone, Debug, Default)]
pub struct RunSpec {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub memory_limit_bytes: Option<u64>,
    pub preopens: Vec<Preopen>,
    pub network: NetworkGrants,
    /// `None`: the runtime's default cap.
    pub output_bytes_per_sec: Option<u64>,
    /// Per-pod override of the HTTP request deadline (annotation `edge.dev/request-timeout`).
    pub request_timeout: Option<Duration>,
}

/// The pod annotation that sets an HTTP component's request deadline, e.g. `"2s"`.
pub const REQUEST_TIMEOUT_ANNOTATION: &str = "edge.dev/request-timeout";

/// Per-request limits of HTTP components (node-wide settings, not in the pod spec yet).
#[derive(Clone, Debug)]
pub struct HttpLimits {
    pub request_timeout: Duration,
    pub max_concurrency: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        let d = HttpSpec::default();
        HttpLimits {
            request_timeout: d.request_timeout,
            max_concurrency: d.max_concurrency,
        }
    }
}

/// The Kubernetes-style reason and the message of a failed request, for the pod status.
pub fn failure_reason(f: &HandlerFailure) -> (&'static str, &str) {
    match f {
        HandlerFailure::DeadlineExceeded { message } => ("DeadlineExceeded", message),
        HandlerFailure::MemoryLimitExceeded { message } => ("MemoryLimitExceeded", message),
        HandlerFailure::Trapped { message } => ("Trapped", message),
    }
}

pub fn allocator(runtime: &Runtime) -> AllocatorKind {
    runtime.allocator()
}

/// Runs a command component until it exits; dropping the future stops the guest.
pub async fn run_command(
    runtime: &Runtime,
    component: &LoadedComponent,
    spec: RunSpec,
    output: Arc<dyn OutputSink>,
) -> Result<ExitStatus, RuntimeError> {
    let spec = CommandSpec {
        args: spec.args,
        env: spec.env,
        memory_limit_bytes: spec.memory_limit_bytes,
        preopens: spec.preopens,
        network: spec.network,
        output_bytes_per_sec: spec.output_bytes_per_sec,
    };
    runtime.run_command(component, spec, output).await
}

/// Why an HTTP component stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The handler could not be built (linking, a missing volume, a bad grant).
    #[error("{0}")]
    Start(String),
}

/// Whether `serve_http` works with this runtime (HTTP components are refused at load time
/// with a clear reason when it does not).
pub const SERVES_HTTP: bool = true;

/// Serves `component` on `listener` until the future is dropped (how the pod stops: the
/// runtime's server closes its connections with it). Each failed request is passed to
/// `on_failure`; serving goes on. `on_ready` sees the handler once built; what it returns is
/// kept while serving (the service proxy's in-process registration).
#[allow(clippy::too_many_arguments)]
pub async fn serve_http<R: Send>(
    runtime: &Runtime,
    component: &LoadedComponent,
    spec: RunSpec,
    limits: HttpLimits,
    output: Arc<dyn OutputSink>,
    listener: tokio::net::TcpListener,
    on_failure: Arc<dyn Fn(HandlerFailure) + Send + Sync>,
    on_ready: impl FnOnce(&edge_runtime::HttpHandler) -> R,
) -> Result<(), ServeError> {
    let spec = HttpSpec {
        env: spec.env,
        memory_limit_bytes: spec.memory_limit_bytes,
        preopens: spec.preopens,
        network: spec.network,
        request_timeout: spec.request_timeout.unwrap_or(limits.request_timeout),
        max_concurrency: limits.max_concurrency,
        output_bytes_per_sec: spec.output_bytes_per_sec,
    };
    let handler = runtime
        .http_handler(component, spec, output)
        .map_err(|e| ServeError::Start(e.to_string()))?;
    let _registration = on_ready(&handler);
    let mut failures = handler.failures();
    let relay = async {
        loop {
            match failures.recv().await {
                Ok(f) => on_failure(f),
                // Under a flood of failures some are skipped; the later ones tell the story.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return std::future::pending::<()>().await,
            }
        }
    };
    tokio::select! {
        () = handler.serve(listener) => Ok(()),
        () = relay => Ok(()),
    }
}
