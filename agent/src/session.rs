//! The agent's link to the control plane: dial out, register the node, heartbeat, keep the
//! assigned pods in sync (list then watch), report statuses, and serve log streams the server
//! opens back over the same connection. Reconnects with back-off; pods run on regardless.

use crate::{AgentError, Shared};
use edge_api::object::{Kind, Object, ObjectKey};
use edge_api::wire::{
    read_frame, write_frame, Client, ErrorCode, EventType, Request, Response, WireError,
};
use edge_api::Pod;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

pub async fn run(shared: Arc<Shared>) {
    let mut backoff = crate::reconnect::ReconnectBackoff::default();
    let mut dialer = crate::credentials::Dialer::default();
    loop {
        let quic = match shared.credentials.quic_config(edge_api::wire::ALPN_AGENT) {
            Ok(q) => q,
            Err(e) => {
                warn!(error = %e, "bad agent credentials");
                return;
            }
        };
        match dialer.connect(&shared, quic).await {
            Ok((client, server)) => {
                info!(%server, "connected to the control plane");
                backoff.reset();
                *shared.client.write().await = Some(client.clone());
                let reason = connected(&shared, &client).await;
                *shared.client.write().await = None;
                client
                    .connection()
                    .close(0u32.into(), b"agent reconnecting");
                warn!(error = %reason, "lost the control plane; pods keep running");
            }
            Err(e) => debug!(error = %e, "control plane unreachable"),
        }
        tokio::time::sleep(backoff.next_jittered()).await;
    }
}

/// Runs until the link fails; returns why.
async fn connected(shared: &Arc<Shared>, client: &Client) -> AgentError {
    if let Err(e) = register_node(shared, client).await {
        return e;
    }
    let services = match crate::proxy::prime(&shared.proxy, client).await {
        Ok(revisions) => revisions,
        Err(e) => return e,
    };
    let incoming = serve_incoming(shared.clone(), client.clone());
    tokio::select! {
        e = heartbeat(shared, client) => e,
        e = crate::proxy::follow(&shared.proxy, client, services) => e,
        e = sync_pods(shared, client) => e,
        e = incoming => e,
        e = client.connection().closed() => AgentError::Link(WireError::Connection(e)),
    }
}

async fn register_node(shared: &Shared, client: &Client) -> Result<(), AgentError> {
    let mut node = crate::node::node_object(&shared.config.node_name, &shared.config.labels);
    // Re-registering must not undo what operators set on the Node (taints, cordon, labels).
    let key = ObjectKey::new(Kind::Node, "", &shared.config.node_name);
    if let Ok(Response::Object(Object::Node(existing))) = client.call(&Request::Get { key }).await {
        node.spec = existing.spec;
        for (k, v) in existing.metadata.labels {
            node.metadata.labels.entry(k).or_insert(v);
        }
    }
    client
        .call(&Request::Apply {
            object: Object::Node(node.clone()),
            dry_run: false,
        })
        .await?;
    node.status = crate::node::node_status(shared.config.max_pods, &shared.allocator);
    let address = shared
        .proxy
        .advertised_address(&shared.credentials.server)
        .await;
    node.status.addresses = address.map(|a| a.to_string()).into_iter().collect();
    client
        .call(&Request::UpdateStatus {
            object: Object::Node(node),
        })
        .await?;
    Ok(())
}

async fn heartbeat(shared: &Shared, client: &Client) -> AgentError {
    loop {
        if let Err(e) = client.call(&Request::Heartbeat).await {
            return e.into();
        }
        tokio::time::sleep(shared.config.heartbeat_interval).await;
    }
}

/// List the pods bound here (the exact desired set), then follow changes; relist on expiry.
async fn sync_pods(shared: &Shared, client: &Client) -> AgentError {
    loop {
        let (pods, rv) = match list_pods(client).await {
            Ok(x) => x,
            Err(e) => return e,
        };
        if let Err(e) = shared.store.replace_all(&pods) {
            warn!(error = %e, "cannot persist assignments");
        }
        apply_authoritative_list(shared, client, &pods).await;
        let request = Request::Watch {
            kind: Kind::Pod,
            namespace: None,
            selector: None,
            resource_version: Some(rv),
        };
        let mut stream = match client.stream(&request).await {
            Ok(s) => s,
            Err(e) => return e.into(),
        };
        loop {
            match stream.next().await {
                Ok(Some(Response::Event(ev))) => {
                    let Object::Pod(pod) = ev.object else {
                        continue;
                    };
                    apply_event(shared, client, ev.event_type, pod).await;
                }
                Ok(Some(_)) => continue,
                Ok(None) => return AgentError::Protocol("the pod watch ended".into()),
                Err(WireError::Api(e)) if e.code == ErrorCode::Expired => break,
                Err(e) => return e.into(),
            }
        }
    }
}

