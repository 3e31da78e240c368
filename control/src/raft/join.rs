//! The joining side of `edged server --join`: ask an existing server (with the join token, which
//! pins the cluster CA) for a node id and a server certificate, and, once running, have the
//! leader promote this server from learner to voter.

use super::RaftNode;
use edge_api::tls::JoinToken;
use edge_api::wire::{Client, ErrorCode, Request, Response, ServerJoin, WireError};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// How long a join keeps retrying a cluster that answers "unavailable" (an election).
const JOIN_PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the join token is unusable: {0}")]
    Token(String),
    #[error("joining through {address}: {source}")]
    Wire { address: String, source: WireError },
    #[error(
        "the server at {0} answered the join with something else; are both edged the same version?"
    )]
    Protocol(String),
}

/// Asks the server at `address` to admit this server, reachable at `advertise`.
pub async fn request_join(
    address: &str,
    token: &JoinToken,
    advertise: &str,
) -> Result<ServerJoin, JoinError> {
    let tls =
        edge_api::tls::join_client_config(token).map_err(|e| JoinError::Token(e.to_string()))?;
    let request = Request::JoinServer {
        secret: token.secret.clone(),
        address: advertise.to_string(),
    };
    let wire = |source| JoinError::Wire {
        address: address.to_string(),
        source,
    };
    let deadline = tokio::time::Instant::now() + JOIN_PATIENCE;
    loop {
        let answer = match Client::connect(address, tls.clone()).await {
            Ok(client) => client.call(&request).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(Response::JoinedServer(join)) => return Ok(join),
            Ok(_) => return Err(JoinError::Protocol(address.to_string())),
            Err(WireError::Api(e))
                if e.code == ErrorCode::Unavailable && tokio::time::Instant::now() < deadline =>
            {
                warn!(error = %e, "the cluster cannot admit a server right now; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(wire(e)),
        }
    }
}

/// Until this server is a voter, asks the leader to promote it. Stops if it finds itself
/// removed from the membership (an operator's decision that must not be undone).
pub async fn promote_until_voter(node: Arc<RaftNode>) {
    let mut delay = Duration::from_millis(500);
    loop {
        if node.is_voter() {
            return;
        }
        if node.in_membership() == Some(false) {
            warn!(
                id = node.node_id,
                "this server is not a member of the cluster (removed?); not asking to be promoted"
            );
            return;
        }
        match node.promote(node.node_id).await {
            Ok(()) => {
                info!(id = node.node_id, "this server is now a voter");
                return;
            }
            Err(e) => {
                info!(id = node.node_id, error = %e, "not promoted yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}
