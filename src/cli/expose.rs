//! `edgectl expose deployment|replicaset|pod|service NAME --port P`: a Service selecting the
//! same pods, as `kubectl expose` makes it. Building the Service is pure (unit-tested); the
//! command reads the source object and creates the Service.

use crate::cli::commands::{unexpected, Ctx};
use crate::cli::get::get_one;
use crate::cli::{parse_target, print_out, render, server_error};
use anyhow::{anyhow, bail, Result};
use clap::{Args, ValueEnum};
use edge_api::intstr::IntOrString;
use edge_api::service::{ServicePort, ServiceType};
use edge_api::wire::{Request, Response};
use edge_api::{Kind, Object, ObjectKey, Service};
use std::collections::BTreeMap;

#[derive(Args, Debug)]
pub struct ExposeArgs {
    /// deployment, replicaset, pod or service (then NAME), or KIND/NAME
    #[arg(value_name = "KIND")]
    pub resource: String,

    /// The object whose pods the service selects
    #[arg(value_name = "NAME")]
    pub name: Option<String>,

    /// The service's port [default: the pods' only containerPort]
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// The pods' port, a number or a containerPort's name [default: --port]
    #[arg(long, value_name = "PORT")]
    pub target_port: Option<String>,

    /// ClusterIP (in-cluster only) or NodePort (also on every node's node port)
    #[arg(long = "type", value_enum, value_name = "TYPE", default_value_t = ExposeType::ClusterIP)]
    pub type_: ExposeType,

    /// The service's name [default: the object's name]
    #[arg(long = "name", value_name = "NAME")]
    pub service_name: Option<String>,

    /// The node port to ask for (NodePort only) [default: a free one, allocated by the server]
    #[arg(long, value_name = "PORT")]
    pub node_port: Option<i32>,

    /// Print the Service instead of creating it
    #[arg(long, value_enum, value_name = "MODE", num_args = 0..=1, default_missing_value = "client", require_equals = true)]
    pub dry_run: Option<ExposeDryRun>,

