//! Per-instance limits and how a failed guest is classified: memory limiter, deadline trap, stack overflow, exit codes.

use std::time::Duration;

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::I32Exit;

/// Wraps wasmtime's `StoreLimits` to remember that a limit was hit: the guest then
/// typically aborts with a generic trap (`unreachable`), and only this record lets us
/// report the real reason.
pub(crate) struct Limiter {
    limits: StoreLimits,
    memory_limit: Option<usize>,
    /// The largest size the guest asked for and was refused.
    pub(crate) refused_memory: Option<usize>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // `StoreLimits` also refuses growth past `maximum` (the memory type's maximum, or
        // the pool's slot size), so that is attributed to the limit too.
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
    pub(crate) fn new(memory_limit_bytes: Option<u64>) -> Self {
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

/// The error a store's epoch callback raises when a request runs past its deadline.
#[derive(Debug)]
pub(crate) struct DeadlineReached {
    pub(crate) timeout: Duration,
}

impl std::fmt::Display for DeadlineReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the guest was still running at its {} ms deadline and was interrupted",
            self.timeout.as_millis()
        )
    }
}

impl std::error::Error for DeadlineReached {}

/// Why a guest stopped, before it is mapped to an exit status or an HTTP failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GuestEnd {
    Exited(i32),
    MemoryLimitExceeded(String),
    DeadlineExceeded(String),
    Trapped(String),
}

/// The error's causes joined on one line, without the wasm backtrace context (a long list
/// of frames: useful in the host log, too long for a pod status). For a trap this reads
/// like "wasm trap: wasm `unreachable` instruction executed".
pub(crate) fn short_message(error: &wasmtime::Error) -> String {
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

/// Whether an instantiation error is the guest's doing (a start function trapped or
/// exited, or its initial memory is above the limit) rather than the host's.
pub(crate) fn is_guest_failure(error: &wasmtime::Error, limiter: &Limiter) -> bool {
    error.downcast_ref::<I32Exit>().is_some()
        || error.downcast_ref::<Trap>().is_some()
        || error.downcast_ref::<DeadlineReached>().is_some()
        || limiter.refused_memory.is_some()
}

/// Turns a failed guest call into why it ended.
pub(crate) fn classify(error: &wasmtime::Error, limiter: &Limiter) -> GuestEnd {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return GuestEnd::Exited(exit.0);
    }
    if let Some(deadline) = error.downcast_ref::<DeadlineReached>() {
        return GuestEnd::DeadlineExceeded(deadline.to_string());
    }
    if let Some(message) = limiter.exceeded_message(error) {
        return GuestEnd::MemoryLimitExceeded(message);
    }
    let message = short_message(error);
    if error.downcast_ref::<Trap>() == Some(&Trap::StackOverflow) {
        // Say it plainly: wasmtime's wording ("call stack exhausted") is easy to miss.
        return GuestEnd::Trapped(format!("stack overflow: {message}"));
    }
    GuestEnd::Trapped(message)
}
