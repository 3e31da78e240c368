//! The proxy's I/O against real sockets on loopback: TCP and HTTP forwarding, moving on past a
//! dead endpoint, the client's address, PROXY v2, draining a removed endpoint, name routing.

use super::table::RouteKey;
use super::Proxy;
use edge_api::service::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ServicePort, ServiceType,
};
use edge_api::Service;
use edge_runtime::HttpRouter;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn service(name: &str, port_name: &str) -> Service {
    let mut s = Service::default();
    s.metadata.name = name.into();
    s.metadata.namespace = "default".into();
    s.spec.type_ = ServiceType::ClusterIP;
    s.spec.ports.push(ServicePort {
        name: port_name.into(),
        port: 80,
        ..Default::default()
    });
    s
}

/// Endpoints on another node ("b"), one subset per backend port.
fn endpoints(name: &str, port_name: &str, ports: &[u16]) -> Endpoints {
    let mut e = Endpoints::default();
    e.metadata.name = name.into();
    e.metadata.namespace = "default".into();
    e.subsets = ports
        .iter()
        .map(|p| EndpointSubset {
            addresses: vec![EndpointAddress {
                ip: "127.0.0.1".into(),
                node_name: "b".into(),
                target_ref: None,
            }],
            ports: vec![EndpointPort {
                name: port_name.into(),
                port: i32::from(*p),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    e
}

fn key(name: &str, port_name: &str) -> RouteKey {
    RouteKey {
        namespace: "default".into(),
        service: name.into(),
        port_name: port_name.into(),
        port: 80,
    }
}

/// A port nothing listens on.
async fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// Echoes every connection; with `proxy_header`, first reads a 28-byte PROXY v2 header and
/// echoes it back in front of the data.
async fn echo_server(proxy_header: bool) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if proxy_header {
                    let mut h = [0u8; 28];
                    if s.read_exact(&mut h).await.is_err() {
                        return;
                    }
                    let _ = s.write_all(&h).await;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// Answers each HTTP/1.1 request on a keep-alive connection with `<id> <x-forwarded-for>`.
async fn http_server(id: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 1024];
                    let n = match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        let xff = head
                            .lines()
                            .find_map(|l| l.strip_prefix("x-forwarded-for: "))
                            .unwrap_or("-")
                            .to_string();
                        let body = format!("{id} {xff}");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

fn loopback(proxy: &Proxy, k: &RouteKey) -> SocketAddr {
    SocketAddr::from((
        [127, 0, 0, 1],
        proxy.loopback_port(k).expect("loopback port"),
    ))
}

async fn roundtrip(addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(msg).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test]
async fn tcp_moves_past_a_dead_endpoint() {
    let proxy = Proxy::new("a", None);
    let (dead, live) = (dead_port().await, echo_server(false).await);
    proxy.replace_all(
        vec![service("echo", "tcp")],
        vec![endpoints("echo", "tcp", &[dead, live])],
    );
    let addr = loopback(&proxy, &key("echo", "tcp"));
    for i in 0..4 {
        let msg = format!("ping {i}");
        assert_eq!(roundtrip(addr, msg.as_bytes()).await, msg.as_bytes());
    }
}

#[tokio::test]
async fn proxy_protocol_v2_announces_the_client() {
    let proxy = Proxy::new("a", None);
    let live = echo_server(true).await;
    let mut svc = service("db", "");
    svc.metadata
        .annotations
        .insert(super::table::PROXY_PROTOCOL_ANNOTATION.into(), "v2".into());
    proxy.replace_all(vec![svc], vec![endpoints("db", "", &[live])]);
    let addr = loopback(&proxy, &key("db", ""));
    let mut s = TcpStream::connect(addr).await.unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(b"hi").await.unwrap();
    let mut got = [0u8; 30];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(&got[..28], super::proxyproto::header(me, addr).as_slice());
    assert_eq!(&got[28..], b"hi");
}

#[tokio::test]
async fn http_requests_are_balanced_and_carry_the_client_address() {
    let proxy = Proxy::new("a", None);
    let (one, two, dead) = (
        http_server("one").await,
        http_server("two").await,
        dead_port().await,
    );
    proxy.replace_all(
        vec![service("web", "http")],
        vec![endpoints("web", "http", &[one, dead, two])],
    );
    let addr = loopback(&proxy, &key("web", "http"));
    // One keep-alive connection: each request is balanced on its own.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        s.write_all(b"GET / HTTP/1.1\r\nhost: web\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let body = text
            .rsplit("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(
            body.ends_with(" 127.0.0.1"),
            "the backend sees the client: {body}"
        );
        seen.insert(body.split(' ').next().unwrap_or_default().to_string());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["one", "two"]);
}

#[tokio::test]
async fn a_removed_endpoint_drains_its_open_connections() {
    let proxy = Proxy::new("a", None);
    let live = echo_server(false).await;
    let svc = service("echo", "tcp");
    proxy.replace_all(vec![svc.clone()], vec![endpoints("echo", "tcp", &[live])]);
    let addr = loopback(&proxy, &key("echo", "tcp"));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"one").await.unwrap();
    let mut buf = [0u8; 3];
    s.read_exact(&mut buf).await.unwrap();
    proxy.replace_all(vec![svc], vec![endpoints("echo", "tcp", &[])]);
    // The backend sees end of input and closes; the client gets a clean end of stream.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "{read:?}");
}

#[tokio::test]
async fn services_are_routed_by_name_to_their_loopback_port() {
    let proxy = Proxy::new("a", None);
    let mut web = service("web", "http");
    web.metadata.namespace = "prod".into();
    proxy.replace_all(vec![web, service("api", "")], vec![]);
    let router = super::router::Router::new(proxy.clone(), "default");
    let web_key = RouteKey {
        namespace: "prod".into(),
        ..key("web", "http")
    };
    let web_addr = loopback(&proxy, &web_key);
    assert_eq!(router.route("web.prod", None), Some(web_addr));
    assert_eq!(
        router.route("web.prod.svc.cluster.local", Some(80)),
        Some(web_addr)
    );
    assert_eq!(
        router.route("web", None),
        None,
        "web is not in this namespace"
    );
    assert_eq!(router.route("web.prod", Some(8080)), None);
    assert_eq!(
        router.route("api", None),
        Some(loopback(&proxy, &key("api", "")))
    );
    let env = proxy.service_env("default");
    let port = proxy.loopback_port(&key("api", "")).unwrap().to_string();
    assert_eq!(
        env,
        [
            ("API_SERVICE_HOST".to_string(), "127.0.0.1".to_string()),
            ("API_SERVICE_PORT".to_string(), port.clone()),
        ]
    );
    assert_eq!(
        proxy.service_grants("default"),
        [format!("127.0.0.1:{port}")]
    );
    proxy.shutdown();
}

/// A wasi:http pod on this node is reached in process: the endpoint's port has no listener at
/// all, and the request is still answered, by the registered handler, with the client's address.
#[tokio::test]
async fn a_local_http_pod_gets_requests_without_a_socket() {
    use edge_runtime::{AllocatorPreference, HttpSpec, Runtime, RuntimeConfig};
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::with_allocator(
        RuntimeConfig {
            cache_dir: dir.path().join("cache"),
        },
        AllocatorPreference::OnDemand,
    )
    .unwrap();
    let wasm = crate::pod_tests::fixture("http-hello");
    let digest = edge_api::wire::blob_digest(&wasm);
    let hex = digest.trim_start_matches("sha256:");
    let component = runtime.load(hex, &wasm).await.unwrap();
    let handler = runtime
        .http_handler(
            &component,
            HttpSpec::default(),
            std::sync::Arc::new(crate::container::Discard),
        )
        .unwrap();

    let proxy = Proxy::new("a", None);
    let port = dead_port().await;
    let mut eps = endpoints("hello", "http", &[port]);
    eps.subsets[0].addresses[0].node_name = "a".into();
    proxy.replace_all(vec![service("hello", "http")], vec![eps]);
    let addr = loopback(&proxy, &key("hello", "http"));
    let request = b"GET / HTTP/1.1\r\nhost: hello\r\nconnection: close\r\n\r\n";

    let refused = String::from_utf8(roundtrip(addr, request).await).unwrap();
    assert!(
        refused.starts_with("HTTP/1.1 502"),
        "no handler, no listener: {refused}"
    );

    let registration = proxy.register_local(port, handler);
    let answer = String::from_utf8(roundtrip(addr, request).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("hello from edge http"), "{answer}");
    assert!(answer.contains("x-forwarded-for: 127.0.0.1"), "{answer}");
    drop(registration);
    let gone = String::from_utf8(roundtrip(addr, request).await).unwrap();
    assert!(gone.starts_with("HTTP/1.1 502"), "the pod stopped: {gone}");
}
