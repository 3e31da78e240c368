//! The routing table, pure: from the cluster's Services and Endpoints to one route per TCP
//! service port, with its node port, how its connections are handled and its ready backends
//! (this node's marked local). Rebuilt whole on every change; routes are looked up by key.

use edge_api::service::{Endpoints, Protocol, Service, ServiceType, SessionAffinity};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The Service annotation that asks for a PROXY protocol v2 header on TCP connections.
pub const PROXY_PROTOCOL_ANNOTATION: &str = "edge.dev/proxy-protocol";

/// Identifies one service port across rebuilds (listeners and counters are kept by it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub namespace: String,
    pub service: String,
    pub port_name: String,
    pub port: u16,
}

impl std::fmt::Display for RouteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.service, self.port)
    }
}

/// How the proxy treats a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Look at the first bytes: HTTP/1 requests are proxied per request (with the client's
    /// address in `Forwarded`/`X-Forwarded-For`), anything else as opaque TCP.
    Detect,
    /// Opaque TCP from the first byte (a port named `tcp` or `tcp-*`, as Istio names them,
    /// for protocols where the server speaks first); optionally with a PROXY v2 header.
    Opaque { proxy_protocol: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub addr: SocketAddr,
    /// On this node: preferred, and reachable without leaving it.
    pub local: bool,
    /// `namespace/name` of the pod, for logs.
    pub pod: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub key: RouteKey,
    /// The port's position in the Service's spec (the first one is the service's main port).
    pub index: usize,
    pub node_port: Option<u16>,
    pub mode: Mode,
    pub client_ip_affinity: bool,
    pub backends: Vec<Backend>,
}

#[derive(Debug, Default)]
pub struct RoutingTable {
    routes: HashMap<RouteKey, Arc<Route>>,
}

impl RoutingTable {
    /// Builds the table. `node` is this node's name; `local_ip` is where this node's pods
    /// listen (loopback when they listen on every address).
    pub fn build(
        services: &[Service],
        endpoints: &[Endpoints],
        node: &str,
        local_ip: IpAddr,
    ) -> RoutingTable {
        let eps: HashMap<(&str, &str), &Endpoints> = endpoints
            .iter()
            .map(|e| {
                let m = &e.metadata;
                ((m.namespace.as_str(), m.name.as_str()), e)
            })
            .collect();
        let mut routes = HashMap::new();
        for svc in services {
            let m = &svc.metadata;
            let ep = eps.get(&(m.namespace.as_str(), m.name.as_str()));
            for (index, sp) in svc.spec.ports.iter().enumerate() {
                if sp.protocol != Protocol::Tcp {
                    continue;
                }
                let Ok(port) = u16::try_from(sp.port) else {
                    continue;
                };
                let key = RouteKey {
                    namespace: m.namespace.clone(),
                    service: m.name.clone(),
                    port_name: sp.name.clone(),
                    port,
                };
                let node_port = match svc.spec.type_ {
                    ServiceType::NodePort => sp.node_port.and_then(|p| u16::try_from(p).ok()),
                    ServiceType::ClusterIP => None,
                };
                let route = Route {
                    index,
                    mode: mode(svc, &sp.name),
                    client_ip_affinity: svc.spec.session_affinity == SessionAffinity::ClientIP,
                    backends: ep
                        .map(|e| backends(e, &sp.name, node, local_ip))
                        .unwrap_or_default(),
                    node_port,
                    key: key.clone(),
                };
                routes.insert(key, Arc::new(route));
            }
        }
        RoutingTable { routes }
    }

    pub fn get(&self, key: &RouteKey) -> Option<&Arc<Route>> {
        self.routes.get(key)
    }

    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.values()
    }

    /// The routes of one service, in the order of its spec.
    pub fn service(&self, namespace: &str, name: &str) -> Vec<&Arc<Route>> {
        let mut out: Vec<&Arc<Route>> = self
            .routes
            .values()
            .filter(|r| r.key.namespace == namespace && r.key.service == name)
            .collect();
        out.sort_by_key(|r| r.index);
        out
    }

    /// Whether `addr` is still a backend of the route (open connections to a removed one drain).
    pub fn has_backend(&self, key: &RouteKey, addr: SocketAddr) -> bool {
        self.routes
            .get(key)
            .is_some_and(|r| r.backends.iter().any(|b| b.addr == addr))
    }
}

fn mode(svc: &Service, port_name: &str) -> Mode {
    let proxy_protocol = svc
        .metadata
        .annotations
        .get(PROXY_PROTOCOL_ANNOTATION)
        .is_some_and(|v| v.eq_ignore_ascii_case("v2"));
    let opaque_name = port_name == "tcp" || port_name.starts_with("tcp-");
    if proxy_protocol || opaque_name {
        Mode::Opaque { proxy_protocol }
    } else {
        Mode::Detect
    }
}

