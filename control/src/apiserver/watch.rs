//! Watch streams: an optional initial listing, then applied changes from the watch hub,
//! filtered by kind, namespace, label selector and the caller's scope.

use super::authz::Scope;
use super::objects::{internal, parse_selector};
use crate::context::ControlPlane;
use edge_api::object::{Kind, Object};
use edge_api::wire::{write_frame, ApiError, ErrorCode, EventType, Response, WatchEvent};
use tokio::sync::broadcast::error::RecvError;

pub async fn serve(
    cp: &ControlPlane,
    scope: Scope,
    kind: Kind,
    namespace: Option<String>,
    selector: Option<String>,
    resource_version: Option<u64>,
    send: &mut quinn::SendStream,
) -> Result<(), ApiError> {
    let selector = parse_selector(selector.as_deref())?;
    let wanted = |o: &Object| {
        o.kind() == kind
            && namespace
                .as_deref()
                .is_none_or(|ns| o.meta().namespace == ns)
            && scope.covers(o)
            && selector.matches(&o.meta().labels)
    };
    let hub = cp.raft.store.watch_hub();
    let (initial, from) = match resource_version {
        Some(rv) => (Vec::new(), rv),
        None => {
            let (items, rv) = cp.list(&scope, kind, namespace.as_deref(), None).await?;
            (items, rv)
        }
    };
    let mut sub = hub
        .subscribe_from(from)
        .map_err(|e| ApiError::new(ErrorCode::Expired, e.to_string()))?;
    for object in initial.into_iter().filter(|o| wanted(o)) {
        let resource_version = object.meta().resource_version;
        let ev = WatchEvent {
            event_type: EventType::Added,
            object,
            resource_version,
        };
        if write_frame(send, &Response::Event(ev)).await.is_err() {
            return Ok(());
        }
    }
    for ev in sub.backlog.drain(..) {
        if wanted(&ev.object)
            && write_frame(send, &Response::Event((*ev).clone()))
                .await
                .is_err()
        {
            return Ok(());
        }
    }
    loop {
        tokio::select! {
            ev = sub.live.recv() => match ev {
                Ok(ev) => {
                    if wanted(&ev.object) && write_frame(send, &Response::Event((*ev).clone())).await.is_err() {
                        return Ok(());
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    return Err(ApiError::new(ErrorCode::Expired, "the watcher fell too far behind; list again and watch from the list's resourceVersion"));
                }
                Err(RecvError::Closed) => return Err(internal("watch hub closed")),
            },
            // The client went away: stop instead of holding the subscription forever.
            _ = send.stopped() => return Ok(()),
        }
    }
}