/// The list of pods bound here is authoritative (fencing, see `fencing.rs`): run exactly
/// those, and send again statuses the control plane holds differently.
async fn apply_authoritative_list(shared: &Shared, client: &Client, pods: &[Pod]) {
    for pod in shared.supervisor.sync_from_control_plane(pods) {
        confirm_deletion(client, &pod).await;
    }
    shared.supervisor.resend_stale_statuses(pods);
}

async fn list_pods(client: &Client) -> Result<(Vec<Pod>, u64), AgentError> {
    match client
        .call(&Request::List {
            kind: Kind::Pod,
            namespace: None,
            selector: None,
        })
        .await?
    {
        Response::List {
            items,
            resource_version,
        } => {
            let pods = items.into_iter().filter_map(|o| match o {
                Object::Pod(p) => Some(p),
                _ => None,
            });
            Ok((pods.collect(), resource_version))
        }
        other => Err(AgentError::Protocol(format!("List answered {other:?}"))),
    }
}

async fn apply_event(shared: &Shared, client: &Client, event: EventType, pod: Pod) {
    match event {
        EventType::Added | EventType::Modified => {
            if let Err(e) = shared.store.put(&pod) {
                warn!(error = %e, "cannot persist assignment");
            }
            if let Some(p) = shared.supervisor.upsert(&pod) {
                confirm_deletion(client, &p).await;
            }
        }
        EventType::Deleted => shared.supervisor.remove(&pod.metadata.uid),
    }
}

/// The pod is stopped: tell the control plane it may now remove the object.
async fn confirm_deletion(client: &Client, pod: &Pod) {
    let key = ObjectKey::new(Kind::Pod, &pod.metadata.namespace, &pod.metadata.name);
    match client
        .call(&Request::Delete {
            key: key.clone(),
            force: false,
            propagation: Default::default(),
        })
        .await
    {
        Ok(_) => info!(pod = %key, "pod stopped and removed"),
        Err(WireError::Api(e)) if e.code == ErrorCode::NotFound => {}
        Err(e) => warn!(pod = %key, error = %e, "could not confirm deletion; will retry on resync"),
    }
}

/// Sends status updates, newest per pod, whenever connected; holds them while disconnected.
pub async fn report_statuses(
    shared: Arc<Shared>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Pod>,
) {
    let mut pending: HashMap<String, Pod> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            pod = rx.recv() => match pod {
                Some(p) => { pending.insert(p.metadata.uid.clone(), p); }
                None => return,
            },
            _ = tick.tick() => {}
        }
        while let Ok(p) = rx.try_recv() {
            pending.insert(p.metadata.uid.clone(), p);
        }
        let Some(client) = shared.client.read().await.clone() else {
            continue;
        };
        let batch: Vec<Pod> = pending.values().cloned().collect();
        for pod in batch {
            if pod.status.phase.is_terminal() {
                // Remember the outcome locally so a restart does not run a finished pod again.
                let _ = shared.store.put(&pod);
            }
            match client
                .call(&Request::UpdateStatus {
                    object: Object::Pod(pod.clone()),
                })
                .await
            {
                Ok(_) => {}
                Err(WireError::Api(e))
                    if matches!(e.code, ErrorCode::NotFound | ErrorCode::Forbidden) => {}
                Err(e) => {
                    debug!(error = %e, "status update failed; will retry");
                    break;
                }
            }
            if pending.get(&pod.metadata.uid) == Some(&pod) {
                pending.remove(&pod.metadata.uid);
            }
        }
    }
}

/// Streams the control plane opens to us: log requests.
async fn serve_incoming(shared: Arc<Shared>, client: Client) -> AgentError {
    loop {
        match client.connection().accept_bi().await {
            Ok((send, recv)) => {
                tokio::spawn(serve_stream(shared.clone(), send, recv));
            }
            Err(e) => return AgentError::Link(WireError::Connection(e)),
        }
    }
}

async fn serve_stream(
    shared: Arc<Shared>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let request = match read_frame::<_, Request>(&mut recv, 64 << 10).await {
        Ok(Some(r)) => r,
        _ => return,
    };
    let result = match request {
        Request::Logs {
            namespace,
            name,
            container,
            follow,
            tail_lines,
        } => {
            crate::logserve::serve(
                &shared,
                &mut send,
                &namespace,
                &name,
                container.as_deref(),
                follow,
                tail_lines,
            )
            .await
        }
        Request::PortForward {
            namespace,
            name,
            port,
        } => {
            crate::proxy::portforward::serve(&shared, &mut send, recv, &namespace, &name, port)
                .await
        }
        _ => Err(edge_api::wire::ApiError::new(
            ErrorCode::BadRequest,
            "agents serve only log and port-forward requests",
        )),
    };
    if let Err(e) = result {
        let _ = write_frame(&mut send, &Response::Error(e)).await;
    }
    let _ = send.finish();
}
