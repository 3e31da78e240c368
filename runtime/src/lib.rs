//! edge-runtime: the wasmtime sandbox (engine, precompile cache, WASI contexts, limits); it knows nothing of the cluster.
//!
//! One [`Runtime`] holds one wasmtime engine with async support and epoch interruption. A
//! background thread ticks the epoch every 10 ms, and every store yields to the executor at
//! each tick, so dropping the future returned by [`Runtime::run_command`] stops a guest
//! within about one tick, whether it is computing or sleeping.

mod cache;
mod command;
mod component;
mod error;
mod output;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

pub use command::{CommandSpec, ExitStatus};
pub use component::{ComponentKind, LoadedComponent};
pub use error::RuntimeError;
pub use output::{OutputSink, OutputStream};

use cache::DiskCache;
use command::HostState;
use component::BinaryKind;

/// How often the epoch advances; also the longest a guest runs between yields.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Where the runtime keeps its state on disk.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Directory for precompiled native code; created if missing. It must be trusted:
    /// its files are loaded as executable code.
    pub cache_dir: PathBuf,
}

/// The sandbox. Cheap to clone; all clones share one engine, cache and epoch thread.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    cache: DiskCache,
    compilations: AtomicU64,
}

impl Runtime {
    /// Creates the engine, opens (creates) the cache directory and starts the epoch thread.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let mut wasm_config = Config::new();
        wasm_config.epoch_interruption(true);
        wasm_config.wasm_component_model(true);
        let engine = Engine::new(&wasm_config).map_err(|e| RuntimeError::Engine {
            message: format!("{e:#}"),
        })?;
        let cache = DiskCache::open(&config.cache_dir, &engine)?;
        let linker = command::new_linker(&engine)?;
        let inner = Arc::new(Inner {
            engine,
            linker,
            cache,
            compilations: AtomicU64::new(0),
        });
        spawn_epoch_thread(Arc::downgrade(&inner))?;
        Ok(Runtime { inner })
    }

    /// The wasmtime engine, for embedders that build their own stores (e.g. wasi:http).
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Validates and compiles a component from wasm bytes identified by its sha256 hex
    /// digest, reusing native code from the disk cache when this engine configuration
    /// compiled it before (for example before an agent restart).
    pub async fn load(&self, digest: &str, wasm: &[u8]) -> Result<LoadedComponent, RuntimeError> {
        component::check_digest(digest)?;
        match component::classify(digest, wasm)? {
            BinaryKind::Component => {}
            BinaryKind::CoreModule => {
                return Err(RuntimeError::CoreModuleUnsupported {
                    digest: digest.to_string(),
                })
            }
        }
        let inner = Arc::clone(&self.inner);
        let digest_owned = digest.to_string();
        let wasm = wasm.to_vec();
        // Hashing, reading the cache and compiling are all blocking work.
        tokio::task::spawn_blocking(move || inner.load_blocking(digest_owned, &wasm))
            .await
            .map_err(|e| RuntimeError::Internal {
                digest: digest.to_string(),
                message: format!("the compile task failed: {e}"),
            })?
    }

    /// How many times this runtime actually compiled (cache misses).
    pub fn compilations(&self) -> u64 {
        self.inner.compilations.load(Ordering::Relaxed)
    }

    /// Runs a wasi:cli/run command to completion, streaming its stdout/stderr to `output`.
    ///
    /// Dropping the returned future stops the guest promptly (within an epoch tick), which
    /// is how a pod is stopped. Exit codes, traps and memory-limit hits are reported as
    /// [`ExitStatus`]; errors are for host-side problems only.
    pub async fn run_command(
        &self,
        component: &LoadedComponent,
        spec: CommandSpec,
        output: Arc<dyn OutputSink>,
    ) -> Result<ExitStatus, RuntimeError> {
        if component.kind() != ComponentKind::Command {
            return Err(RuntimeError::NotACommand {
                digest: component.digest().to_string(),
                kind: component.kind(),
            });
        }
        command::run(
            &self.inner.engine,
            &self.inner.linker,
            component,
            spec,
            output,
        )
        .await
    }
}

impl Inner {
    fn load_blocking(&self, digest: String, wasm: &[u8]) -> Result<LoadedComponent, RuntimeError> {
        let actual = hex::encode(Sha256::digest(wasm));
        if actual != digest {
            return Err(RuntimeError::DigestMismatch {
                expected: digest,
                actual,
            });
        }

        let path = self.cache.path_for(&digest);
        if path.is_file() {
            // SAFETY: the file was written by `DiskCache::store` from `Component::serialize`
            // of an engine with the same compatibility hash (it is in the directory name),
            // and the cache directory is trusted (see `RuntimeConfig::cache_dir`). wasmtime
            // still checks the header and engine compatibility and errors on a mismatch.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => {
                    tracing::debug!(%digest, path = %path.display(), "loaded precompiled component");
                    return Ok(LoadedComponent::new(digest, component, &self.engine, true));
                }
                Err(e) => {
                    // A damaged or foreign file: drop it and compile again.
                    tracing::warn!(%digest, path = %path.display(), error = %format!("{e:#}"),
                        "discarding unusable precompiled component");
                    self.cache.discard(&digest);
                }
            }
        }

        self.compilations.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let component = Component::new(&self.engine, wasm).map_err(|e| RuntimeError::Compile {
            digest: digest.clone(),
            message: format!("{e:#}"),
        })?;
        tracing::info!(%digest, elapsed_ms = started.elapsed().as_millis() as u64, "compiled component");

        // A cache that cannot be written (disk full, read-only SD card) costs a recompile on
        // the next start, but must not stop the workload from running now.
        match component.serialize() {
            Ok(bytes) => {
                if let Err(e) = self.cache.store(&digest, &bytes) {
                    tracing::warn!(%digest, error = %e, "cannot write precompiled component to the cache");
                }
            }
            Err(e) => {
                tracing::warn!(%digest, error = %format!("{e:#}"), "cannot serialize compiled component");
            }
        }
        Ok(LoadedComponent::new(digest, component, &self.engine, false))
    }
}

/// Ticks the engine's epoch until the last `Runtime` clone is gone. Holding only a weak
/// reference lets the runtime (and its engine) be freed; the thread notices within a tick.
fn spawn_epoch_thread(inner: Weak<Inner>) -> Result<(), RuntimeError> {
    std::thread::Builder::new()
        .name("edge-runtime-epoch".to_string())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match inner.upgrade() {
                Some(inner) => inner.engine.increment_epoch(),
                None => break,
            }
        })
        .map(|_| ())
        .map_err(|source| RuntimeError::Io {
            context: "cannot start the epoch ticker thread".to_string(),
            source,
        })
}