    /// With --dry-run: the output format
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<ExposeOutput>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExposeType {
    #[value(name = "ClusterIP")]
    ClusterIP,
    #[value(name = "NodePort")]
    NodePort,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExposeDryRun {
    Client,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExposeOutput {
    Yaml,
    Json,
}

/// The pods an object stands for: their selector and the container ports of their template.
fn pods_of(obj: &Object) -> Result<(BTreeMap<String, String>, Vec<edge_api::pod::ContainerPort>)> {
    let ports = |spec: &edge_api::PodSpec| {
        spec.containers
            .iter()
            .flat_map(|c| c.ports.iter().cloned())
            .collect::<Vec<_>>()
    };
    let from_selector = |sel: &edge_api::scheduling::LabelSelector, what: &str| {
        if !sel.match_expressions.is_empty() {
            bail!("{what} selects pods with matchExpressions, which a Service selector cannot express; write the Service by hand");
        }
        Ok(sel.match_labels.clone())
    };
    let name = render::object_name(obj);
    Ok(match obj {
        Object::Deployment(d) => (
            from_selector(&d.spec.selector, &name)?,
            ports(&d.spec.template.spec),
        ),
        Object::ReplicaSet(rs) => (
            from_selector(&rs.spec.selector, &name)?,
            ports(&rs.spec.template.spec),
        ),
        Object::Pod(p) => (p.metadata.labels.clone(), ports(&p.spec)),
        Object::Service(s) => (s.spec.selector.clone(), Vec::new()),
        other => bail!(
            "cannot expose a {}: expose a deployment, replicaset, pod or service",
            other.kind()
        ),
    })
}

/// The Service `expose` creates for `source`.
pub fn build_service(source: &Object, args: &ExposeArgs) -> Result<Service> {
    let (selector, container_ports) = pods_of(source)?;
    let name = render::object_name(source);
    if selector.is_empty() {
        bail!("{name} has no labels to select its pods by; label it first (edgectl label)");
    }
    let port = match (args.port, container_ports.as_slice()) {
        (Some(p), _) => p,
        (None, [only]) => only.container_port,
        (None, []) => bail!("{name} declares no containerPort; pass --port"),
        (None, _) => bail!("{name} declares several containerPorts; pass --port to choose one"),
    };
    let target_port = match &args.target_port {
        None => None,
        Some(t) => Some(match t.parse::<i32>() {
            Ok(n) if (1..=65535).contains(&n) => IntOrString::Int(n),
            Ok(n) => bail!("--target-port {n} is not a port (1-65535)"),
            Err(_) => IntOrString::String(t.clone()),
        }),
    };
    if args.node_port.is_some() && args.type_ != ExposeType::NodePort {
        bail!("--node-port needs --type NodePort");
    }
    let mut svc = Service {
        api_version: edge_api::API_VERSION.into(),
        ..Default::default()
    };
    let m = source.meta();
    svc.metadata.name = args.service_name.clone().unwrap_or_else(|| m.name.clone());
    svc.metadata.namespace = m.namespace.clone();
    svc.metadata.labels = m.labels.clone();
    svc.spec.selector = selector;
    svc.spec.type_ = match args.type_ {
        ExposeType::ClusterIP => ServiceType::ClusterIP,
        ExposeType::NodePort => ServiceType::NodePort,
    };
    svc.spec.ports.push(ServicePort {
        port: i32::from(port),
        target_port,
        node_port: args.node_port,
        ..Default::default()
    });
    edge_api::validation::validate(&Object::Service(svc.clone()))
        .map_err(|e| anyhow!("the service would be invalid: {e}"))?;
    Ok(svc)
}

pub async fn run(ctx: &Ctx, args: ExposeArgs) -> Result<()> {
    let names: Vec<String> = args.name.iter().cloned().collect();
    let target = parse_target(&args.resource, &names)?;
    let [(kind, Some(name))] = target.items.as_slice() else {
        bail!("expose takes exactly one object: KIND NAME or KIND/NAME");
    };
    if !matches!(
        kind,
        Kind::Deployment | Kind::ReplicaSet | Kind::Pod | Kind::Service
    ) {
        bail!(
            "cannot expose {}: expose a deployment, replicaset, pod or service",
            kind.plural()
        );
    }
    let session = ctx.connect().await?;
    let client = &session.client;
    let source = get_one(client, &ObjectKey::new(*kind, ctx.namespace(), name)).await?;
    let svc = build_service(&source, &args)?;
    let object = Object::Service(svc);
    if args.dry_run.is_some() {
        let objects = std::slice::from_ref(&object);
        return print_out(&match args.output {
            Some(ExposeOutput::Json) => render::to_json(objects, false)?,
            _ => render::to_yaml(objects, false)?,
        });
    }
    let key = object.key();
    match client
        .call(&Request::Create { object })
        .await
        .map_err(|e| server_error(e, Some(&key)))?
    {
        Response::Object(created) => {
            print_out(&format!("service/{} exposed\n", created.meta().name))
        }
        other => Err(unexpected("Create", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: ExposeArgs,
    }

    fn args(extra: &[&str]) -> ExposeArgs {
        let argv = ["expose", "deployment", "web"].iter().chain(extra);
        Cmd::try_parse_from(argv).unwrap().args
    }

    fn deployment(ports: &[u16]) -> Object {
        let mut d = edge_api::Deployment::default();
        d.metadata.name = "web".into();
        d.metadata.namespace = "prod".into();
        d.metadata.labels.insert("team".into(), "a".into());
        d.spec
            .selector
            .match_labels
            .insert("app".into(), "web".into());
        d.spec.template.spec.containers.push(edge_api::Container {
            name: "main".into(),
            ports: ports
                .iter()
                .map(|p| edge_api::pod::ContainerPort {
                    container_port: *p,
                    name: Some("http".into()),
                    protocol: "TCP".into(),
                })
                .collect(),
            ..Default::default()
        });
        Object::Deployment(d)
    }

    #[test]
    fn a_deployment_is_exposed_with_its_selector_and_port() {
        let s = build_service(
            &deployment(&[8080]),
            &args(&[
                "--port",
                "80",
                "--target-port",
                "http",
                "--type",
                "NodePort",
            ]),
        )
        .unwrap();
        assert_eq!(s.metadata.name, "web");
        assert_eq!(s.metadata.namespace, "prod");
        assert_eq!(s.spec.selector["app"], "web");
        assert_eq!(s.spec.type_, ServiceType::NodePort);
        let p = &s.spec.ports[0];
        assert_eq!((p.port, p.node_port), (80, None));
        assert_eq!(p.target_port, Some(IntOrString::String("http".into())));

        let s = build_service(&deployment(&[8080]), &args(&["--name", "api"])).unwrap();
        assert_eq!(
            (s.metadata.name.as_str(), s.spec.ports[0].port),
            ("api", 8080)
        );
        assert_eq!(s.spec.type_, ServiceType::ClusterIP);
        let s = build_service(
            &deployment(&[8080]),
            &args(&["--port", "80", "--target-port", "8080"]),
        )
        .unwrap();
        assert_eq!(s.spec.ports[0].target_port, Some(IntOrString::Int(8080)));
    }

    #[test]
    fn what_cannot_be_exposed_says_why() {
        let cases: [(Object, Vec<&str>, &str); 5] = [
            (deployment(&[]), vec![], "declares no containerPort"),
            (deployment(&[8080, 9090]), vec![], "several containerPorts"),
            (
                deployment(&[8080]),
                vec!["--node-port", "30001"],
                "needs --type NodePort",
            ),
            (
                deployment(&[8080]),
                vec!["--target-port", "0"],
                "not a port",
            ),
            (
                Object::ConfigMap(Default::default()),
                vec!["--port", "80"],
                "cannot expose",
            ),
        ];
        for (obj, extra, want) in cases {
            let e = build_service(&obj, &args(&extra)).unwrap_err().to_string();
            assert!(e.contains(want), "{extra:?}: {e}");
        }
        let mut unlabeled = edge_api::Pod::default();
        unlabeled.metadata.name = "p".into();
        let e = build_service(&Object::Pod(unlabeled), &args(&["--port", "80"])).unwrap_err();
        assert!(e.to_string().contains("no labels"), "{e}");
    }
}
