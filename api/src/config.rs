//! The client configuration file (like a kubeconfig): server address, cluster CA, client identity.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConfigFile {
    /// `host:port` of a control-plane server.
    pub server: String,
    pub certificate_authority: String,
    pub client_certificate: String,
    pub client_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read client config {path}: {source}. Start a cluster with `edged server` (it writes this file), or point EDGECONFIG / --config at one")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("client config {path} is malformed: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write client config {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find a home directory for the default config path; set EDGECONFIG")]
    NoHome,
}

/// `$EDGECONFIG`, else `~/.edge/config`.
pub fn default_path() -> Result<PathBuf, ConfigError> {
    if let Some(p) = std::env::var_os("EDGECONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").ok_or(ConfigError::NoHome)?;
    Ok(PathBuf::from(home).join(".edge").join("config"))
}

impl ClientConfigFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_saphyr::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Writes the file readable by its owner only: it holds a private key.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let err = |source| ConfigError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let text =
            serde_saphyr::to_string(self).map_err(|e| err(std::io::Error::other(e.to_string())))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        }
        std::fs::rename(&tmp, path).map_err(err)
    }

    pub fn quic_config(&self, alpn: &[u8]) -> Result<quinn::ClientConfig, crate::tls::TlsError> {
        crate::tls::client_config(
            &self.certificate_authority,
            &self.client_certificate,
            &self.client_key,
            alpn,
        )
    }
}
