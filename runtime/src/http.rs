//! Serving wasi:http incoming-handler components: one fresh instance per request from a pre-instantiated component, with a deadline, a concurrency cap and failure reports.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use tokio::sync::{broadcast, oneshot, Semaphore};
use wasmtime::component::Resource;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::WasiHttpView;

use crate::grants::{NetworkGrants, NetworkPolicy};
use crate::limits::{self, DeadlineReached, GuestEnd};
use crate::output::RateLimitedSink;
use crate::preopen::Preopen;
use crate::sandbox::{HostState, Sandbox};
use crate::RuntimeError;

/// The body of responses from [`HttpHandler::handle`]: the guest's streamed body, or a short
/// text for responses the host makes up (503, 504, 500).
pub type HttpBody = wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// How to serve an HTTP handler component.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    pub env: Vec<(String, String)>,
    /// Per-instance (per-request) memory limit; `None`, or anything above
    /// [`HTTP_MEMORY_CAP_BYTES`](crate::HTTP_MEMORY_CAP_BYTES), means that cap.
    pub memory_limit_bytes: Option<u64>,
    pub preopens: Vec<Preopen>,
    pub network: NetworkGrants,
    /// From request accepted to the end of the guest's work, response body included.
    pub request_timeout: Duration,
    /// Instances alive at once for this handler; requests beyond it get 503 at once.
    pub max_concurrency: usize,
    /// Output rate cap shared by all of this handler's instances; `None` for 1 MiB/s.
    pub output_bytes_per_sec: Option<u64>,
}

impl Default for HttpSpec {
    fn default() -> Self {
        HttpSpec {
            env: Vec::new(),
            memory_limit_bytes: None,
            preopens: Vec::new(),
            network: NetworkGrants::default(),
            request_timeout: Duration::from_secs(30),
            max_concurrency: 100,
            output_bytes_per_sec: None,
        }
    }
}

/// Why a request's guest instance failed. Each one is also answered with a 5xx response
/// (504 for the deadline, 500 otherwise) unless the response head had already been sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerFailure {
    DeadlineExceeded { message: String },
    MemoryLimitExceeded { message: String },
    Trapped { message: String },
}

/// How long requests waited from being accepted until their guest instance was ready to
/// enter the handler (instantiation included), over the most recent requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstantiationStats {
    pub samples: usize,
    pub p50: Duration,
    pub p99: Duration,
}

/// How many instantiation samples are kept (a ring: the most recent ones).
const TIMING_SAMPLES: usize = 1 << 16;

/// After the deadline, how long a guest blocked in a host call (not running wasm, so the
/// epoch trap cannot reach it) gets before its task is dropped.
const BLOCKED_GRACE: Duration = Duration::from_millis(100);

/// A ready-to-serve HTTP handler. Cheap to clone; all clones share the concurrency cap,
/// the output cap and the failure channel.
#[derive(Clone)]
pub struct HttpHandler {
    inner: Arc<Inner>,
}

struct Inner {
    digest: String,
    pre: ProxyPre<HostState>,
    env: Vec<(String, String)>,
    preopens: Vec<Preopen>,
    memory_limit: u64,
    timeout: Duration,
    policy: Arc<NetworkPolicy>,
    output: Arc<RateLimitedSink>,
    permits: Arc<Semaphore>,
    failures: broadcast::Sender<HandlerFailure>,
    timings: Mutex<VecDeque<Duration>>,
}

/// How a request's task ended when it did not produce a response normally.
#[derive(Debug)]
enum Outcome {
    Failed(HandlerFailure),
    /// The instance pool is full: the node is at capacity, not the guest at fault.
    PoolExhausted,
    Host(String),
}

