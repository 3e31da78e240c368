//! Starting a control-plane server: PKI, QUIC endpoint, raft node, API server and the leader's
//! loops (scheduler, node lifecycle), plus the join token and the admin client config.

use crate::context::{ControlPlane, HaOptions, ServerOptions};
use crate::pki::ClusterPki;
use crate::raft::{QuicNetwork, RaftNode};
use edge_api::config::ClientConfigFile;
use edge_api::tls::JoinToken;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// The node id of the server that created the cluster; joiners get larger ones.
const FIRST_NODE_ID: u64 = 1;
/// How long `start` waits for a quorum before serving anyway (the rest happens in the
/// background): a server restarted alone must come up and wait for its peers.
const QUORUM_WAIT: Duration = Duration::from_secs(15);

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
    #[error(transparent)]
    Join(#[from] crate::raft::join::JoinError),
    #[error("{0}")]
    Identity(String),
}

pub struct RunningServer {
    pub control: Arc<ControlPlane>,
    pub endpoint: quinn::Endpoint,
    pub local_addr: SocketAddr,
    pub token: JoinToken,
    /// The admin client configuration for this cluster (also written to `admin.conf`).
    pub admin_config: ClientConfigFile,
    pub admin_config_path: PathBuf,
    /// The control loops (scheduler, controllers, node lifecycle, services, ...): stopped
    /// before raft on shutdown, so none of them asks a stopped raft for anything.
    loops: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
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
    let listen_err = |source| ServerError::Listen {
        addr: config.listen,
        source,
    };
    // Bound first: a joining server must tell the cluster its address, port included.
    let socket = std::net::UdpSocket::bind(config.listen).map_err(listen_err)?;
    let local_addr = socket.local_addr().map_err(listen_err)?;
    let ha = &config.options.ha;
    let advertise = ha
        .advertise
        .clone()
        .unwrap_or_else(|| dial_address(local_addr).to_string());
    let node_id = node_id(data, ha, &advertise).await?;
    let pki = Arc::new(ClusterPki::load_or_create(&data.join("pki"))?);
    let endpoint = quinn::Endpoint::new(
        pki.endpoint_config(),
        Some(pki.server_config()?),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(listen_err)?;
    let network = QuicNetwork::new(endpoint.clone(), pki.peer_client_config()?);
    let raft = RaftNode::start_with(
        node_id,
        advertise.clone(),
        &data.join("control.redb"),
        network,
        &ha.raft,
    )
    .await
    .map_err(|e| ServerError::Raft(e.to_string()))?;
    if node_id == FIRST_NODE_ID {
        raft.initialize_single()
            .await
            .map_err(|e| ServerError::Raft(e.to_string()))?;
    }
    let control = ControlPlane::new(Arc::new(raft), pki.clone(), config.options.clone());
    tokio::spawn(crate::apiserver::serve(control.clone(), endpoint.clone()));
    let mut loops = vec![tokio::spawn(crate::raft::join::promote_until_voter(
        control.raft.clone(),
    ))];
    ensure_namespaces(&control).await;
    loops.push(tokio::spawn(crate::scheduler::run::run(control.clone())));
    loops.push(tokio::spawn(crate::nodes::run(control.clone())));
    loops.extend(crate::controllers::spawn_all(control.clone()));
    loops.push(tokio::spawn(crate::services::run(control.clone())));

    let token = pki.join_token()?;
    let token_path = data.join("token");
    write_file(&token_path, &format!("{token}\n"))?;
    let admin_config_path = data.join("admin.conf");
    let admin_config = admin_config(
        &pki,
        &admin_config_path,
        &advertise,
        control.raft.member_addresses(),
    )?;
    loops.push(tokio::spawn(keep_admin_config(
        control.clone(),
        admin_config.clone(),
        admin_config_path.clone(),
    )));
    info!(addr = %local_addr, %advertise, node_id, data_dir = %data.display(), "control plane ready");
    Ok(RunningServer {
        control,
        endpoint,
        local_addr,
        token,
        admin_config,
        admin_config_path,
        loops: std::sync::Mutex::new(loops),
    })
}

/// Loads the admin config issued earlier, or issues one; the address follows the listen address.
fn admin_config(
    pki: &ClusterPki,
    path: &Path,
    addr: &str,
    servers: Vec<String>,
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
                servers: Vec::new(),
                certificate_authority: pki.ca_pem.clone(),
                client_certificate: cert,
                client_key: key,
            }
        }
    };
    cfg.server = addr.to_string();
    cfg.servers = servers;
    cfg.save(path)?;
    Ok(cfg)
}

/// This server's raft node id: from `server-id` in the data directory; on first start, 1 for
/// a new cluster, or the id the cluster hands out when joining (with its PKI).
async fn node_id(data: &Path, ha: &HaOptions, advertise: &str) -> Result<u64, ServerError> {
    let path = data.join("server-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return text.trim().parse().map_err(|_| {
                ServerError::Identity(format!(
                    "{} holds {:?}, not a server id; restore it or start with a fresh --data-dir",
                    path.display(),
                    text.trim()
                ))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(ServerError::Write { path, source }),
    }
    let id = match &ha.join {
        None => FIRST_NODE_ID,
        Some(target) => {
            if data.join("control.redb").exists() {
                return Err(ServerError::Identity(format!(
                    "{} already holds a cluster of its own; to join another, use a fresh --data-dir",
                    data.display()
                )));
            }
            info!(through = %target.address, %advertise, "joining the cluster");
            let join =
                crate::raft::join::request_join(&target.address, &target.token, advertise).await?;
            ClusterPki::install_joined(&data.join("pki"), &join, &target.token.secret)?;
            join.node_id
        }
    };
    // Written last: a crash before this repeats the join, which keeps the same id.
    write_file(&path, &format!("{id}\n"))?;
    Ok(id)
}

/// Creates the built-in namespaces once there is a quorum; waits a while for it, then goes on
/// trying in the background.
async fn ensure_namespaces(control: &Arc<ControlPlane>) {
    let c = control.clone();
    let task = tokio::spawn(async move {
        loop {
            match c.ensure_builtin_namespaces().await {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "built-in namespaces not ensured yet");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    if tokio::time::timeout(QUORUM_WAIT, task).await.is_err() {
        warn!("no raft quorum yet; serving anyway while the other servers come up");
    }
}

/// Rewrites `admin.conf` when the servers change, so a copy taken later knows all of them.
async fn keep_admin_config(control: Arc<ControlPlane>, mut cfg: ClientConfigFile, path: PathBuf) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let servers = control.raft.member_addresses();
        if servers != cfg.servers {
            cfg.servers = servers;
            if let Err(e) = cfg.save(&path) {
                warn!(error = %e, "cannot update the admin config");
            }
        }
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), ServerError> {
    std::fs::write(path, text).map_err(|source| ServerError::Write {
        path: path.to_path_buf(),
        source,
    })
}

impl RunningServer {
    /// Resolves once this server was removed from the cluster; it should then stop.
    pub async fn removed(&self) {
        self.control.raft.removed().await
    }

    pub async fn shutdown(&self) {
        let loops = std::mem::take(&mut *self.loops.lock().unwrap_or_else(|p| p.into_inner()));
        for task in &loops {
            task.abort();
        }
        for task in loops {
            let _ = task.await; // cancelled: it is stopped once this returns
        }
        self.endpoint.close(0u32.into(), b"server shutting down");
        self.control.raft.shutdown().await;
    }
}
