//! edge-runtime: the wasmtime sandbox (engines, precompile cache, WASI contexts, volumes, network grants, limits, wasi:http serving); it knows nothing of the cluster.
//!
//! One [`Runtime`] holds two wasmtime engines with async support and epoch interruption:
//! one for commands (on-demand allocation) and one for HTTP handlers (the pooling
//! allocator when the host allows it; see `engine.rs`). A background thread ticks both
//! epochs every 10 ms, and every store yields to the executor at each tick, so dropping
//! the future returned by [`Runtime::run_command`] stops a guest within about one tick,
//! whether it is computing or sleeping, and HTTP request deadlines are enforced to a tick.
//!
//! Guests get nothing by default: no host environment, no files outside their
//! [`Preopen`]s, no network outside their [`NetworkGrants`], and output capped per instance.

mod cache;
mod command;
mod component;
mod engine;
mod error;
mod grants;
mod http;
mod limits;
mod output;
mod p1;
mod preopen;
mod sandbox;
mod serve;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Module};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

pub use command::{CommandSpec, ExitStatus};
pub use component::{ComponentKind, LoadedComponent};
pub use engine::{
    AllocatorKind, AllocatorPreference, PoolUsage, HTTP_MEMORY_CAP_BYTES, KEEP_RESIDENT_BYTES,
    POOLING_ENV, POOL_INSTANCES,
};
pub use error::RuntimeError;
pub use grants::{HttpRouter, NetworkGrants, ServiceRoutes};
pub use http::{HandlerFailure, HttpBody, HttpHandler, HttpSpec, InstantiationStats};
pub use output::{OutputSink, OutputStream, DEFAULT_OUTPUT_BYTES_PER_SEC};
pub use preopen::Preopen;

use cache::DiskCache;
use component::{Artifact, BinaryKind};
use sandbox::HostState;

/// How often the epoch advances; also the longest a guest runs between yields.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Where the runtime keeps its state on disk.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Directory for precompiled native code; created if missing. It must be trusted:
    /// its files are loaded as executable code.
    pub cache_dir: PathBuf,
}

/// The sandbox. Cheap to clone; all clones share the engines, cache and epoch thread.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    /// Commands: on-demand allocation (see `engine.rs`).
    engine: Engine,
    linker: Linker<HostState>,
    p1_linker: wasmtime::Linker<p1::P1State>,
    /// HTTP handlers: pooling allocation when the host allows it.
    http_engine: Engine,
    http_linker: Linker<HostState>,
    allocator: AllocatorKind,
    cache: DiskCache,
    compilations: AtomicU64,
    /// Components already loaded, by digest: a thousand pods of one component share one copy
    /// of its code instead of deserializing it a thousand times.
    loaded: std::sync::Mutex<std::collections::HashMap<String, LoadedComponent>>,
}

