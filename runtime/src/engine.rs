//! The two wasmtime engines: on-demand for commands, pooling (copy-on-write, with fallback) for HTTP handlers.
//!
//! Both engines share one compilation configuration, so code compiled once (and cached on
//! disk) is valid for both: a component is compiled by the command engine and its serialized
//! artifact is loaded into the HTTP engine without a second compile. They differ only in
//! how instances are allocated, which is not part of the compatibility hash.
//!
//! Linear memories reserve [`HTTP_MEMORY_CAP_BYTES`] of address space each (instead of
//! wasmtime's 4 GiB default), which costs explicit bounds checks in compiled code but lets
//! a pool of 1,000 memories fit in the 512 GiB of a 39-bit address space (Raspberry Pi
//! kernels). Command memories may still grow beyond it: on-demand memories move when they
//! outgrow their reservation; pooled ones cannot, which is why HTTP limits are capped.

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::RuntimeError;

/// The largest linear memory an HTTP handler instance may have: the pool reserves this much
/// address space per slot. An `HttpSpec::memory_limit_bytes` above it is lowered to it.
pub const HTTP_MEMORY_CAP_BYTES: u64 = 256 * 1024 * 1024;

/// Unmapped space after each memory: catches small out-of-bounds offsets without checks.
const MEMORY_GUARD_BYTES: u64 = 16 * 1024 * 1024;

/// How many HTTP instances (requests in flight, across all handlers) the pool holds.
pub const POOL_INSTANCES: u32 = 1000;

/// A Rust wasip2 component holds a handful of core instances (the program, the preview1
/// adapter, shims) and a couple of tables; leave room for bigger toolchains' output. Core
/// instance and table slots are cheap; memories are what the address space budget is for
/// (one per component: the adapter shares the program's memory).
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
const TABLES_PER_COMPONENT: u32 = 4;

/// How much of a freed instance's dirty memory (linear memory, and tables apart) a pool slot
/// keeps for the next instance, where the kernel can list dirty pages (`PAGEMAP_SCAN`, Linux
/// 6.7+). Those pages are reset to the component's initial image with a copy instead of being
/// returned to the kernel with `madvise`, which avoids a TLB shootdown across CPUs per request
/// and the page faults of the next instance touching them again: about half of a small
/// handler's per-request CPU time. A slot keeps only pages its guest dirtied, at most this
/// much, so what stays resident after a burst is bounded by the burst's own concurrency
/// (at most [`POOL_INSTANCES`] slots), and an idle handler still holds no slot.
pub const KEEP_RESIDENT_BYTES: usize = 256 * 1024;

/// The environment variable that turns the pooling allocator off (`0`, `false`, `off`, `no`).
pub const POOLING_ENV: &str = "EDGE_POOLING";

/// How the HTTP engine allocates instances; the agent reports it in the Node status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocatorKind {
    /// Pre-reserved slots with copy-on-write memory images: instantiation is a few
    /// microseconds and an idle handler costs no memory.
    Pooling,
    /// Memory is mapped per instance (slower instantiation, same isolation), because the
    /// pool could not be created or was turned off.
    OnDemand { reason: String },
}

/// What the HTTP instance pool holds right now (live instances; the agent can report it as
/// node load). `capacity` is the number of component instances the pool can hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    pub capacity: u32,
    pub component_instances: u64,
    pub core_instances: u64,
    pub memories: usize,
    pub tables: usize,
    pub stacks: usize,
    /// Memory kept resident in free slots for their next instance (see
    /// [`KEEP_RESIDENT_BYTES`]), linear memories and tables together.
    pub idle_resident_bytes: usize,
}

pub(crate) fn pool_usage(engine: &Engine) -> Option<PoolUsage> {
    let metrics = engine.pooling_allocator_metrics()?;
    Some(PoolUsage {
        capacity: POOL_INSTANCES,
        component_instances: metrics.component_instances(),
        core_instances: metrics.core_instances(),
        memories: metrics.memories(),
        tables: metrics.tables(),
        stacks: metrics.stacks(),
        idle_resident_bytes: metrics.unused_memory_bytes_resident()
            + metrics.unused_table_bytes_resident(),
    })
}

/// What the embedder asks for; [`AllocatorPreference::from_env`] reads `EDGE_POOLING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorPreference {
    /// Try the pooling allocator, fall back to on-demand if the host cannot provide it.
    Pooling,
    /// Always allocate on demand (for hosts known to lack address space, or for tests).
    OnDemand,
}