impl HttpHandler {
    pub(crate) fn new(
        digest: &str,
        pre: ProxyPre<HostState>,
        spec: HttpSpec,
        output: Arc<dyn crate::OutputSink>,
    ) -> Result<HttpHandler, RuntimeError> {
        let output = RateLimitedSink::new(output, spec.output_bytes_per_sec);
        let policy = NetworkPolicy::new(&spec.network, Arc::clone(&output), digest)?;
        // Fail now, not on the first request, when a volume is missing.
        crate::preopen::apply(
            &mut wasmtime_wasi::WasiCtxBuilder::new(),
            &spec.preopens,
            digest,
        )?;
        let cap = crate::HTTP_MEMORY_CAP_BYTES;
        let memory_limit = spec.memory_limit_bytes.map_or(cap, |limit| limit.min(cap));
        if spec.memory_limit_bytes.is_some_and(|limit| limit > cap) {
            tracing::warn!(
                component = digest,
                requested = spec.memory_limit_bytes,
                cap,
                "HTTP handler memory limit lowered to the per-instance cap"
            );
        }
        let permits = spec.max_concurrency.clamp(1, Semaphore::MAX_PERMITS);
        let (failures, _) = broadcast::channel(64);
        Ok(HttpHandler {
            inner: Arc::new(Inner {
                digest: digest.to_string(),
                pre,
                env: spec.env,
                preopens: spec.preopens,
                memory_limit,
                timeout: spec.request_timeout,
                policy,
                output,
                permits: Arc::new(Semaphore::new(permits)),
                failures,
                timings: Mutex::new(VecDeque::with_capacity(1024)),
            }),
        })
    }

    /// Failures from now on (a lagging receiver skips the oldest ones).
    pub fn failures(&self) -> broadcast::Receiver<HandlerFailure> {
        self.inner.failures.subscribe()
    }

    /// Accepted-to-handler-entry times of recent requests (see [`InstantiationStats`]).
    pub fn instantiation_stats(&self) -> InstantiationStats {
        let mut samples: Vec<Duration> = lock(&self.inner.timings).iter().copied().collect();
        if samples.is_empty() {
            return InstantiationStats::default();
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        InstantiationStats {
            samples: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
        }
    }

    /// Serves one request in a fresh instance. Never fails: problems become 5xx responses
    /// (and guest failures are also sent to [`HttpHandler::failures`]).
    ///
    /// [`HttpHandler::serve`] adds `x-forwarded-for` with the client's address; a caller
    /// handing requests over directly (a proxy) sets it itself.
    pub async fn handle(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<HttpBody> {
        let accepted = Instant::now();
        let inner = &self.inner;
        let Ok(permit) = Arc::clone(&inner.permits).try_acquire_owned() else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the handler is at its concurrency limit\n",
            );
        };

        let mut store = match self.new_store(accepted) {
            Ok(store) => store,
            Err(e) => {
                tracing::error!(component = %inner.digest, error = %e, "cannot set up a request instance");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the handler could not be started\n",
                );
            }
        };
        let (sender, receiver) = oneshot::channel();
        let resources = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .and_then(|request| {
                Ok((
                    request,
                    store.data_mut().http().new_response_outparam(sender)?,
                ))
            });
        let (request, outparam) = match resources {
            Ok(resources) => resources,
            // In practice: neither an absolute URI nor a Host header to take the authority from.
            Err(e) => return text(StatusCode::BAD_REQUEST, &format!("bad request: {e}\n")),
        };

        let task_inner = Arc::clone(inner);
        let task = tokio::spawn(async move {
            let deadline =
                tokio::time::Instant::from_std(accepted + task_inner.timeout + BLOCKED_GRACE);
            let run = run_guest(&task_inner, &mut store, request, outparam, accepted);
            let result = match tokio::time::timeout_at(deadline, run).await {
                Ok(result) => result,
                Err(_) => Err(Outcome::Failed(HandlerFailure::DeadlineExceeded {
                    message: format!(
                        "the guest was still waiting on I/O at its {} ms deadline and was stopped",
                        task_inner.timeout.as_millis()
                    ),
                })),
            };
            if let Err(Outcome::Failed(failure)) = &result {
                task_inner.report(failure.clone());
            }
            // The instance holds its permit until it is completely done (response body
            // included), and gives its pool slot back before the permit.
            drop(store);
            drop(permit);
            result
        });

