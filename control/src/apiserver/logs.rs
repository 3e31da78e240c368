//! `edgectl logs`: the server opens a stream back over the agent's own connection and relays
//! the agent's log chunks to the client, so agents never need to be reachable inbound.

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
    let conn = cp.agent_connection(&node).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("node {node:?} is not connected{disconnected}"),
        )
    })?;
    let (mut to_agent, from_agent) = conn
        .open_bi()
        .await
        .map_err(|e| agent_unavailable(&node, &e))?;
    write_frame(&mut to_agent, req)
        .await
        .map_err(|e| agent_unavailable(&node, &e))?;
    Ok((to_agent, from_agent, node))
}