impl AllocatorPreference {
    /// `EDGE_POOLING=0` (or `false`, `off`, `no`) means on-demand; anything else, pooling.
    pub fn from_env() -> AllocatorPreference {
        match std::env::var(POOLING_ENV) {
            Ok(value) if is_off(&value) => AllocatorPreference::OnDemand,
            _ => AllocatorPreference::Pooling,
        }
    }
}

fn is_off(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "0" | "false" | "off" | "no"
    )
}

/// The settings that decide what compiled code looks like; shared by both engines.
fn base_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    config.memory_reservation(HTTP_MEMORY_CAP_BYTES);
    config.memory_guard_size(MEMORY_GUARD_BYTES);
    // Data segments become a memory image mapped copy-on-write: instantiation does not copy
    // them and untouched pages are shared between all instances of a component.
    config.memory_init_cow(true);
    config
}

fn engine_error(what: &str, e: wasmtime::Error) -> RuntimeError {
    RuntimeError::Engine {
        message: format!("{what}: {e:#}"),
    }
}

/// The engine for commands (components and preview1 modules): on-demand allocation, so a
/// long-running command holds no pool slot and may grow its memory past the HTTP cap.
pub(crate) fn command_engine() -> Result<Engine, RuntimeError> {
    Engine::new(&base_config()).map_err(|e| engine_error("cannot create the command engine", e))
}

fn pooling_config() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(POOL_INSTANCES);
    pool.total_core_instances(POOL_INSTANCES * CORE_INSTANCES_PER_COMPONENT);
    pool.total_memories(POOL_INSTANCES);
    pool.total_tables(POOL_INSTANCES * TABLES_PER_COMPONENT);
    pool.total_stacks(POOL_INSTANCES);
    pool.max_memory_size(HTTP_MEMORY_CAP_BYTES as usize);
    // Without the dirty-page scan, keeping memory resident means resetting its first bytes
    // with memset whether the guest touched them or not (a Rust guest's stack and heap start
    // around 1 MiB in): no cheaper than madvise, so freed memory goes back to the kernel.
    let keep = if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes);
        KEEP_RESIDENT_BYTES
    } else {
        0
    };
    pool.linear_memory_keep_resident(keep);
    pool.table_keep_resident(keep);
    pool
}

/// The engine for HTTP handlers: the pooling allocator if the host can reserve the pool,
/// otherwise on-demand with the reason recorded.
pub(crate) fn http_engine(
    preference: AllocatorPreference,
) -> Result<(Engine, AllocatorKind), RuntimeError> {
    if preference == AllocatorPreference::OnDemand {
        let reason = format!("pooling allocator turned off ({POOLING_ENV}=0 or by the embedder)");
        tracing::info!(%reason, "HTTP handlers use on-demand instance allocation");
        let engine = Engine::new(&base_config())
            .map_err(|e| engine_error("cannot create the HTTP engine", e))?;
        return Ok((engine, AllocatorKind::OnDemand { reason }));
    }
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config()));
    match Engine::new(&config) {
        Ok(engine) => Ok((engine, AllocatorKind::Pooling)),
        Err(e) => {
            // Typical causes: a 39-bit address space with other large reservations, a small
            // 32-bit host, or `ulimit -v`. Everything still works, only instantiation is
            // slower and idle instances are not as cheap.
            let reason = format!("cannot reserve the instance pool: {e:#}");
            tracing::warn!(%reason, "falling back to on-demand instance allocation for HTTP handlers");
            let engine = Engine::new(&base_config())
                .map_err(|e| engine_error("cannot create the HTTP engine", e))?;
            Ok((engine, AllocatorKind::OnDemand { reason }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_switch_values() {
        for off in ["0", "false", "OFF", " no "] {
            assert!(is_off(off), "{off}");
        }
        for on in ["1", "true", "", "yes"] {
            assert!(!is_off(on), "{on}");
        }
    }

    #[test]
    fn both_engines_share_compiled_code() {
        // The disk cache and the compile-once path rely on equal compatibility hashes.
        let command = command_engine().unwrap();
        let (http, _) = http_engine(AllocatorPreference::OnDemand).unwrap();
        assert_eq!(
            crate::cache::engine_key(&command),
            crate::cache::engine_key(&http)
        );
    }
}
