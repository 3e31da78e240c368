//! Volumes as WASI preopened directories: the only part of the host filesystem a guest can reach.

use std::path::PathBuf;

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::RuntimeError;

/// A host directory made visible to the guest at `guest` (for example `/data`).
///
/// `read_only` lets the guest read but not create, change or delete anything under it.
/// wasmtime-wasi resolves every path under the directory handle itself (cap-std), so `..`
/// and symlinks cannot lead outside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

/// Adds the preopens to a WASI context; a missing host directory is an error naming it.
pub(crate) fn apply(
    builder: &mut WasiCtxBuilder,
    preopens: &[Preopen],
    digest: &str,
) -> Result<(), RuntimeError> {
    for preopen in preopens {
        let error = |reason: String| RuntimeError::Preopen {
            digest: digest.to_string(),
            host: preopen.host.display().to_string(),
            guest: preopen.guest.clone(),
            reason,
        };
        if preopen.guest.is_empty() {
            return Err(error("the guest path is empty".to_string()));
        }
        let perms = if preopen.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        // HTTP handlers come here once per request: look at the path only when opening it
        // failed, to say why in plain words.
        builder
            .preopened_dir(&preopen.host, &preopen.guest, perms)
            .map_err(|e| {
                if preopen.host.is_dir() {
                    error(format!("{e:#}"))
                } else {
                    error("the host path is not a directory".to_string())
                }
            })?;
    }
    Ok(())
}
