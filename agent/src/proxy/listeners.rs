//! The listeners that match the routing table: a loopback port per service port (for pods) and
//! the node port of NodePort services (on this node's address). New routes get listeners,
//! removed ones lose them; each accepted connection is sniffed and handed to the TCP or the
//! HTTP path.

use super::detect::{self, Detected};
use super::table::{Mode, RouteKey, RoutingTable};
use super::Proxy;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Loopback,
    NodePort(u16),
}

struct Running {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
pub(super) struct Listeners {
    running: HashMap<(RouteKey, Kind), Running>,
    /// Binds that failed, so that a port kept busy is not warned about on every change.
    failed: HashSet<(RouteKey, Kind)>,
}

impl Listeners {
    pub(super) fn reconcile(&mut self, table: &RoutingTable, proxy: &Proxy) {
        let mut desired = HashSet::new();
        for r in table.routes() {
            desired.insert((r.key.clone(), Kind::Loopback));
            if let Some(np) = r.node_port {
                desired.insert((r.key.clone(), Kind::NodePort(np)));
            }
        }
        self.running.retain(|k, running| {
            let keep = desired.contains(k);
            if !keep {
                info!(route = %k.0, port = running.port, "service listener closed");
                running.task.abort();
            }
            keep
        });
        self.failed.retain(|k| desired.contains(k));
        for k in desired {
            if self.running.contains_key(&k) {
                continue;
            }
            let addr = match k.1 {
                Kind::Loopback => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
                Kind::NodePort(np) => SocketAddr::new(proxy.bind_ip(), np),
            };
            match bind(addr) {
                Ok(listener) => {
                    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
                    info!(route = %k.0, %addr, port, "service listener open");
                    self.failed.remove(&k);
                    let task = tokio::spawn(accept(listener, proxy.clone(), k.0.clone()));
                    self.running.insert(k, Running { port, task });
                }
                Err(e) => {
                    if self.failed.insert(k.clone()) {
                        warn!(route = %k.0, %addr, error = %e, "cannot listen for a service; will retry on the next change");
                    }
                }
            }
        }
    }

    pub(super) fn loopback_port(&self, key: &RouteKey) -> Option<u16> {
        self.running
            .get(&(key.clone(), Kind::Loopback))
            .map(|r| r.port)
    }

    pub(super) fn stop_all(&mut self) {
        for (_, r) in self.running.drain() {
            r.task.abort();
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

async fn accept(listener: TcpListener, proxy: Proxy, key: RouteKey) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(connection(proxy.clone(), key.clone(), stream, peer));
            }
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                warn!(route = %key, error = %e, "accepting a service connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(proxy: Proxy, key: RouteKey, stream: TcpStream, peer: SocketAddr) {
    let Some(route) = proxy.table().get(&key).cloned() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let (detected, proxy_protocol) = match route.mode {
        Mode::Opaque { proxy_protocol } => (Detected::Opaque, proxy_protocol),
        Mode::Detect => (detect::sniff(&stream).await, false),
    };
    debug!(route = %key, %peer, ?detected, "service connection");
    match detected {
        Detected::Http1 => super::http::serve(proxy, key, stream, peer).await,
        Detected::Opaque => super::tcp::forward(&proxy, route, stream, peer, proxy_protocol).await,
    }
}