        // If the client goes away (this future is dropped) before a response exists, the
        // instance is stopped too; once the head is out, the task finishes the body alone.
        let mut guard = AbortOnDrop(Some(task.abort_handle()));
        let response = match receiver.await {
            Ok(Ok(response)) => {
                guard.0 = None;
                return response;
            }
            Ok(Err(code)) => {
                // The guest answered with an error code on purpose: its choice, not a failure.
                tracing::debug!(component = %inner.digest, ?code, "handler responded with an error code");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("the handler failed: {code:?}\n"),
                )
            }
            // The response was never set: the task ended first; its outcome says why.
            Err(_) => match task.await {
                Ok(Ok(())) => {
                    let failure = HandlerFailure::Trapped {
                        message: "the handler returned without setting a response".to_string(),
                    };
                    inner.report(failure.clone());
                    failure_response(&failure, inner.timeout)
                }
                Ok(Err(Outcome::Failed(failure))) => failure_response(&failure, inner.timeout),
                Ok(Err(Outcome::PoolExhausted)) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the node is at its instance capacity\n",
                ),
                Ok(Err(Outcome::Host(message))) => {
                    tracing::error!(component = %inner.digest, %message, "cannot run a request instance");
                    text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the handler could not be started\n",
                    )
                }
                Err(e) => {
                    tracing::error!(component = %inner.digest, error = %e, "request task failed");
                    text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
                }
            },
        };
        response
    }

    /// A store for one request: sandbox, limiter, and the deadline on the epoch.
    fn new_store(&self, accepted: Instant) -> Result<Store<HostState>, RuntimeError> {
        let inner = &self.inner;
        let sandbox = Sandbox {
            digest: &inner.digest,
            args: &[],
            env: &inner.env,
            preopens: &inner.preopens,
            policy: &inner.policy,
            output: &inner.output,
        };
        let state = sandbox.host_state(Some(inner.memory_limit))?;
        let mut store = Store::new(inner.pre.engine(), state);
        store.limiter(|state| &mut state.limiter);
        let timeout = inner.timeout;
        let deadline = accepted + timeout;
        // Checked at every epoch tick: yield to the executor (fairness) until the deadline,
        // then trap. A guest looping without host calls is stopped within one tick.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::new(DeadlineReached { timeout }))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }
}

impl Inner {
    fn report(&self, failure: HandlerFailure) {
        tracing::warn!(component = %self.digest, ?failure, "HTTP handler instance failed");
        // No receiver is fine: nobody is watching right now.
        let _ = self.failures.send(failure);
    }

    fn record_instantiation(&self, elapsed: Duration) {
        let mut timings = lock(&self.timings);
        if timings.len() == TIMING_SAMPLES {
            timings.pop_front();
        }
        timings.push_back(elapsed);
    }
}

async fn run_guest(
    inner: &Inner,
    store: &mut Store<HostState>,
    request: Resource<HostIncomingRequest>,
    outparam: Resource<HostResponseOutparam>,
    accepted: Instant,
) -> Result<(), Outcome> {
    let proxy = match inner.pre.instantiate_async(&mut *store).await {
        Ok(proxy) => proxy,
        Err(error) => {
            if error
                .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                .is_some()
            {
                tracing::warn!(component = %inner.digest, error = %error, "instance pool exhausted");
                return Err(Outcome::PoolExhausted);
            }
            if limits::is_guest_failure(&error, &store.data().limiter) {
                return Err(Outcome::Failed(failure(limits::classify(
                    &error,
                    &store.data().limiter,
                ))));
            }
            return Err(Outcome::Host(format!("{error:#}")));
        }
    };
    inner.record_instantiation(accepted.elapsed());
    proxy
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, request, outparam)
        .await
        .map_err(|error| {
            tracing::debug!(component = %inner.digest, error = format!("{error:?}"), "guest failed");
            Outcome::Failed(failure(limits::classify(&error, &store.data().limiter)))
        })
}

fn failure(end: GuestEnd) -> HandlerFailure {
    match end {
        GuestEnd::DeadlineExceeded(message) => HandlerFailure::DeadlineExceeded { message },
        GuestEnd::MemoryLimitExceeded(message) => HandlerFailure::MemoryLimitExceeded { message },
        GuestEnd::Trapped(message) => HandlerFailure::Trapped { message },
        // `exit` from a handler ends the instance without a response: a failure too.
        GuestEnd::Exited(code) => HandlerFailure::Trapped {
            message: format!("the handler called exit({code})"),
        },
    }
}

fn failure_response(failure: &HandlerFailure, timeout: Duration) -> hyper::Response<HttpBody> {
    match failure {
        HandlerFailure::DeadlineExceeded { .. } => text(
            StatusCode::GATEWAY_TIMEOUT,
            &format!(
                "the handler did not finish within {} ms\n",
                timeout.as_millis()
            ),
        ),
        HandlerFailure::MemoryLimitExceeded { .. } => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the handler exceeded its memory limit\n",
        ),
        HandlerFailure::Trapped { .. } => {
            text(StatusCode::INTERNAL_SERVER_ERROR, "the handler failed\n")
        }
    }
}

/// Aborts a request task unless disarmed (by taking the handle out).
struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

/// A host-made plain-text response.
pub(crate) fn text(status: StatusCode, body: &str) -> hyper::Response<HttpBody> {
    let body = Full::new(Bytes::from(body.to_string()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
