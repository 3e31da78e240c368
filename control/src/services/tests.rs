//! Table tests of the endpoints controller's decisions.

use super::endpoints::{endpoints_for, reconcile, resolve_port, Action};
use edge_api::intstr::IntOrString;
use edge_api::meta::{Condition, OwnerReference};
use edge_api::pod::ContainerPort;
use edge_api::service::{Endpoints, ServicePort};
use edge_api::{Container, Node, Pod, PodPhase, Service};

fn node(name: &str, addr: &str, ready: bool) -> Node {
    let mut n = Node::default();
    n.metadata.name = name.into();
    if !addr.is_empty() {
        n.status.addresses = vec![addr.into()];
    }
    n.status
        .conditions
        .push(Condition::new("Ready", ready, "", ""));
    n
}

/// A pod labelled app=`app` on `node`, Running, ready or not, declaring port 8080 named http.
fn pod(name: &str, app: &str, node: Option<&str>, ready: bool) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = name.into();
    p.metadata.namespace = "default".into();
    p.metadata.uid = format!("uid-{name}");
    p.metadata.labels.insert("app".into(), app.into());
    p.spec.node_name = node.map(String::from);
    p.spec.containers.push(Container {
        name: "main".into(),
        ports: vec![ContainerPort {
            container_port: 8080,
            name: Some("http".into()),
            protocol: "TCP".into(),
        }],
        ..Default::default()
    });
    p.status.phase = PodPhase::Running;
    p.status
        .conditions
        .push(Condition::new("Ready", ready, "", ""));
    p
}

fn service(name: &str, app: &str, target: Option<IntOrString>) -> Service {
    let mut s = Service::default();
    s.metadata.name = name.into();
    s.metadata.namespace = "default".into();
    s.metadata.uid = format!("uid-svc-{name}");
    if !app.is_empty() {
        s.spec.selector.insert("app".into(), app.into());
    }
    s.spec.ports.push(ServicePort {
        port: 80,
        target_port: target,
        ..Default::default()
    });
    s
}

/// (ready "pod@ip:port", not ready) per subset, for compact expectations.
fn summary(svc: &Service, pods: &[Pod], nodes: &[Node]) -> Vec<(Vec<String>, Vec<String>)> {
    endpoints_for(svc, pods, nodes)
        .iter()
        .map(|s| {
            let port = s.ports.first().map(|p| p.port).unwrap_or(0);
            let show = |a: &edge_api::service::EndpointAddress| {
                let name = a
                    .target_ref
                    .as_ref()
                    .map(|r| r.name.clone())
                    .unwrap_or_default();
                format!("{name}@{}:{port}", a.ip)
            };
            (
                s.addresses.iter().map(show).collect(),
                s.not_ready_addresses.iter().map(show).collect(),
            )
        })
        .collect()
}

