//! Running wasi:cli/run commands: per-instance WASI context, memory limiter, epoch yielding, exit status.

use std::sync::Arc;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::output::SinkStdio;
use crate::{LoadedComponent, OutputSink, OutputStream, RuntimeError};

/// What to run: arguments (argv[0] included), environment, and limits.
#[derive(Debug, Clone, Default)]
pub struct CommandSpec {
    /// The guest's argv; argv[0] is the program name, supplied by the caller.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Upper bound on the guest's linear memory, in bytes; `None` for no limit.
    pub memory_limit_bytes: Option<u64>,
}

/// How a guest run ended. None of these is a host failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// The guest returned from `run` (0 for ok, 1 for err) or called exit with a code.
    Exited(i32),
    /// The guest failed after the memory limiter refused to grow its memory.
    MemoryLimitExceeded { message: String },
    /// The guest trapped (or a host call failed fatally for it).
    Trapped { message: String },
}

/// Per-instance store data: WASI state plus the memory limiter.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Wraps wasmtime's `StoreLimits` to remember that a limit was hit: the guest then
/// typically aborts with a generic trap (`unreachable`), and only this record lets us
/// report the real reason.
struct Limiter {
    limits: StoreLimits,
    memory_limit: Option<usize>,
    /// The largest size the guest asked for and was refused.
    refused_memory: Option<usize>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.refused_memory = Some(self.refused_memory.map_or(desired, |r| r.max(desired)));
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl Limiter {
    fn new(memory_limit_bytes: Option<u64>) -> Self {
        // On 32-bit hosts a limit above usize::MAX cannot be reached anyway.
        let memory_limit = memory_limit_bytes.map(|b| usize::try_from(b).unwrap_or(usize::MAX));
        let mut builder = StoreLimitsBuilder::new();
        if let Some(limit) = memory_limit {
            builder = builder.memory_size(limit);
        }
        Limiter {
            limits: builder.build(),
            memory_limit,
            refused_memory: None,
        }
    }

    fn exceeded_message(&self, error: &wasmtime::Error) -> Option<String> {
        let desired = self.refused_memory?;
        let limit = self
            .memory_limit
            .map_or_else(|| "its maximum".to_string(), |l| format!("{l} bytes"));
        Some(format!(
            "memory limit exceeded: the guest asked to grow its memory to {desired} bytes, \
             above {limit}; it then failed with: {}",
            short_message(error)
        ))
    }
}

/// The error's causes joined on one line, without the wasm backtrace context (a long list
/// of frames: useful in the host log, too long for a pod status). For a trap this reads
/// like "wasm trap: wasm `unreachable` instruction executed".
fn short_message(error: &wasmtime::Error) -> String {
    let parts: Vec<String> = error
        .chain()
        .map(|cause| cause.to_string())
        .filter(|text| !text.starts_with("error while executing at wasm backtrace"))
        .collect();
    if parts.is_empty() {
        error.to_string()
    } else {
        parts.join(": ")
    }
}

/// Turns a failed `run` (or a guest-caused instantiation failure) into an exit status.
fn classify_failure(error: &wasmtime::Error, limiter: &Limiter) -> ExitStatus {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return ExitStatus::Exited(exit.0);
    }
    if let Some(message) = limiter.exceeded_message(error) {
        return ExitStatus::MemoryLimitExceeded { message };
    }
    ExitStatus::Trapped {
        message: short_message(error),
    }
}

/// Builds the store, instantiates and calls `wasi:cli/run`. Cancellation safe: dropping the
/// returned future drops the store and the guest with it.
pub(crate) async fn run(
    engine: &wasmtime::Engine,
    linker: &Linker<HostState>,
    component: &LoadedComponent,
    spec: CommandSpec,
    output: Arc<dyn OutputSink>,
) -> Result<ExitStatus, RuntimeError> {
    let digest = component.digest();
    let wasi = WasiCtxBuilder::new()
        .args(&spec.args)
        .envs(&spec.env)
        .stdout(SinkStdio::new(Arc::clone(&output), OutputStream::Stdout))
        .stderr(SinkStdio::new(output, OutputStream::Stderr))
        .build();
    let state = HostState {
        wasi,
        table: ResourceTable::new(),
        limiter: Limiter::new(spec.memory_limit_bytes),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    // Yield to the executor at every epoch tick (10 ms): a guest in a tight loop then
    // returns Pending regularly, so other tasks run and dropping the future stops it.
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);

    let command = match Command::instantiate_async(&mut store, component.component(), linker).await
    {
        Ok(command) => command,
        Err(error) => {
            // Instantiation runs guest code too (start functions) and allocates the initial
            // memory through the limiter: those failures are the guest's, not the host's.
            let is_guest_failure = error.downcast_ref::<I32Exit>().is_some()
                || error.downcast_ref::<Trap>().is_some()
                || store.data().limiter.refused_memory.is_some();
            if is_guest_failure {
                return Ok(classify_failure(&error, &store.data().limiter));
            }
            return Err(RuntimeError::Instantiate {
                digest: digest.to_string(),
                message: format!("{error:#}"),
            });
        }
    };

    let status = match command.wasi_cli_run().call_run(&mut store).await {
        Ok(Ok(())) => ExitStatus::Exited(0),
        Ok(Err(())) => ExitStatus::Exited(1),
        Err(error) => {
            let status = classify_failure(&error, &store.data().limiter);
            if !matches!(status, ExitStatus::Exited(_)) {
                // The full chain (with the wasm backtrace) goes to the host log.
                tracing::debug!(digest, error = format!("{error:?}"), "guest failed");
            }
            status
        }
    };
    Ok(status)
}

pub(crate) fn new_linker(engine: &wasmtime::Engine) -> Result<Linker<HostState>, RuntimeError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| RuntimeError::Engine {
        message: format!("cannot add WASI to the linker: {e:#}"),
    })?;
    Ok(linker)
}
