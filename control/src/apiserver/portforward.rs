//! `edgectl port-forward`: like logs, the server opens a stream back over the pod's node's own
//! agent link, waits for the agent to connect to the pod's port, then relays raw bytes both ways.

use super::logs::agent_unavailable;
use super::objects::internal;
use crate::context::ControlPlane;
use edge_api::wire::{read_frame, write_frame, ApiError, Request, Response, MAX_FRAME_BYTES};

pub async fn relay(
    cp: &ControlPlane,
    req: Request,
    send: &mut quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<(), ApiError> {
    let Request::PortForward {
        namespace, name, ..
    } = &req
    else {
        return Err(internal("port-forward relay called with another request"));
    };
    let (mut to_agent, mut from_agent, node) = super::logs::open_to_agent(
        cp,
        &req,
        namespace,
        name,
        "; wait until it runs",
        ", so its pods cannot be reached",
    )
    .await?;
    match read_frame::<_, Response>(&mut from_agent, MAX_FRAME_BYTES).await {
        Ok(Some(Response::Ok)) => {}
        Ok(Some(Response::Error(e))) => return Err(e),
        Ok(_) => {
            return Err(agent_unavailable(
                &node,
                &"the agent closed the stream without answering",
            ))
        }
        Err(e) => return Err(agent_unavailable(&node, &e)),
    }
    write_frame(send, &Response::Ok).await.map_err(internal)?;
    super::logs::pipe((&mut recv, &mut to_agent), (&mut from_agent, send)).await;
    Ok(())
}