#[test]
fn endpoints_list_selected_pods_at_their_nodes_address() {
    let nodes = [
        node("a", "10.0.0.1", true),
        node("b", "10.0.0.2", true),
        node("c", "10.0.0.3", false),
        node("d", "", true),
    ];
    let mut terminating = pod("t", "web", Some("a"), true);
    terminating.metadata.deletion_timestamp = Some(chrono::Utc::now());
    let mut finished = pod("f", "web", Some("a"), true);
    finished.status.phase = PodPhase::Succeeded;
    let mut other_ns = pod("o", "web", Some("a"), true);
    other_ns.metadata.namespace = "prod".into();
    let pods = vec![
        pod("w2", "web", Some("b"), true),
        pod("w1", "web", Some("a"), true),
        pod("nr", "web", Some("a"), false),
        pod("on-dead-node", "web", Some("c"), true),
        pod("no-address", "web", Some("d"), true),
        pod("pending", "web", None, true),
        pod("db", "db", Some("a"), true),
        terminating,
        finished,
        other_ns,
    ];
    struct Case {
        name: &'static str,
        target: Option<IntOrString>,
        want: Vec<(Vec<&'static str>, Vec<&'static str>)>,
    }
    let cases = [
        Case {
            name: "numeric targetPort",
            target: Some(IntOrString::Int(8080)),
            want: vec![(
                vec!["w1@10.0.0.1:8080", "w2@10.0.0.2:8080"],
                vec!["nr@10.0.0.1:8080", "on-dead-node@10.0.0.3:8080"],
            )],
        },
        Case {
            name: "named targetPort resolves through the container ports",
            target: Some(IntOrString::String("http".into())),
            want: vec![(
                vec!["w1@10.0.0.1:8080", "w2@10.0.0.2:8080"],
                vec!["nr@10.0.0.1:8080", "on-dead-node@10.0.0.3:8080"],
            )],
        },
        Case {
            name: "no targetPort means the service port",
            target: None,
            want: vec![(
                vec!["w1@10.0.0.1:80", "w2@10.0.0.2:80"],
                vec!["nr@10.0.0.1:80", "on-dead-node@10.0.0.3:80"],
            )],
        },
        Case {
            name: "a name no pod declares selects nothing",
            target: Some(IntOrString::String("grpc".into())),
            want: vec![],
        },
    ];
    for c in cases {
        let got = summary(&service("web", "web", c.target), &pods, &nodes);
        let want: Vec<(Vec<String>, Vec<String>)> = c
            .want
            .iter()
            .map(|(r, n)| {
                (
                    r.iter().map(|s| s.to_string()).collect(),
                    n.iter().map(|s| s.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(got, want, "{}", c.name);
    }
}

#[test]
fn pods_resolving_a_named_port_differently_get_separate_subsets() {
    let nodes = [node("a", "10.0.0.1", true)];
    let mut other = pod("w2", "web", Some("a"), true);
    other.spec.containers[0].ports[0].container_port = 9090;
    let pods = [pod("w1", "web", Some("a"), true), other];
    let got = summary(
        &service("web", "web", Some(IntOrString::String("http".into()))),
        &pods,
        &nodes,
    );
    assert_eq!(
        got,
        vec![
            (vec!["w1@10.0.0.1:8080".to_string()], vec![]),
            (vec!["w2@10.0.0.1:9090".to_string()], vec![])
        ]
    );
}

#[test]
fn named_ports_match_the_protocol_too() {
    let mut sp = ServicePort {
        port: 53,
        target_port: Some(IntOrString::String("http".into())),
        ..Default::default()
    };
    let p = pod("w", "web", Some("a"), true);
    assert_eq!(resolve_port(&sp, &p), Some(8080));
    sp.protocol = edge_api::service::Protocol::Udp;
    assert_eq!(resolve_port(&sp, &p), None);
}

fn kinds(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Put {
                endpoints,
                revision,
            } => format!(
                "put {} {:?} ready={}",
                endpoints.metadata.name,
                revision,
                endpoints
                    .subsets
                    .iter()
                    .map(|s| s.addresses.len())
                    .sum::<usize>()
            ),
            Action::Delete { key, revision } => format!("delete {} {revision}", key.name),
        })
        .collect()
}

/// The Endpoints the controller would have stored for `svc` at revision `rv`.
fn stored(svc: &Service, pods: &[Pod], nodes: &[Node], rv: u64) -> Endpoints {
    let actions = reconcile(std::slice::from_ref(svc), pods, nodes, &[]);
    let Some(Action::Put { mut endpoints, .. }) = actions.into_iter().next() else {
        panic!("expected a put")
    };
    endpoints.metadata.resource_version = rv;
    endpoints.metadata.uid = "uid-ep".into();
    *endpoints
}

#[test]
fn reconcile_writes_only_what_differs() {
    let nodes = vec![node("a", "10.0.0.1", true)];
    let web = service("web", "web", Some(IntOrString::Int(8080)));
    let one = vec![pod("w1", "web", Some("a"), true)];
    let two = vec![
        pod("w1", "web", Some("a"), true),
        pod("w2", "web", Some("a"), true),
    ];
    let current = stored(&web, &one, &nodes, 7);
    let mut by_hand = current.clone();
    by_hand.metadata.name = "manual".into();
    by_hand.metadata.owner_references.clear();
    let orphan = {
        let mut e = current.clone();
        e.metadata.name = "gone".into();
        e.metadata.resource_version = 9;
        e.metadata.owner_references = vec![OwnerReference {
            kind: "Service".into(),
            name: "gone".into(),
            uid: "x".into(),
            controller: true,
            ..Default::default()
        }];
        e
    };
    let selectorless = service("manual", "", None);
    struct Case {
        name: &'static str,
        services: Vec<Service>,
        pods: Vec<Pod>,
        existing: Vec<Endpoints>,
        want: Vec<&'static str>,
    }
    let cases = [
        Case {
            name: "a new service gets its endpoints",
            services: vec![web.clone()],
            pods: one.clone(),
            existing: vec![],
            want: vec!["put web None ready=1"],
        },
        Case {
            name: "nothing changed: no write",
            services: vec![web.clone()],
            pods: one.clone(),
            existing: vec![current.clone()],
            want: vec![],
        },
        Case {
            name: "a new ready pod: replace at the read revision",
            services: vec![web.clone()],
            pods: two.clone(),
            existing: vec![current.clone()],
            want: vec!["put web Some(7) ready=2"],
        },
        Case {
            name: "endpoints of a deleted service are removed; hand-made ones stay",
            services: vec![selectorless.clone()],
            pods: two.clone(),
            existing: vec![orphan.clone(), by_hand.clone()],
            want: vec!["delete gone 9"],
        },
    ];
    for c in cases {
        let got = kinds(&reconcile(&c.services, &c.pods, &nodes, &c.existing));
        assert_eq!(got, c.want, "{}", c.name);
    }
}

#[test]
fn a_replacement_keeps_identity_and_names_the_service_as_owner() {
    let nodes = vec![node("a", "10.0.0.1", true)];
    let web = service("web", "web", None);
    let current = stored(&web, &[], &nodes, 3);
    let pods = vec![pod("w1", "web", Some("a"), true)];
    let actions = reconcile(std::slice::from_ref(&web), &pods, &nodes, &[current]);
    let [Action::Put {
        endpoints,
        revision: Some(3),
    }] = actions.as_slice()
    else {
        panic!("expected one replacement: {actions:?}")
    };
    assert_eq!(endpoints.metadata.uid, "uid-ep");
    let owner = &endpoints.metadata.owner_references[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Service", "uid-svc-web", true)
    );
}
