//! How pods find services without DNS, pure: the environment variables the kubelet would set
//! (`<NAME>_SERVICE_HOST`/`_PORT`), pointing at this node's loopback port for each service
//! port, and the host names an outgoing wasi:http request may use (`web`, `web.prod`,
//! `web.prod.svc`, `web.prod.svc.cluster.local`).

use super::table::Route;
use std::net::Ipv4Addr;

/// Where pods reach a service on their node.
pub const SERVICE_HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// `web-api` -> `WEB_API`, as Kubernetes forms variable names.
fn env_name(s: &str) -> String {
    s.replace('-', "_").to_ascii_uppercase()
}

/// The variables for the services of one namespace. `services` holds each service's routes in
/// spec order with the loopback port of each; the first port is the service's main port.
pub fn service_env(services: &[Vec<(&Route, u16)>]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for ports in services {
        let Some((first, first_port)) = ports.first() else {
            continue;
        };
        let name = env_name(&first.key.service);
        env.push((format!("{name}_SERVICE_HOST"), SERVICE_HOST.to_string()));
        env.push((format!("{name}_SERVICE_PORT"), first_port.to_string()));
        for (route, port) in ports {
            if !route.key.port_name.is_empty() {
                env.push((
                    format!("{name}_SERVICE_PORT_{}", env_name(&route.key.port_name)),
                    port.to_string(),
                ));
            }
        }
    }
    env
}

/// The (namespace, name) of the service a URL host names, seen from a pod in `own_namespace`.
pub fn service_of(host: &str, own_namespace: &str) -> Option<(String, String)> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
    };
    let parts: Vec<&str> = host.split('.').collect();
    if !parts.iter().all(|l| label_ok(l)) {
        return None;
    }
    match parts.as_slice() {
        [name] => Some((own_namespace.to_string(), name.to_string())),
        [name, ns] | [name, ns, "svc"] | [name, ns, "svc", "cluster", "local"] => {
            Some((ns.to_string(), name.to_string()))
        }
        _ => None,
    }
}

/// The port a request goes to: the one the URL names, else port 80, else the service's only port.
pub fn pick_port<'a>(routes: &[&'a Route], port: Option<u16>) -> Option<&'a Route> {
    match port {
        Some(p) => routes.iter().find(|r| r.key.port == p).copied(),
        None => routes
            .iter()
            .find(|r| r.key.port == 80)
            .copied()
            .or_else(|| (routes.len() == 1).then(|| routes[0])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::table::{Mode, RouteKey};

    fn route(service: &str, name: &str, port: u16, index: usize) -> Route {
        Route {
            key: RouteKey {
                namespace: "default".into(),
                service: service.into(),
                port_name: name.into(),
                port,
            },
            index,
            node_port: None,
            mode: Mode::Detect,
            client_ip_affinity: false,
            backends: vec![],
        }
    }

    #[test]
    fn env_vars_as_the_kubelet_names_them() {
        let web = route("web-api", "", 80, 0);
        let db_main = route("db", "sql", 5432, 0);
        let db_admin = route("db", "admin-ui", 8080, 1);
        let env = service_env(&[
            vec![(&web, 41000)],
            vec![(&db_main, 41001), (&db_admin, 41002)],
        ]);
        let lines: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            lines,
            [
                "WEB_API_SERVICE_HOST=127.0.0.1",
                "WEB_API_SERVICE_PORT=41000",
                "DB_SERVICE_HOST=127.0.0.1",
                "DB_SERVICE_PORT=41001",
                "DB_SERVICE_PORT_SQL=41001",
                "DB_SERVICE_PORT_ADMIN_UI=41002",
            ]
        );
    }

    #[test]
    fn host_names_of_services() {
        let cases = [
            ("web", Some(("app", "web"))),
            ("WEB.", Some(("app", "web"))),
            ("web.prod", Some(("prod", "web"))),
            ("web.prod.svc", Some(("prod", "web"))),
            ("web.prod.svc.cluster.local", Some(("prod", "web"))),
            ("example.com.evil", None),
            ("a.b.c.d", None),
            ("", None),
            ("we_b", None),
            ("[::1]", None),
        ];
        for (host, want) in cases {
            let want = want.map(|(n, s)| (n.to_string(), s.to_string()));
            assert_eq!(service_of(host, "app"), want, "{host}");
        }
    }

    #[test]
    fn ports_by_url() {
        let http = route("web", "http", 80, 0);
        let admin = route("web", "admin", 9000, 1);
        let only = route("api", "", 8080, 0);
        assert_eq!(
            pick_port(&[&http, &admin], None).map(|r| r.key.port),
            Some(80)
        );
        assert_eq!(
            pick_port(&[&http, &admin], Some(9000)).map(|r| r.key.port),
            Some(9000)
        );
        assert_eq!(pick_port(&[&http, &admin], Some(81)), None);
        assert_eq!(pick_port(&[&only], None).map(|r| r.key.port), Some(8080));
        assert_eq!(pick_port(&[&only, &admin], None), None);
    }
}
