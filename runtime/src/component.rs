//! Loaded components and preview1 modules: the cheap-to-clone handle, what kind of workload it is, and byte-level checks.

use std::sync::Arc;

use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::RuntimeError;

/// What a component is for, judged from what it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComponentKind {
    /// Exports `wasi:cli/run` (a component) or `_start` (a WASI preview1 core module): a
    /// command run to completion (or forever) by `run_command`.
    Command,
    /// Exports `wasi:http/incoming-handler` (and not `wasi:cli/run`): serves HTTP requests.
    HttpHandler,
    /// Exports neither.
    Unknown,
}

/// The compiled code: a component (with its copy for the HTTP engine when it is a handler)
/// or a preview1 core module.
pub(crate) enum Artifact {
    Component {
        /// Compiled for the command engine; also what the disk cache holds.
        command: Component,
        /// The same code loaded into the HTTP engine (only for HTTP handlers).
        http: Option<Component>,
    },
    Module(Module),
}

/// A validated, compiled component (or preview1 core module). Cloning is cheap (reference
/// counted), so the agent can keep one per digest and start many instances from it.
#[derive(Clone)]
pub struct LoadedComponent {
    inner: Arc<Inner>,
}

struct Inner {
    digest: String,
    kind: ComponentKind,
    artifact: Artifact,
    from_cache: bool,
}

impl LoadedComponent {
    pub(crate) fn new(
        digest: String,
        kind: ComponentKind,
        artifact: Artifact,
        from_cache: bool,
    ) -> Self {
        LoadedComponent {
            inner: Arc::new(Inner {
                digest,
                kind,
                artifact,
                from_cache,
            }),
        }
    }

    /// The sha256 hex digest the component was loaded under.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// What the component exports: a command, an HTTP handler, or neither.
    pub fn kind(&self) -> ComponentKind {
        self.inner.kind
    }

    /// Whether this is a WASI preview1 core module rather than a component.
    pub fn is_core_module(&self) -> bool {
        matches!(self.inner.artifact, Artifact::Module(_))
    }

    /// Whether the native code came from the on-disk cache rather than a fresh compile.
    pub fn from_cache(&self) -> bool {
        self.inner.from_cache
    }

    /// The underlying wasmtime component (compiled for the command engine), for embedders
    /// that need more than this crate offers; `None` for a preview1 core module.
    pub fn component(&self) -> Option<&Component> {
        match &self.inner.artifact {
            Artifact::Component { command, .. } => Some(command),
            Artifact::Module(_) => None,
        }
    }

    pub(crate) fn artifact(&self) -> &Artifact {
        &self.inner.artifact
    }
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedComponent")
            .field("digest", &self.inner.digest)
            .field("kind", &self.inner.kind)
            .field("core_module", &self.is_core_module())
            .field("from_cache", &self.inner.from_cache)
            .finish()
    }
}

/// Matches an export name with or without a version: `wasi:cli/run` and `wasi:cli/run@0.2.6`.
fn is_interface(export: &str, interface: &str) -> bool {
    match export.strip_prefix(interface) {
        Some("") => true,
        Some(rest) => rest.starts_with('@'),
        None => false,
    }
}

/// A preview1 module is a command when it exports `_start` (reactors export `_initialize`).
pub(crate) fn detect_module_kind(module: &Module) -> ComponentKind {
    let has_start = module
        .exports()
        .any(|export| export.name() == "_start" && export.ty().func().is_some());
    if has_start {
        ComponentKind::Command
    } else {
        ComponentKind::Unknown
    }
}

/// Reads the component's export names from its type; no instantiation needed.
pub(crate) fn detect_kind(component: &Component, engine: &Engine) -> ComponentKind {
    let ty = component.component_type();
    let mut http = false;
    for (name, _) in ty.exports(engine) {
        // A command wins over HTTP: `wasi:cli/run` is the entry point the agent would call.
        if is_interface(name, "wasi:cli/run") {
            return ComponentKind::Command;
        }
        if is_interface(name, "wasi:http/incoming-handler") {
            http = true;
        }
    }
    if http {
        ComponentKind::HttpHandler
    } else {
        ComponentKind::Unknown
    }
}

/// What the 8-byte preamble says the bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryKind {
    CoreModule,
    Component,
}

const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Core modules: version 1, layer 0.
const CORE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
/// Components: layer 1 (the version field in front of it has changed between drafts).
const COMPONENT_LAYER: [u8; 2] = [0x01, 0x00];

/// Checks the preamble before handing bytes to the compiler, so that a wrong file (an
/// HTML error page, a tarball) gets a clear "not WebAssembly" instead of a parser error.
pub(crate) fn classify(digest: &str, wasm: &[u8]) -> Result<BinaryKind, RuntimeError> {
    let not_wasm = |reason: String| RuntimeError::NotWasm {
        digest: digest.to_string(),
        reason,
    };
    if wasm.len() < 8 {
        return Err(not_wasm(format!(
            "only {} bytes, shorter than the 8-byte WebAssembly preamble",
            wasm.len()
        )));
    }
    if &wasm[0..4] != WASM_MAGIC {
        return Err(not_wasm(format!(
            "the bytes start with {:02x?} instead of the magic number \\0asm (00 61 73 6d)",
            &wasm[0..4]
        )));
    }
    if wasm[4..8] == CORE_VERSION {
        Ok(BinaryKind::CoreModule)
    } else if wasm[6..8] == COMPONENT_LAYER {
        Ok(BinaryKind::Component)
    } else {
        Err(not_wasm(format!(
            "unknown WebAssembly version/layer {:02x?}",
            &wasm[4..8]
        )))
    }
}

/// A digest is used as a cache file name, so it must be exactly a sha256 hex string.
pub(crate) fn check_digest(digest: &str) -> Result<(), RuntimeError> {
    let ok = digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::InvalidDigest {
            digest: digest.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn interface_names_match_with_and_without_version() {
        assert!(is_interface("wasi:cli/run", "wasi:cli/run"));
        assert!(is_interface("wasi:cli/run@0.2.6", "wasi:cli/run"));
        assert!(!is_interface("wasi:cli/runner", "wasi:cli/run"));
        assert!(!is_interface("wasi:cli/environment@0.2.0", "wasi:cli/run"));
    }

    #[test]
    fn classify_preambles() {
        assert_eq!(
            classify(D, b"\0asm\x01\0\0\0").unwrap(),
            BinaryKind::CoreModule
        );
        assert_eq!(
            classify(D, b"\0asm\x0d\0\x01\0").unwrap(),
            BinaryKind::Component
        );
        assert!(matches!(
            classify(D, b"<html>hello</html>"),
            Err(RuntimeError::NotWasm { .. })
        ));
        assert!(matches!(
            classify(D, b"\0as"),
            Err(RuntimeError::NotWasm { .. })
        ));
    }

    #[test]
    fn digests_must_be_sha256_hex() {
        assert!(check_digest(D).is_ok());
        assert!(check_digest("../../etc/passwd").is_err());
        assert!(check_digest(&D.to_uppercase().replace('0', "A")).is_err());
        assert!(check_digest(&D[..63]).is_err());
    }
}