impl Runtime {
    /// Creates the engines, opens (creates) the cache directory and starts the epoch thread.
    /// HTTP handlers use the pooling allocator unless `EDGE_POOLING=0` is set (or the host
    /// cannot reserve the pool); see [`Runtime::allocator`].
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        Runtime::with_allocator(config, AllocatorPreference::from_env())
    }

    /// Like [`Runtime::new`] with an explicit allocator choice instead of `EDGE_POOLING`.
    pub fn with_allocator(
        config: RuntimeConfig,
        preference: AllocatorPreference,
    ) -> Result<Runtime, RuntimeError> {
        let engine = engine::command_engine()?;
        let (http_engine, allocator) = engine::http_engine(preference)?;
        let cache = DiskCache::open(&config.cache_dir, &engine)?;
        let inner = Arc::new(Inner {
            linker: sandbox::component_linker(&engine)?,
            p1_linker: p1::linker(&engine)?,
            http_linker: sandbox::component_linker(&http_engine)?,
            engine,
            http_engine,
            allocator,
            cache,
            compilations: AtomicU64::new(0),
            loaded: Default::default(),
        });
        spawn_epoch_thread(Arc::downgrade(&inner))?;
        Ok(Runtime { inner })
    }

    /// The command engine, for embedders that build their own stores.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// How HTTP handler instances are allocated (pooling, or on-demand and why).
    pub fn allocator(&self) -> AllocatorKind {
        self.inner.allocator.clone()
    }

    /// Live instances in the HTTP pool; `None` when allocation is on-demand.
    pub fn pool_usage(&self) -> Option<PoolUsage> {
        engine::pool_usage(&self.inner.http_engine)
    }

    /// Validates and compiles a component (or a WASI preview1 core module) from wasm bytes
    /// identified by its sha256 hex digest, reusing native code from the disk cache when
    /// this engine configuration compiled it before (for example before an agent restart).
    pub async fn load(&self, digest: &str, wasm: &[u8]) -> Result<LoadedComponent, RuntimeError> {
        component::check_digest(digest)?;
        let binary = component::classify(digest, wasm)?;
        let inner = Arc::clone(&self.inner);
        let digest_owned = digest.to_string();
        let wasm = wasm.to_vec();
        // Hashing, reading the cache and compiling are all blocking work.
        tokio::task::spawn_blocking(move || inner.load_blocking(digest_owned, binary, &wasm))
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

    /// Runs a command (a wasi:cli/run component or a preview1 module's `_start`) to
    /// completion, streaming its stdout/stderr to `output`.
    ///
    /// Dropping the returned future stops the guest promptly (within an epoch tick), which
    /// is how a pod is stopped. Exit codes, traps and memory-limit hits are reported as
    /// [`ExitStatus`]; errors are for host-side problems only (including a bad spec: a
    /// missing volume or an invalid grant).
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
        let inner = &self.inner;
        match component.artifact() {
            Artifact::Component { command, .. } => {
                command::run(
                    &inner.engine,
                    &inner.linker,
                    component,
                    command,
                    spec,
                    output,
                )
                .await
            }
            Artifact::Module(module) => {
                p1::run(
                    &inner.engine,
                    &inner.p1_linker,
                    component,
                    module,
                    spec,
                    output,
                )
                .await
            }
        }
    }

    /// Prepares an HTTP handler: links the component once (pre-instantiation) so that each
    /// request only instantiates. Serve it with [`HttpHandler::handle`] or
    /// [`HttpHandler::serve`].
    pub fn http_handler(
        &self,
        component: &LoadedComponent,
        spec: HttpSpec,
        output: Arc<dyn OutputSink>,
    ) -> Result<HttpHandler, RuntimeError> {
        let digest = component.digest();
        let http_component = match component.artifact() {
            Artifact::Component { http: Some(c), .. } => c,
            _ => {
                return Err(RuntimeError::NotAnHttpHandler {
                    digest: digest.to_string(),
                    kind: component.kind(),
                })
            }
        };
        let instantiate_error = |e: wasmtime::Error| RuntimeError::Instantiate {
            digest: digest.to_string(),
            message: format!("{e:#}"),
        };
        let pre = self
            .inner
            .http_linker
            .instantiate_pre(http_component)
            .map_err(instantiate_error)?;
        let pre = ProxyPre::new(pre).map_err(instantiate_error)?;
        HttpHandler::new(digest, pre, spec, output)
    }
}

impl Inner {
    fn load_blocking(
        &self,
        digest: String,
        binary: BinaryKind,
        wasm: &[u8],
    ) -> Result<LoadedComponent, RuntimeError> {
        let actual = hex::encode(Sha256::digest(wasm));
        if actual != digest {
            return Err(RuntimeError::DigestMismatch {
                expected: digest,
                actual,
            });
        }
        if let Some(hit) = self.loaded_lock().get(&digest) {
            return Ok(hit.clone());
        }
        let loaded = self.load_uncached(digest.clone(), binary, wasm)?;
        self.loaded_lock().insert(digest, loaded.clone());
        Ok(loaded)
    }

