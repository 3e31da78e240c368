//! The agent's userspace service proxy (no iptables, no kernel modules). Driven by watches of
//! Services and Endpoints, it keeps one route per service port (see [`table`]) and listens
//! for it twice: on the service's node port on this node's address (every agent does, like a
//! routing mesh) and on a loopback port that pods get as `<NAME>_SERVICE_HOST/PORT`. Each
//! connection is sniffed: HTTP/1 is proxied per request with the client's address added, and
//! requests for a wasi:http pod on this node go straight to its handler in this process;
//! anything else is spliced as TCP. Backends are tried local first, round robin, moving on
//! when a connect fails. Small layers: pure decisions (`table`, `balance`, `detect`, `names`,
//! `proxyproto`) apart from the I/O (`listeners`, `tcp`, `http`, `pool`, `sync`).

mod balance;
mod detect;
mod http;
#[cfg(test)]
mod io_tests;
mod listeners;
mod names;
mod persist;
mod pool;
pub(crate) mod portforward;
mod proxyproto;
mod router;
mod sync;
pub(crate) mod table;
mod tcp;

pub(crate) use sync::{follow, prime};

use edge_api::service::{Endpoints, Service};
use edge_runtime::{HttpHandler, ServiceRoutes};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use table::{Route, RouteKey, RoutingTable};
use tokio::sync::watch;

/// A backend whose connect failed this recently is tried after the others.
const FAILURE_MEMORY: Duration = Duration::from_secs(10);

