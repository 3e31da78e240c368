//! The agent's identity: on first start it joins with the token (pinning the cluster CA) and
//! keeps the node certificate it receives; later starts reuse it without the token.

use crate::AgentError;
use edge_api::config::ClientConfigFile;
use edge_api::tls::JoinToken;
use edge_api::wire::{Client, Request, Response};
use std::path::Path;
use tracing::info;

/// Loads the saved credentials, or joins the cluster with `token` to obtain them.
pub async fn obtain(
    data_dir: &Path,
    server: &str,
    token: Option<&str>,
    node_name: &str,
) -> Result<ClientConfigFile, AgentError> {
    let path = data_dir.join("agent.conf");
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
        certificate_authority: ca_pem,
        client_certificate: cert_pem,
        client_key: key_pem,
    };
    cfg.save(path).map_err(|e| AgentError::Io(e.to_string()))?;
    info!(node = node_name, server, "joined the cluster");
    Ok(cfg)
}
