//! Outgoing wasi:http requests to services by name, without DNS: `http://web/` from a pod in
//! `prod` goes to this node's loopback port for `prod/web`, where the proxy balances it like
//! any other request (see `edge_runtime::HttpRouter`).

use super::names::{pick_port, service_of, SERVICE_HOST};
use super::Proxy;
use std::net::SocketAddr;

pub(super) struct Router {
    proxy: Proxy,
    namespace: String,
}

impl Router {
    pub(super) fn new(proxy: Proxy, namespace: &str) -> Router {
        Router {
            proxy,
            namespace: namespace.to_string(),
        }
    }
}

impl edge_runtime::HttpRouter for Router {
    fn route(&self, host: &str, port: Option<u16>) -> Option<SocketAddr> {
        let (ns, name) = service_of(host, &self.namespace)?;
        let table = self.proxy.table();
        let routes: Vec<&super::table::Route> = table
            .service(&ns, &name)
            .into_iter()
            .map(|r| r.as_ref())
            .collect();
        let route = pick_port(&routes, port)?;
        let local = self.proxy.loopback_port(&route.key)?;
        Some(SocketAddr::from((SERVICE_HOST, local)))
    }
}
