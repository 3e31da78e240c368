//! Starting a control-plane server: PKI, QUIC endpoint, raft node, API server and the leader's
//! loops (scheduler, node lifecycle), plus the join token and the admin client config.

use crate::context::{ControlPlane, ServerOptions};
use crate::pki::ClusterPki;
use crate::raft::{QuicNetwork, RaftNode};
use edge_api::config::ClientConfigFile;
use edge_api::tls::JoinToken;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub options: ServerOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error("cannot listen on UDP {addr}: {source}; is another edged already running? choose another --listen")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("raft: {0}")]
    Raft(String),
    #[error("{0}")]
    Api(#[from] edge_api::wire::ApiError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] edge_api::config::ConfigError),
}

pub struct RunningServer {
    pub control: Arc<ControlPlane>,
    pub endpoint: quinn::Endpoint,
    pub local_addr: SocketAddr,
    pub token: JoinToken,
    /// The admin client configuration for this cluster (also written to `admin.conf`).
    pub admin_config: ClientConfigFile,
    pub admin_config_path: PathBuf,
}

/// The address clients should dial: a wildcard listen address is reached on loopback locally.
pub fn dial_address(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    let data = &config.data_dir;
    std::fs::create_dir_all(data).map_err(|source| ServerError::DataDir {
        path: data.clone(),
        source,
    })?;
    let pki = Arc::new(ClusterPki::load_or_create(&data.join("pki"))?);
    let endpoint =
        quinn::Endpoint::server(pki.server_config()?, config.listen).map_err(|source| {
            ServerError::Listen {
                addr: config.listen,
                source,
            }
        })?;
    let local_addr = endpoint
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
    let network = QuicNetwork::new(endpoint.clone(), pki.peer_client_config()?);
    let raft = RaftNode::start(
        1,
        dial_address(local_addr).to_string(),
        &data.join("control.redb"),
        network,
    )
    .await
    .map_err(|e| ServerError::Raft(e.to_string()))?;
    raft.initialize_single()
        .await
        .map_err(|e| ServerError::Raft(e.to_string()))?;
    let control = ControlPlane::new(Arc::new(raft), pki.clone(), config.options.clone());
    tokio::spawn(crate::apiserver::serve(control.clone(), endpoint.clone()));
    control
        .raft
        .wait_leader(Duration::from_secs(30))
        .await
        .map_err(|e| ServerError::Raft(e.to_string()))?;
    control.ensure_builtin_namespaces().await?;
    tokio::spawn(crate::scheduler::run::run(control.clone()));
    tokio::spawn(crate::nodes::run(control.clone()));

    let token = pki.join_token()?;
    let token_path = data.join("token");
    write_file(&token_path, &format!("{token}\n"))?;
    let admin_config_path = data.join("admin.conf");
    let admin_config = admin_config(&pki, &admin_config_path, dial_address(local_addr))?;
    info!(addr = %local_addr, data_dir = %data.display(), "control plane ready");
    Ok(RunningServer {
        control,
        endpoint,
        local_addr,
        token,
        admin_config,
        admin_config_path,
    })
}

/// Loads the admin config issued earlier, or issues one; the address follows the listen address.
fn admin_config(
    pki: &ClusterPki,
    path: &Path,
    addr: SocketAddr,
) -> Result<ClientConfigFile, ServerError> {
    let existing = ClientConfigFile::load(path)
        .ok()
        .filter(|c| c.certificate_authority == pki.ca_pem);
    let mut cfg = match existing {
        Some(c) => c,
        None => {
            let (cert, key) = pki.issue_admin("admin")?;
            ClientConfigFile {
                server: String::new(),
                certificate_authority: pki.ca_pem.clone(),
                client_certificate: cert,
                client_key: key,
            }
        }
    };
    cfg.server = addr.to_string();
    cfg.save(path)?;
    Ok(cfg)
}

fn write_file(path: &Path, text: &str) -> Result<(), ServerError> {
    std::fs::write(path, text).map_err(|source| ServerError::Write {
        path: path.to_path_buf(),
        source,
    })
}

impl RunningServer {
    pub async fn shutdown(&self) {
        self.endpoint.close(0u32.into(), b"server shutting down");
        self.control.raft.shutdown().await;
    }
}
