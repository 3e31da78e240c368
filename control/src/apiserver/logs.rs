//! `edgectl logs`: the server opens a stream back over the agent's own connection and relays
//! the agent's log chunks to the client, so agents never need to be reachable inbound. An agent
//! connected to another server is reached through that server (`serve_agent_relay`).

use super::objects::internal;
use crate::context::ControlPlane;
use edge_api::object::{Kind, ObjectKey};
use edge_api::wire::{
    read_frame, write_frame, ApiError, ErrorCode, Request, Response, MAX_FRAME_BYTES,
};

pub async fn proxy(
    cp: &ControlPlane,
    req: Request,
    send: &mut quinn::SendStream,
) -> Result<(), ApiError> {
    let Request::Logs {
        namespace, name, ..
    } = &req
    else {
        return Err(internal("logs proxy called with another request"));
    };
    let (mut to_agent, mut from_agent, node) = open_to_agent(
        cp,
        &req,
        namespace,
        name,
        ", so it has no logs",
        "; its logs are kept on the node",
    )
    .await?;
    let _ = to_agent.finish();
    loop {
        tokio::select! {
            frame = read_frame::<_, Response>(&mut from_agent, MAX_FRAME_BYTES) => match frame {
                Ok(Some(Response::Error(e))) => return Err(e),
                Ok(Some(r)) => {
                    if write_frame(send, &r).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(agent_unavailable(&node, &e)),
            },
            _ = send.stopped() => return Ok(()),
        }
    }
}

/// A request's error on the way to or from the agent of node `node`.
pub(super) fn agent_unavailable(node: &str, e: &dyn std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Unavailable, format!("node {node:?}: {e}"))
}

/// Opens a stream back over the agent link of the node running pod `namespace/name` and sends
/// `req` on it: what logs and port-forward share. `unscheduled`/`disconnected` finish the
/// messages for a pod with no node yet and for a node that is not connected.
pub(super) async fn open_to_agent(
    cp: &ControlPlane,
    req: &Request,
    namespace: &str,
    name: &str,
    unscheduled: &str,
    disconnected: &str,
) -> Result<(quinn::SendStream, quinn::RecvStream, String), ApiError> {
    let key = ObjectKey::new(Kind::Pod, namespace, name);
    let pod = cp.get(&super::Scope::Everything, &key).await?;
    let node = pod
        .as_pod()
        .and_then(|p| p.spec.node_name.clone())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("{key} is not scheduled to a node yet{unscheduled}"),
            )
        })?;
    let Some(conn) = cp.agent_connection(&node) else {
        return match cp.raft.relay_to_agent(&node, req).await {
            Some((send, recv)) => Ok((send, recv, node)),
            None => Err(not_connected(&node, disconnected)),
        };
    };
    let (to_agent, from_agent) = send_to_agent(&conn, &node, req).await?;
    Ok((to_agent, from_agent, node))
}

/// Opens a stream on the agent connection `conn` of node `node` and sends it `req`.
async fn send_to_agent(
    conn: &quinn::Connection,
    node: &str,
    req: &Request,
) -> Result<(quinn::SendStream, quinn::RecvStream), ApiError> {
    let opened = async {
        let (mut to_agent, from_agent) = conn.open_bi().await?;
        write_frame(&mut to_agent, req).await?;
        Ok::<_, edge_api::wire::WireError>((to_agent, from_agent))
    };
    opened.await.map_err(|e| agent_unavailable(node, &e))
}

fn not_connected(node: &str, consequence: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        format!("node {node:?} is not connected to any server{consequence}"),
    )
}

/// Serves another server's request to reach an agent connected here: answers `Ok` once the
/// stream to the agent is open, then relays bytes both ways; never relays further.
pub async fn serve_agent_relay(cp: &ControlPlane, relay: crate::raft::AgentRelay) {
    let crate::raft::AgentRelay {
        node,
        request,
        mut send,
        mut recv,
    } = relay;
    let opened = match cp.agent_connection(&node) {
        None => Err(not_connected(&node, "")),
        Some(conn) => send_to_agent(&conn, &node, &request).await,
    };
    let (mut to_agent, mut from_agent) = match opened {
        Ok(streams) => streams,
        Err(e) => {
            let _ = write_frame(&mut send, &Response::Error(e)).await;
            let _ = send.finish();
            return;
        }
    };
    if write_frame(&mut send, &Response::Ok).await.is_ok() {
        pipe((&mut recv, &mut to_agent), (&mut from_agent, &mut send)).await;
    }
}

/// Copies each direction until it ends; each ends on its own (the pod may close while the
/// client still sends).
pub(super) async fn pipe(
    (up_from, up_to): (&mut quinn::RecvStream, &mut quinn::SendStream),
    (down_from, down_to): (&mut quinn::RecvStream, &mut quinn::SendStream),
) {
    let upstream = async {
        let _ = tokio::io::copy(up_from, up_to).await;
        let _ = up_to.finish();
    };
    let downstream = async {
        let _ = tokio::io::copy(down_from, down_to).await;
        let _ = down_to.finish();
    };
    tokio::join!(upstream, downstream);
}
