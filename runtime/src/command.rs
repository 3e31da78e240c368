//! Running commands: wasi:cli/run components (and, via `p1`, preview1 modules) with args, env, volumes, grants, limits; exit status.

use std::sync::Arc;

use wasmtime::component::{Component, Linker};
use wasmtime::Store;
use wasmtime_wasi::p2::bindings::Command;

use crate::grants::{NetworkGrants, NetworkPolicy};
use crate::limits::{self, GuestEnd};
use crate::output::RateLimitedSink;
use crate::preopen::Preopen;
use crate::sandbox::{HostState, Sandbox};
use crate::{LoadedComponent, OutputSink, RuntimeError};

/// What to run: arguments (argv[0] included), environment, volumes, grants and limits.
///
/// `Default` grants nothing: no volumes, no network, the default output rate.
#[derive(Debug, Clone, Default)]
pub struct CommandSpec {
    /// The guest's argv; argv[0] is the program name, supplied by the caller.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Upper bound on the guest's linear memory, in bytes; `None` for no limit.
    pub memory_limit_bytes: Option<u64>,
    /// Host directories the guest can see; nothing else of the filesystem is reachable.
    pub preopens: Vec<Preopen>,
    /// Network access; the default denies everything.
    pub network: NetworkGrants,
    /// Cap on stdout+stderr bytes per second; `None` for
    /// [`DEFAULT_OUTPUT_BYTES_PER_SEC`](crate::DEFAULT_OUTPUT_BYTES_PER_SEC) (1 MiB/s).
    /// Excess output is dropped and a notice line says how much.
    pub output_bytes_per_sec: Option<u64>,
}

/// How a guest run ended. None of these is a host failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// The guest returned from `run` (0 for ok, 1 for err) or called exit with a code.
    Exited(i32),
    /// The guest failed after the memory limiter refused to grow its memory.
    MemoryLimitExceeded { message: String },
    /// The guest trapped (or a host call failed fatally for it); a stack overflow says so.
    Trapped { message: String },
}

impl From<GuestEnd> for ExitStatus {
    fn from(end: GuestEnd) -> Self {
        match end {
            GuestEnd::Exited(code) => ExitStatus::Exited(code),
            GuestEnd::MemoryLimitExceeded(message) => ExitStatus::MemoryLimitExceeded { message },
            // Commands have no deadline of their own; should one appear, it is a trap.
            GuestEnd::DeadlineExceeded(message) | GuestEnd::Trapped(message) => {
                ExitStatus::Trapped { message }
            }
        }
    }
}

/// The parts of a run shared by components and preview1 modules.
pub(crate) struct Prepared {
    pub(crate) policy: Arc<NetworkPolicy>,
    pub(crate) output: Arc<RateLimitedSink>,
}

impl Prepared {
    pub(crate) fn new(
        digest: &str,
        spec: &CommandSpec,
        output: Arc<dyn OutputSink>,
    ) -> Result<Prepared, RuntimeError> {
        let output = RateLimitedSink::new(output, spec.output_bytes_per_sec);
        let policy = NetworkPolicy::new(&spec.network, Arc::clone(&output), digest)?;
        Ok(Prepared { policy, output })
    }

    pub(crate) fn sandbox<'a>(&'a self, digest: &'a str, spec: &'a CommandSpec) -> Sandbox<'a> {
        Sandbox {
            digest,
            args: &spec.args,
            env: &spec.env,
            preopens: &spec.preopens,
            policy: &self.policy,
            output: &self.output,
        }
    }
}

/// Makes a store yield to the executor at every epoch tick (10 ms): a guest in a tight
/// loop then returns Pending regularly, so other tasks run and dropping the future stops it.
pub(crate) fn yield_every_tick<T>(store: &mut Store<T>) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
}

/// Builds the store, instantiates and calls `wasi:cli/run`. Cancellation safe: dropping the
/// returned future drops the store and the guest with it.
pub(crate) async fn run(
    engine: &wasmtime::Engine,
    linker: &Linker<HostState>,
    loaded: &LoadedComponent,
    component: &Component,
    spec: CommandSpec,
    output: Arc<dyn OutputSink>,
) -> Result<ExitStatus, RuntimeError> {
    let digest = loaded.digest();
    let prepared = Prepared::new(digest, &spec, output)?;
    let state = prepared
        .sandbox(digest, &spec)
        .host_state(spec.memory_limit_bytes)?;
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    yield_every_tick(&mut store);

    call_run(&mut store, linker, component, digest).await
}

async fn call_run(
    store: &mut Store<HostState>,
    linker: &Linker<HostState>,
    component: &Component,
    digest: &str,
) -> Result<ExitStatus, RuntimeError> {
    let command = match Command::instantiate_async(&mut *store, component, linker).await {
        Ok(command) => command,
        Err(error) => {
            // Instantiation runs guest code too (start functions) and allocates the initial
            // memory through the limiter: those failures are the guest's, not the host's.
            if limits::is_guest_failure(&error, &store.data().limiter) {
                return Ok(limits::classify(&error, &store.data().limiter).into());
            }
            return Err(RuntimeError::Instantiate {
                digest: digest.to_string(),
                message: format!("{error:#}"),
            });
        }
    };

    let status = match command.wasi_cli_run().call_run(&mut *store).await {
        Ok(Ok(())) => ExitStatus::Exited(0),
        Ok(Err(())) => ExitStatus::Exited(1),
        Err(error) => {
            let status: ExitStatus = limits::classify(&error, &store.data().limiter).into();
            if !matches!(status, ExitStatus::Exited(_)) {
                // The full chain (with the wasm backtrace) goes to the host log.
                tracing::debug!(digest, error = format!("{error:?}"), "guest failed");
            }
            status
        }
    };
    Ok(status)
}
