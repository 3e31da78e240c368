//! The agent's side of `edgectl port-forward`: the control plane opens a stream over this
//! agent's link naming a pod and a port; the agent connects to that port where the pod listens
//! on this node, says Ok, and then copies bytes between the stream and the connection.

use crate::Shared;
use edge_api::wire::{write_frame, ApiError, ErrorCode, Response};
use std::net::SocketAddr;
use tokio::net::TcpStream;

pub(crate) async fn serve(
    shared: &Shared,
    send: &mut quinn::SendStream,
    mut recv: quinn::RecvStream,
    namespace: &str,
    name: &str,
    port: u16,
) -> Result<(), ApiError> {
    if shared.supervisor.find(namespace, name).is_none() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("pod {namespace}/{name} is not running on this node"),
        ));
    }
    let addr = SocketAddr::new(shared.proxy.local_ip(), port);
    let stream = TcpStream::connect(addr).await.map_err(|e| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("pod {namespace}/{name}: nothing accepts connections on port {port} ({e}); is it the pod's containerPort?"),
        )
    })?;
    let _ = stream.set_nodelay(true);
    write_frame(send, &Response::Ok)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, e.to_string()))?;
    let (mut from_pod, mut to_pod) = stream.into_split();
    let upstream = async {
        let _ = tokio::io::copy(&mut recv, &mut to_pod).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut to_pod).await;
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut from_pod, send).await;
        // The pod is done sending: say so now, whatever the client still sends.
        let _ = send.finish();
    };
    tokio::join!(upstream, downstream);
    Ok(())
}
