//! Keeps the proxy's view of Services and Endpoints current: list both, then follow both
//! watches, listing again when a watch expires. Runs while the agent is connected; when the
//! link drops, the proxy keeps routing with what it last knew.

use super::Proxy;
use crate::AgentError;
use edge_api::object::{Kind, Object};
use edge_api::wire::{Client, ErrorCode, EventType, Request, Response, WireError};

/// Where the watches resume: the revisions of the last lists of Services and Endpoints.
pub(crate) struct Revisions {
    services: u64,
    endpoints: u64,
}

/// Lists Services and Endpoints and hands them to the proxy. Done before the pods are synced,
/// so that a pod started from the control plane's list gets the services' variables.
pub(crate) async fn prime(proxy: &Proxy, client: &Client) -> Result<Revisions, AgentError> {
    let (services, services_rv) = list(client, Kind::Service).await?;
    let (endpoints, endpoints_rv) = list(client, Kind::Endpoints).await?;
    let services = services
        .into_iter()
        .filter_map(|o| match o {
            Object::Service(s) => Some(s),
            _ => None,
        })
        .collect();
    let endpoints = endpoints
        .into_iter()
        .filter_map(|o| match o {
            Object::Endpoints(e) => Some(e),
            _ => None,
        })
        .collect();
    proxy.replace_all(services, endpoints);
    Ok(Revisions {
        services: services_rv,
        endpoints: endpoints_rv,
    })
}

/// Follows both watches from `from`, listing again when one expires; returns why the link failed.
pub(crate) async fn follow(proxy: &Proxy, client: &Client, mut from: Revisions) -> AgentError {
    loop {
        let mut svc_watch = match watch(client, Kind::Service, from.services).await {
            Ok(s) => s,
            Err(e) => return e,
        };
        let mut ep_watch = match watch(client, Kind::Endpoints, from.endpoints).await {
            Ok(s) => s,
            Err(e) => return e,
        };
        loop {
            let next = tokio::select! {
                n = svc_watch.next() => n,
                n = ep_watch.next() => n,
            };
            match next {
                Ok(Some(Response::Event(ev))) => apply(proxy, ev.event_type, ev.object),
                Ok(Some(_)) => continue,
                Ok(None) => return AgentError::Protocol("a service watch ended".into()),
                Err(WireError::Api(e)) if e.code == ErrorCode::Expired => break,
                Err(e) => return e.into(),
            }
        }
        from = match prime(proxy, client).await {
            Ok(r) => r,
            Err(e) => return e,
        };
    }
}

fn apply(proxy: &Proxy, event: EventType, object: Object) {
    match (event, object) {
        (EventType::Deleted, Object::Service(s)) => proxy.remove_service(&s),
        (EventType::Deleted, Object::Endpoints(e)) => proxy.remove_endpoints(&e),
        (_, Object::Service(s)) => proxy.upsert_service(s),
        (_, Object::Endpoints(e)) => proxy.upsert_endpoints(e),
        _ => {}
    }
}

async fn list(client: &Client, kind: Kind) -> Result<(Vec<Object>, u64), AgentError> {
    let request = Request::List {
        kind,
        namespace: None,
        selector: None,
    };
    match client.call(&request).await? {
        Response::List {
            items,
            resource_version,
        } => Ok((items, resource_version)),
        other => Err(AgentError::Protocol(format!("List answered {other:?}"))),
    }
}

async fn watch(
    client: &Client,
    kind: Kind,
    resource_version: u64,
) -> Result<edge_api::wire::ResponseStream, AgentError> {
    let request = Request::Watch {
        kind,
        namespace: None,
        selector: None,
        resource_version: Some(resource_version),
    };
    Ok(client.stream(&request).await?)
}
