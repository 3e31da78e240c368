//! The runtime's typed errors: every variant names the component digest and what went wrong.

use crate::ComponentKind;

/// Errors from loading or running a component.
///
/// What a guest does while running (exit codes, traps, memory limit hits) is not an error:
/// it is reported as [`crate::ExitStatus`]. These errors are about the host side: bytes that
/// cannot be loaded, a cache that cannot be used, a component that does not fit.
#[derive(thiserror::Error, Debug)]
pub enum RuntimeError {
    /// The bytes do not start with the WebAssembly magic number `\0asm`.
    #[error("component {digest}: not WebAssembly: {reason}")]
    NotWasm { digest: String, reason: String },

    /// The digest is not a lowercase sha256 hex string (it is also used as a file name).
    #[error("invalid component digest {digest:?}: expected 64 lowercase hex characters (sha256)")]
    InvalidDigest { digest: String },

    /// The bytes do not hash to the digest they were announced with.
    #[error("component {expected}: the bytes hash to sha256 {actual}, not to the expected digest")]
    DigestMismatch { expected: String, actual: String },

    /// Validation or native compilation failed.
    #[error("component {digest}: failed to compile: {message}")]
    Compile { digest: String, message: String },

    /// Linking or instantiation failed for a reason that is not the guest's own doing
    /// (for example an import the host does not provide).
    #[error("component {digest}: failed to instantiate: {message}")]
    Instantiate { digest: String, message: String },

    /// `run_command` was asked to run a component that does not export `wasi:cli/run`.
    #[error(
        "component {digest}: not a command (it does not export wasi:cli/run; its kind is {kind:?})"
    )]
    NotACommand { digest: String, kind: ComponentKind },

    /// `http_handler` was asked to serve a component that does not export
    /// `wasi:http/incoming-handler`.
    #[error(
        "component {digest}: not an HTTP handler (it does not export \
         wasi:http/incoming-handler; its kind is {kind:?})"
    )]
    NotAnHttpHandler { digest: String, kind: ComponentKind },

    /// A network grant entry does not parse.
    #[error("invalid network grant {entry:?}: {reason}")]
    InvalidGrant { entry: String, reason: String },

    /// A volume could not be preopened for the guest.
    #[error("component {digest}: cannot preopen {host} as {guest}: {reason}")]
    Preopen {
        digest: String,
        host: String,
        guest: String,
        reason: String,
    },

    /// The on-disk precompile cache could not be set up.
    #[error("precompile cache at {path}: {message}")]
    Cache { path: String, message: String },

    /// The wasmtime engine or the WASI linker could not be set up.
    #[error("cannot set up the wasmtime engine: {message}")]
    Engine { message: String },

    /// An I/O error outside the cache (for example creating the epoch thread).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A blocking task (compilation) panicked or was cancelled; the host itself is fine.
    #[error("component {digest}: background task failed: {message}")]
    Internal { digest: String, message: String },
}