/// The service proxy of one agent; cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    /// Where this node's pods listen; `None` when they listen on every address.
    pod_ip: Option<IpAddr>,
    table: watch::Sender<Arc<RoutingTable>>,
    state: Mutex<State>,
    local: Mutex<HashMap<u16, (u64, HttpHandler)>>,
    pool: pool::Pool,
    counters: Mutex<HashMap<RouteKey, usize>>,
    failures: Mutex<HashMap<SocketAddr, Instant>>,
    /// Changed since last saved (see `persist`).
    dirty: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct State {
    services: BTreeMap<(String, String), Service>,
    endpoints: BTreeMap<(String, String), Endpoints>,
    listeners: listeners::Listeners,
    next_registration: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves the data consistent; a panic elsewhere must not stop routing.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn key_of(m: &edge_api::ObjectMeta) -> (String, String) {
    (m.namespace.clone(), m.name.clone())
}

impl Proxy {
    pub fn new(node: &str, pod_ip: Option<IpAddr>) -> Proxy {
        let pod_ip = pod_ip.filter(|ip| !ip.is_unspecified());
        let (table, _) = watch::channel(Arc::new(RoutingTable::default()));
        Proxy {
            inner: Arc::new(Inner {
                node: node.to_string(),
                pod_ip,
                table,
                state: Mutex::default(),
                local: Mutex::default(),
                pool: pool::Pool::default(),
                counters: Mutex::default(),
                failures: Mutex::default(),
                dirty: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Where this node's pods are reached from this node.
    pub fn local_ip(&self) -> IpAddr {
        self.inner.pod_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Where pods' and node ports' listeners bind: the node IP, or every address.
    pub fn bind_ip(&self) -> IpAddr {
        self.inner
            .pod_ip
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    /// The address other nodes reach this one at: the configured node IP, else the source
    /// address this machine uses toward the control plane (`server` is `host:port`), else
    /// (a control plane on this machine) toward the default route.
    pub async fn advertised_address(&self, server: &str) -> Option<IpAddr> {
        if let Some(ip) = self.inner.pod_ip {
            return Some(ip);
        }
        let target = tokio::net::lookup_host(server).await.ok()?.next()?;
        let toward_server = source_address(target).await;
        if toward_server.is_some_and(|ip| !ip.is_loopback()) {
            return toward_server;
        }
        // A documentation address (RFC 5737): only the route to it is looked up.
        let outward = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 9));
        source_address(outward).await.or(toward_server)
    }

    pub(crate) fn table(&self) -> Arc<RoutingTable> {
        self.inner.table.borrow().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<RoutingTable>> {
        self.inner.table.subscribe()
    }

    /// Replaces everything known (after a list).
    pub(crate) fn replace_all(&self, services: Vec<Service>, endpoints: Vec<Endpoints>) {
        let mut state = lock(&self.inner.state);
        state.services = services
            .into_iter()
            .map(|s| (key_of(&s.metadata), s))
            .collect();
        state.endpoints = endpoints
            .into_iter()
            .map(|e| (key_of(&e.metadata), e))
            .collect();
        self.rebuild(&mut state);
    }

    pub(crate) fn upsert_service(&self, s: Service) {
        let mut state = lock(&self.inner.state);
        state.services.insert(key_of(&s.metadata), s);
        self.rebuild(&mut state);
    }

    pub(crate) fn remove_service(&self, s: &Service) {
        let mut state = lock(&self.inner.state);
        state.services.remove(&key_of(&s.metadata));
        self.rebuild(&mut state);
    }

    pub(crate) fn upsert_endpoints(&self, e: Endpoints) {
        let mut state = lock(&self.inner.state);
        state.endpoints.insert(key_of(&e.metadata), e);
        self.rebuild(&mut state);
    }

    pub(crate) fn remove_endpoints(&self, e: &Endpoints) {
        let mut state = lock(&self.inner.state);
        state.endpoints.remove(&key_of(&e.metadata));
        self.rebuild(&mut state);
    }

    /// Builds the table, opens and closes listeners to match, then publishes it: open
    /// connections to backends that left drain, idle pooled connections to them close.
    fn rebuild(&self, state: &mut State) {
        let services: Vec<Service> = state.services.values().cloned().collect();
        let endpoints: Vec<Endpoints> = state.endpoints.values().cloned().collect();
        let table = Arc::new(RoutingTable::build(
            &services,
            &endpoints,
            &self.inner.node,
            self.local_ip(),
        ));
        // Published first, so that a connection on a listener opened just below finds its route.
        self.inner.table.send_replace(table.clone());
        state.listeners.reconcile(&table, self);
        let backends: HashSet<SocketAddr> = table
            .routes()
            .flat_map(|r| r.backends.iter().map(|b| b.addr))
            .collect();
        self.inner.pool.retain(&backends);
        let keys: HashSet<&RouteKey> = table.routes().map(|r| &r.key).collect();
        lock(&self.inner.counters).retain(|k, _| keys.contains(k));
        self.inner
            .dirty
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stops every listener (the agent is shutting down).
    pub(crate) fn shutdown(&self) {
        lock(&self.inner.state).listeners.stop_all();
    }

    /// The loopback port that serves `key` on this node.
    pub(crate) fn loopback_port(&self, key: &RouteKey) -> Option<u16> {
        lock(&self.inner.state).listeners.loopback_port(key)
    }

    /// The loopback port of each port of each service in `namespace`, services in name order.
    fn namespace_ports(&self, namespace: &str) -> Vec<Vec<(Arc<Route>, u16)>> {
        let table = self.table();
        let state = lock(&self.inner.state);
        state
            .services
            .keys()
            .filter(|(ns, _)| ns == namespace)
            .map(|(ns, name)| {
                table
                    .service(ns, name)
                    .into_iter()
                    .filter_map(|r| {
                        let port = state.listeners.loopback_port(&r.key)?;
                        Some((r.clone(), port))
                    })
                    .collect()
            })
            .collect()
    }

    /// `<NAME>_SERVICE_HOST/PORT` for the services of `namespace`, as a pod starting now gets them.
    pub(crate) fn service_env(&self, namespace: &str) -> Vec<(String, String)> {
        let ports = self.namespace_ports(namespace);
        let borrowed: Vec<Vec<(&Route, u16)>> = ports
            .iter()
            .map(|v| v.iter().map(|(r, p)| (r.as_ref(), *p)).collect())
            .collect();
        names::service_env(&borrowed)
    }

    /// Outbound grants for the loopback ports of `service_env`: handing a pod the variables
    /// hands it the right to use them.
    pub(crate) fn service_grants(&self, namespace: &str) -> Vec<String> {
        self.namespace_ports(namespace)
            .iter()
            .flatten()
            .map(|(_, port)| format!("{}:{port}", names::SERVICE_HOST))
            .collect()
    }

    /// Routes outgoing wasi:http requests of a pod in `namespace` to services by name.
    pub(crate) fn routes_for(&self, namespace: &str) -> ServiceRoutes {
        ServiceRoutes(Arc::new(router::Router::new(self.clone(), namespace)))
    }

    /// Makes a wasi:http pod's handler on `port` reachable in process until the registration
    /// is dropped (the pod stopped or restarted).
    pub(crate) fn register_local(&self, port: u16, handler: HttpHandler) -> LocalRegistration {
        let id = {
            let mut state = lock(&self.inner.state);
            state.next_registration += 1;
            state.next_registration
        };
        lock(&self.inner.local).insert(port, (id, handler));
        LocalRegistration {
            proxy: self.clone(),
            port,
            id,
        }
    }

    fn local_handler(&self, port: u16) -> Option<HttpHandler> {
        lock(&self.inner.local).get(&port).map(|(_, h)| h.clone())
    }

    /// The order in which to try the route's backends for one connection or request.
    fn order(&self, route: &Route, client: IpAddr) -> Vec<usize> {
        let now = Instant::now();
        let failures = lock(&self.inner.failures);
        let candidates: Vec<balance::Candidate> = route
            .backends
            .iter()
            .map(|b| balance::Candidate {
                local: b.local,
                failed_recently: failures
                    .get(&b.addr)
                    .is_some_and(|at| now.duration_since(*at) < FAILURE_MEMORY),
            })
            .collect();
        drop(failures);
        let counter = {
            let mut counters = lock(&self.inner.counters);
            let c = counters.entry(route.key.clone()).or_insert(0);
            *c = c.wrapping_add(1);
            *c
        };
        let affinity = route.client_ip_affinity.then_some(client);
        balance::order(&candidates, balance::start(counter, affinity))
    }

    fn note_failure(&self, addr: SocketAddr) {
        let now = Instant::now();
        let mut failures = lock(&self.inner.failures);
        failures.retain(|_, at| now.duration_since(*at) < FAILURE_MEMORY);
        failures.insert(addr, now);
    }

    fn note_success(&self, addr: SocketAddr) {
        let mut failures = lock(&self.inner.failures);
        if !failures.is_empty() {
            failures.remove(&addr);
        }
    }
}

/// The local address the kernel would send from toward `target`. Connecting a UDP socket
/// sends nothing; it only picks the route.
async fn source_address(target: SocketAddr) -> Option<IpAddr> {
    let bind: SocketAddr = if target.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(bind).await.ok()?;
    socket.connect(target).await.ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

/// The container with its probes aimed at `pod_ip` when they name no host: the kubelet probes
/// the pod's address, and here that is where the node's pods listen (127.0.0.1, the probes'
/// default, when they listen on every address).
pub(crate) fn probing_pod_address(c: &edge_api::Container, pod_ip: IpAddr) -> edge_api::Container {
    let mut c = c.clone();
    // The probes' own default.
    if pod_ip == IpAddr::V4(Ipv4Addr::LOCALHOST) {
        return c;
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        if let Some(h) = probe.http_get.as_mut().filter(|h| h.host.is_none()) {
            h.host = Some(pod_ip.to_string());
        }
        if let Some(t) = probe.tcp_socket.as_mut().filter(|t| t.host.is_none()) {
            t.host = Some(pod_ip.to_string());
        }
    }
    c
}

/// Keeps a local wasi:http handler reachable in process; dropping it withdraws the handler.
pub(crate) struct LocalRegistration {
    proxy: Proxy,
    port: u16,
    id: u64,
}

impl Drop for LocalRegistration {
    fn drop(&mut self) {
        let mut local = lock(&self.proxy.inner.local);
        if local.get(&self.port).is_some_and(|(id, _)| *id == self.id) {
            local.remove(&self.port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::workload::{HttpGetAction, Probe, TcpSocketAction};

    #[test]
    fn probes_without_a_host_go_to_the_pods_address() {
        let c = edge_api::Container {
            readiness_probe: Some(Probe {
                http_get: Some(HttpGetAction {
                    path: "/".into(),
                    port: 8080,
                    host: None,
                }),
                ..Default::default()
            }),
            liveness_probe: Some(Probe {
                tcp_socket: Some(TcpSocketAction {
                    port: 8080,
                    host: Some("10.0.0.9".into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let host = |c: &edge_api::Container| {
            let r = c.readiness_probe.as_ref().and_then(|p| p.http_get.as_ref());
            let l = c
                .liveness_probe
                .as_ref()
                .and_then(|p| p.tcp_socket.as_ref());
            (
                r.and_then(|h| h.host.clone()),
                l.and_then(|t| t.host.clone()),
            )
        };
        let at_node = probing_pod_address(&c, "127.0.0.2".parse().unwrap());
        assert_eq!(
            host(&at_node),
            (Some("127.0.0.2".into()), Some("10.0.0.9".into()))
        );
        let everywhere = probing_pod_address(&c, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(host(&everywhere), (None, Some("10.0.0.9".into())));
    }
}
