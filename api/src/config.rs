//! The client configuration file (like a kubeconfig): server addresses, cluster CA, client
//! identity; and dialing the first server that answers, so clients fail over between servers.

use crate::wire::{Client, WireError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// When dialing several servers, the next one is tried if the previous has not answered
/// within this long (both dials then race): a dead server costs a fraction of a second.
pub const DIAL_STAGGER: Duration = Duration::from_millis(700);

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConfigFile {
    /// `host:port` of a control-plane server, tried first.
    pub server: String,
    /// Every control-plane server (`host:port`), tried after `server` when it does not answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
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
        // A temporary name of this process's own: servers started together on one machine
        // may write the same config at once, and each rename must find its own file.
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            // Created private, never readable by others even for a moment: it holds a key.
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let written = options.open(&tmp).and_then(|mut f| {
            std::io::Write::write_all(&mut f, text.as_bytes())?;
            f.sync_all()
        });
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(e));
        }
        Ok(())
    }

    pub fn quic_config(&self, alpn: &[u8]) -> Result<quinn::ClientConfig, crate::tls::TlsError> {
        crate::tls::client_config(
            &self.certificate_authority,
            &self.client_certificate,
            &self.client_key,
            alpn,
        )
    }

    /// `server` first, then the other `servers`, without repeats.
    pub fn all_servers(&self) -> Vec<String> {
        dial_order(&self.server, &self.servers, 0)
    }

    /// Connects to the first server that answers, trying them in `all_servers` order.
    pub async fn connect_any(
        &self,
        quic: quinn::ClientConfig,
    ) -> Result<(Client, String), WireError> {
        connect_first(&self.all_servers(), quic).await
    }
}

/// `first`, then `others`, without repeats or empty entries, rotated to start at `start`
/// (modulo the length): a reconnecting client starts after the server that just failed.
pub fn dial_order(first: &str, others: &[String], start: usize) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for s in std::iter::once(first).chain(others.iter().map(String::as_str)) {
        if !s.is_empty() && !all.iter().any(|a| a == s) {
            all.push(s.to_string());
        }
    }
    if !all.is_empty() {
        let n = start % all.len();
        all.rotate_left(n);
    }
    all
}

/// Dials `servers` in order, starting the next dial when the previous has not connected within
/// `DIAL_STAGGER`; the first connection wins. Returns it and the address it reached, or the
/// last server's error.
pub async fn connect_first(
    servers: &[String],
    quic: quinn::ClientConfig,
) -> Result<(Client, String), WireError> {
    let Some(first) = servers.first() else {
        return Err(WireError::Connect {
            addr: String::new(),
            message: "no server address is configured".into(),
        });
    };
    // Dropping the set aborts the dials that lost.
    let mut dials = tokio::task::JoinSet::new();
    let mut pending = servers.iter();
    let mut last_err = None;
    loop {
        let next = pending.next();
        if let Some(addr) = next {
            let (addr, quic) = (addr.clone(), quic.clone());
            dials.spawn(async move { (Client::connect(&addr, quic).await, addr) });
        } else if dials.is_empty() {
            return Err(last_err.unwrap_or_else(|| WireError::Connect {
                addr: first.clone(),
                message: "no server answered".into(),
            }));
        }
        // Whichever comes first: a dial ends, or it is time to start the next one.
        tokio::select! {
            done = dials.join_next() => match done {
                Some(Ok((Ok(client), addr))) => return Ok((client, addr)),
                Some(Ok((Err(e), _))) => last_err = Some(e),
                Some(Err(_)) | None => {}
            },
            _ = tokio::time::sleep(DIAL_STAGGER), if next.is_some() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_order_dedups_and_rotates() {
        let others = vec!["b:1".to_string(), "a:1".to_string(), "c:1".to_string()];
        assert_eq!(dial_order("a:1", &others, 0), ["a:1", "b:1", "c:1"]);
        assert_eq!(dial_order("a:1", &others, 1), ["b:1", "c:1", "a:1"]);
        assert_eq!(dial_order("a:1", &others, 5), ["c:1", "a:1", "b:1"]);
        assert_eq!(dial_order("", &[], 3), Vec::<String>::new());
    }

    #[test]
    fn old_files_without_servers_still_load() {
        let dir = std::env::temp_dir().join(format!("edge-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("config");
        std::fs::write(
            &p,
            "server: 127.0.0.1:6443\ncertificateAuthority: ca\nclientCertificate: c\nclientKey: k\n",
        )
        .unwrap();
        let cfg = ClientConfigFile::load(&p).unwrap();
        assert!(cfg.servers.is_empty());
        assert_eq!(cfg.all_servers(), ["127.0.0.1:6443"]);
        let mut cfg = cfg;
        cfg.servers = vec!["127.0.0.1:6443".into(), "127.0.0.2:6443".into()];
        cfg.save(&p).unwrap();
        assert_eq!(ClientConfigFile::load(&p).unwrap(), cfg);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn nothing_to_dial_is_an_error() {
        let quic = quinn::ClientConfig::new(std::sync::Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(
                rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .unwrap()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
            .unwrap(),
        ));
        let Err(e) = connect_first(&[], quic).await else {
            panic!("connected to nothing")
        };
        assert!(e.to_string().contains("no server address"), "{e}");
    }
}
