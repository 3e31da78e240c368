//! Network capability grants: which ports a guest may listen on and which hosts it may reach (TCP and outgoing wasi:http); default deny.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::WasiCtxBuilder;

use crate::output::RateLimitedSink;
use crate::RuntimeError;

/// What a guest may do on the network. The default grants nothing.
///
/// - `listen`: TCP ports the guest may listen on (any local address).
/// - `outbound`: where it may connect, as `"host:port"` or `"host:*"`; the host is an IP
///   address (`10.0.0.5`, `[fd00::1]`), a name (`api.example.com`) or `*`; `"*"` alone
///   allows everything. Names are matched by name for outgoing wasi:http requests and by
///   resolving them for raw TCP connects. Name lookups from the guest are allowed only when
///   some entry is a name or a wildcard. UDP is never allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkGrants {
    pub listen: Vec<u16>,
    pub outbound: Vec<String>,
    /// Names the host routes itself for outgoing wasi:http requests (the cluster's services).
    pub services: Option<ServiceRoutes>,
}

/// Host-side routing of outgoing plain-HTTP wasi:http requests to names the host knows, with
/// no DNS lookup: the node agent's service proxy implements it. A routed request needs no
/// outbound grant (a service is part of the cluster, as in Kubernetes without a NetworkPolicy).
pub trait HttpRouter: Send + Sync {
    /// Where a request for `host` (as the guest wrote it) goes; `port` is `None` when the URL
    /// has none. `None` when `host` is not a route: the request is checked against the grants.
    fn route(&self, host: &str, port: Option<u16>) -> Option<SocketAddr>;
}

/// A shared [`HttpRouter`] in [`NetworkGrants`]; two are equal when they are the same router.
#[derive(Clone)]
pub struct ServiceRoutes(pub Arc<dyn HttpRouter>);

impl std::fmt::Debug for ServiceRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceRoutes(..)")
    }
}

impl PartialEq for ServiceRoutes {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ServiceRoutes {}

/// Sends `request` to `to` instead of the host in its URL; the `host` header the guest's URL
/// gave stays, so the service sees the name it was called by.
pub(crate) fn retarget<B>(mut request: http::Request<B>, to: SocketAddr) -> http::Request<B> {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    if let Ok(uri) = http::Uri::builder()
        .scheme(http::uri::Scheme::HTTP)
        .authority(to.to_string())
        .path_and_query(path)
        .build()
    {
        *request.uri_mut() = uri;
    }
    request
}

impl NetworkGrants {
    /// Checks every outbound entry parses, so that callers can reject a bad spec early.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        for entry in &self.outbound {
            Rule::parse(entry)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Ip(IpAddr),
    /// Lowercase DNS name.
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    host: HostPattern,
    /// `None` for any port.
    port: Option<u16>,
}

impl Rule {
    fn parse(entry: &str) -> Result<Rule, RuntimeError> {
        let invalid = |reason: &str| RuntimeError::InvalidGrant {
            entry: entry.to_string(),
            reason: reason.to_string(),
        };
        let entry = entry.trim();
        if entry == "*" {
            return Ok(Rule {
                host: HostPattern::Any,
                port: None,
            });
        }
        // `[v6]:port`, otherwise the last colon separates host and port.
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| invalid("missing ']' after an IPv6 address"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| invalid("expected host:port or host:*"))?;
            (host, port)
        } else {
            entry
                .rsplit_once(':')
                .ok_or_else(|| invalid("expected host:port or host:*"))?
        };
        let port = match port {
            "*" => None,
            p => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| invalid("the port must be 1-65535 or *"))?,
            ),
        };
        let host = if host == "*" {
            HostPattern::Any
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            HostPattern::Ip(ip.to_canonical())
        } else {
            let name = host.to_ascii_lowercase();
            let valid = !name.is_empty()
                && name.len() <= 253
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !valid {
                return Err(invalid("the host must be an IP address, a DNS name or *"));
            }
            HostPattern::Name(name)
        };
        Ok(Rule { host, port })
    }

    fn port_matches(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }
}

/// The parsed grants of one instance (or of one HTTP handler), with where denials are told.
pub(crate) struct NetworkPolicy {
    listen: Vec<u16>,
    rules: Vec<Rule>,
    services: Option<ServiceRoutes>,
    output: Arc<RateLimitedSink>,
    digest: String,
}

