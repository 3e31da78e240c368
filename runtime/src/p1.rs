//! Running WASI preview1 core modules (`_start`) with the same args, env, stdio, volumes, grants and limits as components.

use std::sync::Arc;

use wasmtime::{Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::command::{yield_every_tick, CommandSpec, ExitStatus, Prepared};
use crate::limits::{self, Limiter};
use crate::{LoadedComponent, OutputSink, RuntimeError};

/// Store data for a preview1 instance.
pub(crate) struct P1State {
    wasi: WasiP1Ctx,
    limiter: Limiter,
}

/// A core-module linker with all of `wasi_snapshot_preview1`.
pub(crate) fn linker(engine: &wasmtime::Engine) -> Result<Linker<P1State>, RuntimeError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut P1State| &mut state.wasi)
        .map_err(|e| RuntimeError::Engine {
            message: format!("cannot add WASI preview1 to the linker: {e:#}"),
        })?;
    Ok(linker)
}

/// Instantiates the module and calls `_start`. Cancellation safe like the component path.
pub(crate) async fn run(
    engine: &wasmtime::Engine,
    linker: &Linker<P1State>,
    loaded: &LoadedComponent,
    module: &Module,
    spec: CommandSpec,
    output: Arc<dyn OutputSink>,
) -> Result<ExitStatus, RuntimeError> {
    let digest = loaded.digest();
    let prepared = Prepared::new(digest, &spec, output)?;
    let wasi = prepared.sandbox(digest, &spec).wasi_builder()?.build_p1();
    let mut store = Store::new(
        engine,
        P1State {
            wasi,
            limiter: Limiter::new(spec.memory_limit_bytes),
        },
    );
    store.limiter(|state| &mut state.limiter);
    yield_every_tick(&mut store);

    call_start(&mut store, linker, module, digest).await
}

async fn call_start(
    store: &mut Store<P1State>,
    linker: &Linker<P1State>,
    module: &Module,
    digest: &str,
) -> Result<ExitStatus, RuntimeError> {
    let instance = match linker.instantiate_async(&mut *store, module).await {
        Ok(instance) => instance,
        Err(error) => {
            if limits::is_guest_failure(&error, &store.data().limiter) {
                return Ok(limits::classify(&error, &store.data().limiter).into());
            }
            return Err(RuntimeError::Instantiate {
                digest: digest.to_string(),
                message: format!("{error:#}"),
            });
        }
    };
    let start = instance
        .get_typed_func::<(), ()>(&mut *store, "_start")
        .map_err(|e| RuntimeError::Instantiate {
            digest: digest.to_string(),
            message: format!("`_start` is not a function without parameters: {e:#}"),
        })?;
    match start.call_async(&mut *store, ()).await {
        Ok(()) => Ok(ExitStatus::Exited(0)),
        Err(error) => {
            let status: ExitStatus = limits::classify(&error, &store.data().limiter).into();
            if !matches!(status, ExitStatus::Exited(_)) {
                tracing::debug!(digest, error = format!("{error:?}"), "guest failed");
            }
            Ok(status)
        }
    }
}