    fn loaded_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, LoadedComponent>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load_uncached(
        &self,
        digest: String,
        binary: BinaryKind,
        wasm: &[u8],
    ) -> Result<LoadedComponent, RuntimeError> {
        let path = self.cache.path_for(&digest);
        if path.is_file() {
            match self.load_cached(&digest, binary, &path) {
                Ok(loaded) => {
                    tracing::debug!(%digest, path = %path.display(), "loaded precompiled code");
                    return Ok(loaded);
                }
                Err(e) => {
                    // A damaged or foreign file: drop it and compile again.
                    tracing::warn!(%digest, path = %path.display(), error = %format!("{e:#}"),
                        "discarding unusable precompiled code");
                    self.cache.discard(&digest);
                }
            }
        }

        self.compilations.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let compile_error = |e: wasmtime::Error| RuntimeError::Compile {
            digest: digest.clone(),
            message: format!("{e:#}"),
        };
        let (artifact, kind) = match binary {
            BinaryKind::CoreModule => {
                let module = Module::new(&self.engine, wasm).map_err(compile_error)?;
                let kind = component::detect_module_kind(&module);
                self.store_in_cache(&digest, module.serialize());
                (Artifact::Module(module), kind)
            }
            BinaryKind::Component => {
                let command = Component::new(&self.engine, wasm).map_err(compile_error)?;
                let kind = component::detect_kind(&command, &self.engine);
                let serialized = command.serialize();
                let http = if kind == ComponentKind::HttpHandler {
                    Some(self.http_copy(&serialized, wasm).map_err(compile_error)?)
                } else {
                    None
                };
                self.store_in_cache(&digest, serialized);
                (Artifact::Component { command, http }, kind)
            }
        };
        tracing::info!(%digest, ?kind, elapsed_ms = started.elapsed().as_millis() as u64, "compiled");
        Ok(LoadedComponent::new(digest, kind, artifact, false))
    }

    /// The HTTP engine's copy of a freshly compiled handler: loaded from the command
    /// engine's artifact (both engines compile identically, see `engine.rs`), compiled again
    /// only if serialization failed.
    fn http_copy(
        &self,
        serialized: &wasmtime::Result<Vec<u8>>,
        wasm: &[u8],
    ) -> wasmtime::Result<Component> {
        match serialized {
            // SAFETY: the bytes were produced by `Component::serialize` just now, in this
            // process, by an engine with the same compilation settings.
            Ok(bytes) => unsafe { Component::deserialize(&self.http_engine, bytes) },
            Err(_) => Component::new(&self.http_engine, wasm),
        }
    }

    fn load_cached(
        &self,
        digest: &str,
        binary: BinaryKind,
        path: &Path,
    ) -> wasmtime::Result<LoadedComponent> {
        // SAFETY (all three deserializations): the file was written by `DiskCache::store`
        // from `serialize` of an engine with the same compatibility hash (it is in the
        // directory name), and the cache directory is trusted (see
        // `RuntimeConfig::cache_dir`). wasmtime still checks the header and engine
        // compatibility and errors on a mismatch.
        let (artifact, kind) = match binary {
            BinaryKind::CoreModule => {
                let module = unsafe { Module::deserialize_file(&self.engine, path)? };
                let kind = component::detect_module_kind(&module);
                (Artifact::Module(module), kind)
            }
            BinaryKind::Component => {
                let command = unsafe { Component::deserialize_file(&self.engine, path)? };
                let kind = component::detect_kind(&command, &self.engine);
                let http = if kind == ComponentKind::HttpHandler {
                    Some(unsafe { Component::deserialize_file(&self.http_engine, path)? })
                } else {
                    None
                };
                (Artifact::Component { command, http }, kind)
            }
        };
        Ok(LoadedComponent::new(
            digest.to_string(),
            kind,
            artifact,
            true,
        ))
    }

    /// A cache that cannot be written (disk full, read-only SD card) costs a recompile on
    /// the next start, but must not stop the workload from running now.
    fn store_in_cache(&self, digest: &str, serialized: wasmtime::Result<Vec<u8>>) {
        match serialized {
            Ok(bytes) => {
                if let Err(e) = self.cache.store(digest, &bytes) {
                    tracing::warn!(%digest, error = %e, "cannot write precompiled code to the cache");
                }
            }
            Err(e) => {
                tracing::warn!(%digest, error = %format!("{e:#}"), "cannot serialize compiled code");
            }
        }
    }
}

/// Ticks the engines' epochs until the last `Runtime` clone is gone. Holding only a weak
/// reference lets the runtime (and its engine) be freed; the thread notices within a tick.
fn spawn_epoch_thread(inner: Weak<Inner>) -> Result<(), RuntimeError> {
    std::thread::Builder::new()
        .name("edge-runtime-epoch".to_string())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match inner.upgrade() {
                Some(inner) => {
                    inner.engine.increment_epoch();
                    inner.http_engine.increment_epoch();
                }
                None => break,
            }
        })
        .map(|_| ())
        .map_err(|source| RuntimeError::Io {
            context: "cannot start the epoch ticker thread".to_string(),
            source,
        })
}
