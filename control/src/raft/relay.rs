//! Reaching an agent connected to another server: logs and port-forward work through any
//! server, wherever the pod's node happens to be connected (`RaftRpc::ToAgent`).

use super::types::NodeId;
use super::{QuicNetwork, RaftNode};
use edge_api::wire::{read_frame, Request, Response, MAX_FRAME_BYTES};
use std::time::Duration;

/// How long one server may take to say whether it has the agent.
const ASK_EACH: Duration = Duration::from_secs(3);

impl RaftNode {
    /// Streams to `node`'s agent with `request` sent on them, through the first other member
    /// that has the agent connected; None if none has (or none answered in time).
    pub async fn relay_to_agent(
        &self,
        node: &str,
        request: &Request,
    ) -> Option<(quinn::SendStream, quinn::RecvStream)> {
        for (id, addr) in self.peers() {
            let ask = async {
                let (send, mut recv) = self
                    .network
                    .open_agent_relay(id, &addr, node, request)
                    .await?;
                match read_frame::<_, Response>(&mut recv, MAX_FRAME_BYTES).await {
                    Ok(Some(Response::Ok)) => Ok((send, recv)),
                    Ok(Some(Response::Error(e))) => Err(e.to_string()),
                    Ok(_) => Err("closed the stream without answering".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            };
            match tokio::time::timeout(ASK_EACH, ask).await {
                Ok(Ok(streams)) => return Some(streams),
                Ok(Err(e)) => {
                    tracing::debug!(server = id, %node, error = %e, "no agent relay there")
                }
                Err(_) => tracing::debug!(server = id, %node, "no answer about an agent relay"),
            }
        }
        None
    }
}

impl QuicNetwork {
    /// Asks server `target` to relay `request` to `node`'s agent (see `RaftRpc::ToAgent`):
    /// the streams carry the agent's side once the callee answered `Response::Ok`, which is
    /// left for the caller to read.
    pub(crate) async fn open_agent_relay(
        &self,
        target: NodeId,
        addr: &str,
        node: &str,
        request: &edge_api::wire::Request,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), String> {
        let peer = self.peer(target, addr);
        let rpc = super::RaftRpc::ToAgent {
            node: node.to_string(),
            request: request.clone(),
        };
        let frame = edge_api::wire::encode_frame(&rpc).map_err(|e| e.to_string())?;
        let conn = peer.connection().await.map_err(|e| e.to_string())?;
        let (mut send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(&frame).await.map_err(|e| e.to_string())?;
        Ok((send, recv))
    }
}
