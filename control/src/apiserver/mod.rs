//! The API server: accepts QUIC connections, tells clients, agents, joiners and raft peers apart
//! by ALPN and certificate, and serves one request per bidirectional stream.

pub mod admission;
pub mod authz;
mod logs;
mod members;
pub use members::check_address;
pub mod objects;
mod portforward;
mod services;
mod update;
mod watch;
pub mod writes;

use crate::context::ControlPlane;
use crate::pki::{alpn_of, identity_of, Identity};
use authz::{authorize, Scope};
use edge_api::wire::{
    read_frame, write_frame, ApiError, ErrorCode, Request, Response, ALPN_AGENT, ALPN_JOIN,
    ALPN_RAFT, MAX_BLOB_BYTES, MAX_FRAME_BYTES,
};
use objects::internal;
use std::sync::Arc;
use tracing::{debug, info, warn};

/// Anonymous peers may only send a small join request.
const MAX_ANONYMOUS_FRAME: usize = 16 << 10;

/// Accepts connections until the endpoint is closed.
pub async fn serve(cp: Arc<ControlPlane>, endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        let cp = cp.clone();
        tokio::spawn(async move {
            match incoming.await {
                Ok(conn) => handle_connection(cp, conn).await,
                Err(e) => debug!(error = %e, "handshake failed"),
            }
        });
    }
}

async fn handle_connection(cp: Arc<ControlPlane>, conn: quinn::Connection) {
    let alpn = alpn_of(&conn).unwrap_or_default();
    let identity = identity_of(&conn);
    let remote = conn.remote_address();
    debug!(%remote, ?identity, alpn = %String::from_utf8_lossy(&alpn), "connection");
    if alpn == ALPN_RAFT {
        if !matches!(identity, Identity::Server { .. }) {
            conn.close(1u32.into(), b"raft peers need a server certificate");
            return;
        }
        while let Ok((send, recv)) = conn.accept_bi().await {
            let cp = cp.clone();
            tokio::spawn(async move {
                if let Some(relay) = crate::raft::serve_raft_stream(&cp.raft, send, recv).await {
                    logs::serve_agent_relay(&cp, relay).await;
                }
            });
        }
        return;
    }
    let anonymous_ok = alpn == ALPN_JOIN;
    if identity == Identity::Anonymous && !anonymous_ok {
        warn!(%remote, "refused a connection without a valid client certificate");
        conn.close(
            2u32.into(),
            b"a client certificate signed by the cluster CA is required",
        );
        return;
    }
    let agent_node = match (&identity, alpn == ALPN_AGENT) {
        (Identity::Node { name }, true) => {
            info!(node = %name, %remote, "agent connected");
            cp.register_agent(name, conn.clone());
            Some(name.clone())
        }
        _ => None,
    };
    while let Ok((send, recv)) = conn.accept_bi().await {
        let (cp, identity) = (cp.clone(), identity.clone());
        let max = if identity == Identity::Anonymous {
            MAX_ANONYMOUS_FRAME
        } else {
            MAX_FRAME_BYTES
        };
        tokio::spawn(async move { handle_stream(cp, identity, send, recv, max).await });
    }
    if let Some(node) = agent_node {
        info!(node = %node, "agent disconnected");
        cp.unregister_agent(&node, &conn);
    }
}

async fn handle_stream(
    cp: Arc<ControlPlane>,
    identity: Identity,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    max_frame: usize,
) {
    let request = match read_frame::<_, Request>(&mut recv, max_frame).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            let code = match e {
                edge_api::wire::WireError::FrameTooLarge { .. } => ErrorCode::TooLarge,
                _ => ErrorCode::BadRequest,
            };
            let _ = write_frame(
                &mut send,
                &Response::Error(ApiError::new(code, format!("bad request: {e}"))),
            )
            .await;
            let _ = send.finish();
            return;
        }
    };
    let result = match authorize(&identity, &request) {
        // The stream turns into a raw byte relay, so it needs both halves.
        Ok(_) if matches!(request, Request::PortForward { .. }) => {
            portforward::relay(&cp, request, &mut send, recv).await
        }
        Ok(scope) => dispatch(&cp, &identity, scope, request, &mut send).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        debug!(?identity, error = %e, "request failed");
        let _ = write_frame(&mut send, &Response::Error(e)).await;
    }
    let _ = send.finish();
}

