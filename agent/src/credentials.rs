//! The agent's identity: on first start it joins with the token (pinning the cluster CA) and
//! keeps the node certificate it receives; later starts reuse it without the token. Beside it,
//! in the same file, the control-plane servers learned from the control plane, so the agent
//! fails over between them, even after a restart while its configured server is down.

use crate::{AgentError, Shared};
use edge_api::config::{connect_first, dial_order, ClientConfigFile};
use edge_api::tls::JoinToken;
use edge_api::wire::{Client, Request, Response, WireError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::{debug, info};

const FILE: &str = "agent.conf";

/// Chooses which control-plane server to dial: the configured one and every learned one,
/// beginning after the server whose link was lost last.
#[derive(Default)]
pub(crate) struct Dialer {
    start: usize,
}

impl Dialer {
    pub async fn connect(
        &mut self,
        shared: &Arc<Shared>,
        quic: quinn::ClientConfig,
    ) -> Result<(Client, String), WireError> {
        let learned = learned_servers(&shared.config.data_dir);
        let order = dial_order(&shared.credentials.server, &learned, self.start);
        let (client, server) = connect_first(&order, quic).await?;
        let all = dial_order(&shared.credentials.server, &learned, 0);
        self.start = all.iter().position(|s| *s == server).map_or(0, |i| i + 1);
        tokio::spawn(learn_servers(
            shared.config.data_dir.clone(),
            client.clone(),
        ));
        Ok((client, server))
    }
}

/// The servers learned earlier (none before the first connection).
fn learned_servers(data_dir: &Path) -> Vec<String> {
    ClientConfigFile::load(&data_dir.join(FILE))
        .map(|c| c.servers)
        .unwrap_or_default()
}

/// Asks the control plane for its servers and remembers them.
async fn learn_servers(data_dir: PathBuf, client: Client) {
    let members = match client.call(&Request::Members).await {
        Ok(Response::Members { members }) => members,
        Ok(_) => return,
        Err(e) => {
            debug!(error = %e, "cannot learn the control-plane servers");
            return;
        }
    };
    let servers: Vec<String> = members.into_iter().map(|m| m.address).collect();
    let path = data_dir.join(FILE);
    let Ok(mut cfg) = ClientConfigFile::load(&path) else {
        return;
    };
    if !servers.is_empty() && cfg.servers != servers {
        info!(?servers, "learned the control-plane servers");
        cfg.servers = servers;
        if let Err(e) = cfg.save(&path) {
            debug!(error = %e, "cannot save the control-plane servers");
        }
    }
}

/// Loads the saved credentials, or joins the cluster with `token` to obtain them.
pub async fn obtain(
    data_dir: &Path,
    server: &str,
    token: Option<&str>,
    node_name: &str,
) -> Result<ClientConfigFile, AgentError> {
    let path = data_dir.join(FILE);
    if let Ok(mut cfg) = ClientConfigFile::load(&path) {
        if let Some(t) = token {
            // A token for a different cluster means the operator re-pointed this node: rejoin.
            let t = JoinToken::parse(t).map_err(|e| AgentError::Token(e.to_string()))?;
            let same_ca =
                edge_api::tls::ca_hash(&cfg.certificate_authority).ok() == Some(t.ca_hash.clone());
            if !same_ca {
                return join(&path, server, &t, node_name).await;
            }
        }
        cfg.server = server.to_string();
        return Ok(cfg);
    }
    let token = token.ok_or_else(|| {
        AgentError::Token(format!(
            "this node has not joined yet ({} is missing): pass --token with the token `edged server` printed (also in its data directory's `token` file)",
            path.display()
        ))
    })?;
    let token = JoinToken::parse(token).map_err(|e| AgentError::Token(e.to_string()))?;
    join(&path, server, &token, node_name).await
}

async fn join(
    path: &Path,
    server: &str,
    token: &JoinToken,
    node_name: &str,
) -> Result<ClientConfigFile, AgentError> {
    let tls =
        edge_api::tls::join_client_config(token).map_err(|e| AgentError::Token(e.to_string()))?;
    let client = Client::connect(server, tls)
        .await
        .map_err(AgentError::Join)?;
    let request = Request::Join {
        secret: token.secret.clone(),
        node_name: node_name.to_string(),
    };
    let (ca_pem, cert_pem, key_pem) = match client.call(&request).await.map_err(AgentError::Join)? {
        Response::Joined {
            ca_pem,
            cert_pem,
            key_pem,
        } => (ca_pem, cert_pem, key_pem),
        other => return Err(AgentError::Protocol(format!("join answered {other:?}"))),
    };
    let cfg = ClientConfigFile {
        server: server.to_string(),
        servers: Vec::new(),
        certificate_authority: ca_pem,
        client_certificate: cert_pem,
        client_key: key_pem,
    };
    cfg.save(path).map_err(|e| AgentError::Io(e.to_string()))?;
    info!(node = node_name, server, "joined the cluster");
    Ok(cfg)
}