impl NetworkPolicy {
    pub(crate) fn new(
        grants: &NetworkGrants,
        output: Arc<RateLimitedSink>,
        digest: &str,
    ) -> Result<Arc<NetworkPolicy>, RuntimeError> {
        let rules = grants
            .outbound
            .iter()
            .map(|entry| Rule::parse(entry))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(NetworkPolicy {
            listen: grants.listen.clone(),
            rules,
            services: grants.services.clone(),
            output,
            digest: digest.to_string(),
        }))
    }

    /// Installs the socket checks on a WASI context builder.
    pub(crate) fn apply(self: &Arc<Self>, builder: &mut WasiCtxBuilder) {
        let needs_lookup = self
            .rules
            .iter()
            .any(|r| matches!(r.host, HostPattern::Any | HostPattern::Name(_)));
        builder.allow_ip_name_lookup(needs_lookup);
        builder.allow_udp(false);
        // TCP itself stays available so that each attempt reaches the check below and a
        // denial is logged with its destination.
        builder.allow_tcp(true);
        let policy = Arc::clone(self);
        builder.socket_addr_check(move |addr, use_| {
            let policy = Arc::clone(&policy);
            Box::pin(async move { policy.check_socket(addr, use_).await })
        });
    }

    async fn check_socket(&self, addr: SocketAddr, use_: SocketAddrUse) -> bool {
        match use_ {
            // Binding port 0 is how every outgoing connect starts (the implicit bind); an
            // ephemeral port cannot be listened on unless granted (see TcpListen).
            SocketAddrUse::TcpBind if addr.port() == 0 => true,
            SocketAddrUse::TcpBind | SocketAddrUse::TcpListen => {
                let allowed = self.listen.contains(&addr.port());
                if !allowed {
                    self.deny("tcp listen", &addr.to_string());
                }
                allowed
            }
            // Only reachable on a listener that passed the checks above.
            SocketAddrUse::TcpAccept => true,
            SocketAddrUse::TcpConnect => {
                let allowed = self.connect_allowed(addr).await;
                if !allowed {
                    self.deny("tcp connect", &addr.to_string());
                }
                allowed
            }
            SocketAddrUse::UdpBind | SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => {
                self.deny("udp", &addr.to_string());
                false
            }
        }
    }

    async fn connect_allowed(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        let mut names = Vec::new();
        for rule in self.rules.iter().filter(|r| r.port_matches(addr.port())) {
            match &rule.host {
                HostPattern::Any => return true,
                HostPattern::Ip(granted) if *granted == ip => return true,
                HostPattern::Ip(_) => {}
                HostPattern::Name(name) => names.push(name.as_str()),
            }
        }
        // A granted name allows the addresses it resolves to right now.
        for name in names {
            if let Ok(resolved) = tokio::net::lookup_host((name, addr.port())).await {
                if resolved.into_iter().any(|a| a.ip().to_canonical() == ip) {
                    return true;
                }
            }
        }
        false
    }

    /// Where the host routes an outgoing plain-HTTP request for `host`, if it names a service.
    pub(crate) fn service_route(&self, host: &str, port: Option<u16>) -> Option<SocketAddr> {
        self.services.as_ref()?.0.route(host, port)
    }

    /// Whether an outgoing wasi:http request to `host` (as the guest wrote it, brackets
    /// removed for IPv6) and `port` is granted; logs a denial.
    pub(crate) fn http_allowed(&self, host: &str, port: u16) -> bool {
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()
            .map(|ip| ip.to_canonical());
        let allowed = self
            .rules
            .iter()
            .filter(|r| r.port_matches(port))
            .any(|rule| match &rule.host {
                HostPattern::Any => true,
                HostPattern::Ip(granted) => ip == Some(*granted),
                HostPattern::Name(name) => ip.is_none() && name.eq_ignore_ascii_case(host),
            });
        if !allowed {
            self.deny("http request", &format!("{host}:{port}"));
        }
        allowed
    }

    /// Every denial is visible twice: in the host log for the operator, and in the pod's
    /// own stderr so that `edgectl logs` shows why a connection failed. Both share the
    /// notice budget (a few per second), so a guest retrying in a loop cannot flood either.
    fn deny(&self, what: &str, destination: &str) {
        let told = self.output.notice(&format!(
            "[edge: network access denied: {what} to {destination} is not in the pod's network grants]"
        ));
        if told {
            tracing::warn!(
                component = %self.digest,
                access = what,
                destination,
                "network access denied: not in the pod's network grants"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(entry: &str) -> Rule {
        Rule::parse(entry).unwrap_or_else(|e| panic!("{entry}: {e}"))
    }

    #[test]
    fn parses_entries() {
        assert_eq!(rule("*").host, HostPattern::Any);
        assert_eq!(rule("*").port, None);
        assert_eq!(rule("*:443").port, Some(443));
        assert_eq!(
            rule("10.0.0.5:80").host,
            HostPattern::Ip("10.0.0.5".parse().unwrap())
        );
        assert_eq!(
            rule("[fd00::1]:*").host,
            HostPattern::Ip("fd00::1".parse().unwrap())
        );
        assert_eq!(
            rule("API.example.com:8080").host,
            HostPattern::Name("api.example.com".into())
        );
        for bad in [
            "example.com",
            "example.com:0",
            "example.com:70000",
            "[::1:80",
            "exa mple.com:80",
            ":80",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    struct Null;
    impl crate::OutputSink for Null {
        fn write(&self, _: crate::OutputStream, _: &[u8]) {}
    }

    fn policy(listen: &[u16], outbound: &[&str]) -> Arc<NetworkPolicy> {
        let grants = NetworkGrants {
            listen: listen.to_vec(),
            outbound: outbound.iter().map(|s| s.to_string()).collect(),
            ..NetworkGrants::default()
        };
        NetworkPolicy::new(&grants, RateLimitedSink::new(Arc::new(Null), None), "test").unwrap()
    }

    #[tokio::test]
    async fn default_denies_everything_but_ephemeral_binds() {
        let p = policy(&[], &[]);
        let remote: SocketAddr = "93.184.216.34:80".parse().unwrap();
        assert!(!p.check_socket(remote, SocketAddrUse::TcpConnect).await);
        assert!(
            p.check_socket("0.0.0.0:0".parse().unwrap(), SocketAddrUse::TcpBind)
                .await
        );
        assert!(
            !p.check_socket("0.0.0.0:0".parse().unwrap(), SocketAddrUse::TcpListen)
                .await
        );
        assert!(
            !p.check_socket("0.0.0.0:8080".parse().unwrap(), SocketAddrUse::TcpBind)
                .await
        );
        assert!(!p.check_socket(remote, SocketAddrUse::UdpSend).await);
        assert!(!p.http_allowed("example.com", 80));
    }

    #[tokio::test]
    async fn grants_allow_exactly_what_they_say() {
        let p = policy(
            &[8080],
            &["10.0.0.5:80", "localhost:*", "api.example.com:443"],
        );
        let listen: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(p.check_socket(listen, SocketAddrUse::TcpBind).await);
        assert!(p.check_socket(listen, SocketAddrUse::TcpListen).await);
        let granted: SocketAddr = "10.0.0.5:80".parse().unwrap();
        assert!(p.check_socket(granted, SocketAddrUse::TcpConnect).await);
        let other_port: SocketAddr = "10.0.0.5:81".parse().unwrap();
        assert!(!p.check_socket(other_port, SocketAddrUse::TcpConnect).await);
        // `localhost:*` resolves to the loopback address.
        let loopback: SocketAddr = "127.0.0.1:9999".parse().unwrap();
        assert!(p.check_socket(loopback, SocketAddrUse::TcpConnect).await);

        assert!(p.http_allowed("10.0.0.5", 80));
        assert!(p.http_allowed("API.example.com", 443));
        assert!(!p.http_allowed("api.example.com", 80));
        assert!(!p.http_allowed("evil.example.com", 443));
        // Names and addresses are not mixed up: the grant is for the name only.
        assert!(!p.http_allowed("127.0.0.1", 80));
        assert!(p.http_allowed("localhost", 80));
    }

    struct OneService;
    impl HttpRouter for OneService {
        fn route(&self, host: &str, port: Option<u16>) -> Option<SocketAddr> {
            (host == "web" && port.is_none_or(|p| p == 80))
                .then(|| "127.0.0.1:4000".parse().unwrap())
        }
    }

    #[test]
    fn service_routes_are_asked_first_and_keep_the_host_header() {
        let grants = NetworkGrants {
            services: Some(ServiceRoutes(Arc::new(OneService))),
            ..NetworkGrants::default()
        };
        let sink = RateLimitedSink::new(Arc::new(Null), None);
        let p = NetworkPolicy::new(&grants, sink, "test").unwrap();
        let to = p.service_route("web", None).unwrap();
        assert_eq!(p.service_route("web", Some(8080)), None);
        assert_eq!(p.service_route("db", None), None);
        assert!(!p.http_allowed("web", 80), "a route is not a grant");
        let req = http::Request::get("http://web/hello?x=1")
            .header("host", "web")
            .body(())
            .unwrap();
        let req = retarget(req, to);
        assert_eq!(req.uri().to_string(), "http://127.0.0.1:4000/hello?x=1");
        assert_eq!(req.headers()["host"], "web");
        assert_eq!(grants.clone(), grants);
    }

    #[test]
    fn wildcard_allows_everything() {
        let p = policy(&[], &["*"]);
        assert!(p.http_allowed("anything.example", 1234));
        assert!(p.http_allowed("[::1]", 80));
    }
}