/// Serves one authorized request, writing its response(s) to `send`.
async fn dispatch(
    cp: &Arc<ControlPlane>,
    identity: &Identity,
    scope: Scope,
    request: Request,
    send: &mut quinn::SendStream,
) -> Result<(), ApiError> {
    let response = match request {
        Request::Apply { object, dry_run } => {
            let (object, outcome) = cp.apply(&scope, object, dry_run).await?;
            Response::Applied { object, outcome }
        }
        Request::Create { object } => Response::Object(cp.create(object).await?),
        Request::Get { key } => Response::Object(cp.get(&scope, &key).await?),
        Request::List {
            kind,
            namespace,
            selector,
        } => {
            let (items, resource_version) = cp
                .list(&scope, kind, namespace.as_deref(), selector.as_deref())
                .await?;
            Response::List {
                items,
                resource_version,
            }
        }
        Request::Delete {
            key,
            force,
            propagation,
        } => Response::Deleted {
            object: cp.delete(&scope, &key, force, propagation).await?,
        },
        Request::Update { object } => Response::Object(cp.update(&scope, object).await?),
        Request::UpdateStatus { object } => {
            Response::Object(cp.update_status(&scope, object).await?)
        }
        Request::Watch {
            kind,
            namespace,
            selector,
            resource_version,
        } => {
            return watch::serve(cp, scope, kind, namespace, selector, resource_version, send)
                .await;
        }
        logs @ Request::Logs { .. } => return logs::proxy(cp, logs, send).await,
        Request::PortForward { .. } => return Err(internal("port-forward is relayed apart")),
        Request::PutBlob { data } => put_blob(cp, data).await?,
        Request::GetBlob { digest } => get_blob(cp, &scope, &digest).await?,
        Request::Heartbeat => {
            if let Identity::Node { name } = identity {
                cp.heard_from(name);
            }
            Response::Ok
        }
        Request::Join { secret, node_name } => join(cp, &secret, &node_name)?,
        Request::WhoAmI => whoami(identity),
        Request::Members => members::list(cp).await,
        Request::RemoveMember { id } => members::remove(cp, id).await?,
        Request::JoinServer { secret, address } => {
            members::join_server(cp, &secret, address).await?
        }
    };
    write_frame(send, &response).await.map_err(internal)
}

async fn put_blob(cp: &ControlPlane, data: Vec<u8>) -> Result<Response, ApiError> {
    if data.len() > MAX_BLOB_BYTES {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "component is {} bytes; the limit is {MAX_BLOB_BYTES}",
                data.len()
            ),
        ));
    }
    if !data.starts_with(b"\0asm") {
        return Err(ApiError::new(
            ErrorCode::Invalid,
            "the uploaded file is not WebAssembly (it does not start with \\0asm)",
        ));
    }
    let digest = edge_api::wire::blob_digest(&data);
    let size = data.len() as u64;
    // Blobs stay out of the raft log: stored here and pushed to the other servers, answered
    // once a majority has them. One found here was stored that way already.
    if !cp.raft.blobs.contains(&digest) {
        cp.raft
            .put_blob(digest.clone(), data)
            .await
            .map_err(objects::unavailable)?;
    }
    Ok(Response::BlobStored { digest, size })
}

async fn get_blob(cp: &ControlPlane, scope: &Scope, digest: &str) -> Result<Response, ApiError> {
    if let Scope::Node(_) = scope {
        let (pods, _) = cp.list(scope, edge_api::Kind::Pod, None, None).await?;
        let referenced = pods
            .iter()
            .filter_map(|o| o.as_pod())
            .any(|p| p.spec.containers.iter().any(|c| c.image == digest));
        if !referenced {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("no pod on this node uses {digest}"),
            ));
        }
    }
    match cp.raft.get_blob(digest).await.map_err(internal)? {
        Some(data) => Ok(Response::Blob { data }),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("component {digest} not found; upload it with edgectl apply"),
        )),
    }
}

fn join(cp: &ControlPlane, secret: &str, node_name: &str) -> Result<Response, ApiError> {
    use sha2::Digest;
    // Compare digests so the comparison time does not depend on where the secrets differ.
    let (a, b) = (
        sha2::Sha256::digest(secret.as_bytes()),
        sha2::Sha256::digest(cp.pki.join_secret.as_bytes()),
    );
    if a != b {
        warn!(node = node_name, "join refused: wrong token secret");
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the join token's secret is wrong",
        ));
    }
    edge_api::validation::dns1123_subdomain(node_name)
        .map_err(|m| ApiError::new(ErrorCode::Invalid, format!("node name: {m}")))?;
    let (cert_pem, key_pem) = cp.pki.issue_node(node_name).map_err(internal)?;
    info!(node = node_name, "issued a node certificate");
    Ok(Response::Joined {
        ca_pem: cp.pki.ca_pem.clone(),
        cert_pem,
        key_pem,
    })
}

fn whoami(identity: &Identity) -> Response {
    let (user, groups) = match identity {
        Identity::Admin { user } => (user.clone(), vec!["edge:admins".to_string()]),
        Identity::Node { name } => (format!("node:{name}"), vec!["edge:nodes".to_string()]),
        Identity::Server { name } => (name.clone(), vec!["edge:servers".to_string()]),
        Identity::Anonymous => ("anonymous".into(), vec![]),
    };
    Response::Identity { user, groups }
}