/// The ready addresses serving the service port named `port_name` (Kubernetes matches
/// endpoint ports to service ports by name; a single unnamed port has the empty name).
fn backends(e: &Endpoints, port_name: &str, node: &str, local_ip: IpAddr) -> Vec<Backend> {
    let mut out = Vec::new();
    for subset in &e.subsets {
        let Some(port) = subset
            .ports
            .iter()
            .find(|p| p.name == port_name && p.protocol == Protocol::Tcp)
            .and_then(|p| u16::try_from(p.port).ok())
        else {
            continue;
        };
        for a in &subset.addresses {
            let local = !node.is_empty() && a.node_name == node;
            let ip = if local {
                local_ip
            } else {
                match a.ip.parse::<IpAddr>() {
                    Ok(ip) => ip,
                    Err(_) => continue,
                }
            };
            let pod = a
                .target_ref
                .as_ref()
                .map(|r| format!("{}/{}", r.namespace, r.name))
                .unwrap_or_else(|| a.ip.clone());
            out.push(Backend {
                addr: SocketAddr::new(ip, port),
                local,
                pod,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::service::{EndpointAddress, EndpointPort, EndpointSubset, ServicePort};

    fn service(name: &str, ports: &[(&str, i32)], node_port: bool) -> Service {
        let mut s = Service::default();
        s.metadata.name = name.into();
        s.metadata.namespace = "default".into();
        if node_port {
            s.spec.type_ = ServiceType::NodePort;
        }
        s.spec.ports = ports
            .iter()
            .enumerate()
            .map(|(i, (n, p))| ServicePort {
                name: n.to_string(),
                port: *p,
                node_port: node_port.then_some(30000 + i as i32),
                ..Default::default()
            })
            .collect();
        s
    }

    fn address(ip: &str, node: &str, pod: &str) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            node_name: node.into(),
            target_ref: Some(edge_api::service::ObjectReference {
                kind: "Pod".into(),
                namespace: "default".into(),
                name: pod.into(),
                uid: String::new(),
            }),
        }
    }

    fn endpoints(name: &str, subsets: Vec<EndpointSubset>) -> Endpoints {
        let mut e = Endpoints::default();
        e.metadata.name = name.into();
        e.metadata.namespace = "default".into();
        e.subsets = subsets;
        e
    }

    fn key(service: &str, name: &str, port: u16) -> RouteKey {
        RouteKey {
            namespace: "default".into(),
            service: service.into(),
            port_name: name.into(),
            port,
        }
    }

    #[test]
    fn routes_pair_service_ports_with_ready_endpoints_by_name() {
        let web = service("web", &[("http", 80), ("tcp-admin", 9000)], true);
        let mut udp = service("dns", &[("", 53)], false);
        udp.spec.ports[0].protocol = Protocol::Udp;
        let lonely = service("lonely", &[("", 80)], false);
        let eps = endpoints(
            "web",
            vec![EndpointSubset {
                addresses: vec![
                    address("10.0.0.1", "a", "w1"),
                    address("10.0.0.2", "b", "w2"),
                    address("not-an-ip", "c", "w3"),
                ],
                not_ready_addresses: vec![address("10.0.0.1", "a", "nr")],
                ports: vec![
                    EndpointPort {
                        name: "http".into(),
                        port: 8080,
                        protocol: Protocol::Tcp,
                    },
                    EndpointPort {
                        name: "tcp-admin".into(),
                        port: 9090,
                        protocol: Protocol::Tcp,
                    },
                ],
            }],
        );
        let local: IpAddr = "127.0.0.2".parse().unwrap();
        let t = RoutingTable::build(&[web, udp, lonely], &[eps], "a", local);
        let http = t.get(&key("web", "http", 80)).unwrap();
        assert_eq!(http.node_port, Some(30000));
        assert_eq!(http.mode, Mode::Detect);
        let got: Vec<(String, bool, &str)> = http
            .backends
            .iter()
            .map(|b| (b.addr.to_string(), b.local, b.pod.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("127.0.0.2:8080".to_string(), true, "default/w1"),
                ("10.0.0.2:8080".to_string(), false, "default/w2"),
            ],
            "local pods are reached where they listen; not-ready ones and bad addresses are left out"
        );
        let admin = t.get(&key("web", "tcp-admin", 9000)).unwrap();
        assert_eq!(
            admin.mode,
            Mode::Opaque {
                proxy_protocol: false
            }
        );
        assert_eq!(admin.backends[1].addr.to_string(), "10.0.0.2:9090");
        assert!(t.get(&key("dns", "", 53)).is_none(), "UDP is not proxied");
        let lonely = t.get(&key("lonely", "", 80)).unwrap();
        assert!(lonely.backends.is_empty() && lonely.node_port.is_none());
        assert!(t.has_backend(&key("web", "http", 80), "10.0.0.2:8080".parse().unwrap()));
        assert!(!t.has_backend(&key("web", "http", 80), "10.0.0.9:8080".parse().unwrap()));
        assert_eq!(t.service("default", "web").len(), 2);
    }

    #[test]
    fn the_proxy_protocol_annotation_makes_a_port_opaque() {
        let mut s = service("db", &[("", 5432)], false);
        s.metadata
            .annotations
            .insert(PROXY_PROTOCOL_ANNOTATION.into(), "v2".into());
        let t = RoutingTable::build(&[s], &[], "a", "127.0.0.1".parse().unwrap());
        assert_eq!(
            t.get(&key("db", "", 5432)).unwrap().mode,
            Mode::Opaque {
                proxy_protocol: true
            }
        );
    }
}
