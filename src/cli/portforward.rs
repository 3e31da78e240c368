//! `edgectl port-forward pod/NAME|svc/NAME [LOCAL:]REMOTE...`: listens on this machine and
//! carries each connection to the pod's port through the control plane and the pod's node's
//! agent link (no inbound connectivity to the node needed). For a service, one of its ready
//! pods is picked and the service port is turned into that pod's port, as kubectl does.

use crate::cli::commands::Ctx;
use crate::cli::get::get_one;
use crate::cli::{parse_target, server_error};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use edge_api::service::{Endpoints, Service};
use edge_api::wire::{read_frame, write_frame, Client, Request, Response, MAX_FRAME_BYTES};
use edge_api::{Kind, Object, ObjectKey};
use std::io::Write as _;
use std::net::IpAddr;
use tokio::net::{TcpListener, TcpStream};

#[derive(Args, Debug)]
pub struct PortForwardArgs {
    /// pod/NAME, NAME (a pod) or svc/NAME
    #[arg(value_name = "TARGET")]
    pub target: String,

    /// LOCAL:REMOTE, REMOTE (the same local port) or :REMOTE (a free local port) (repeatable)
    #[arg(value_name = "PORTS", required = true)]
    pub ports: Vec<String>,

    /// The local address to listen on
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub address: IpAddr,
}

/// One `[LOCAL:]REMOTE`: local 0 means a free port; the remote may be a service port's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub local: u16,
    pub remote: String,
}

pub fn parse_port_spec(s: &str) -> Result<PortSpec> {
    let (local, remote) = match s.split_once(':') {
        Some((l, r)) => (l, r),
        None => (s, s),
    };
    let local = if local.is_empty() {
        0
    } else {
        local
            .parse::<u16>()
            .map_err(|_| anyhow!("{s:?}: the local port {local:?} is not a number (0-65535)"))?
    };
    if remote.is_empty() {
        bail!("{s:?}: the remote port is missing; use LOCAL:REMOTE");
    }
    Ok(PortSpec {
        local,
        remote: remote.to_string(),
    })
}

/// The pod's port for a pod target: a number is required.
fn pod_port(remote: &str) -> Result<u16> {
    remote
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            anyhow!("{remote:?} is not a port number (1-65535); a pod's port must be a number")
        })
}

/// For a service port (its number or name): a ready pod behind it and that pod's port.
pub fn service_target(
    svc: &Service,
    eps: Option<&Endpoints>,
    remote: &str,
) -> Result<(String, u16)> {
    let name = &svc.metadata.name;
    let sp = svc
        .spec
        .ports
        .iter()
        .find(|p| p.port.to_string() == remote || (!p.name.is_empty() && p.name == remote))
        .ok_or_else(|| {
            let known: Vec<String> = svc.spec.ports.iter().map(|p| p.port.to_string()).collect();
            anyhow!(
                "service {name} has no port {remote:?}; its ports are {}",
                known.join(", ")
            )
        })?;
    let eps = eps.ok_or_else(|| anyhow!("service {name} has no endpoints yet"))?;
    for subset in &eps.subsets {
        let Some(port) = subset.ports.iter().find(|p| p.name == sp.name) else {
            continue;
        };
        let pod = subset
            .addresses
            .iter()
            .find_map(|a| a.target_ref.as_ref().filter(|r| r.kind == "Pod"));
        if let (Some(pod), Ok(port)) = (pod, u16::try_from(port.port)) {
            return Ok((pod.name.clone(), port));
        }
    }
    bail!(
        "service {name} has no ready pod for port {remote}; see `edgectl describe service {name}`"
    )
}

pub async fn run(ctx: &Ctx, args: PortForwardArgs) -> Result<()> {
    let target = parse_target(&args.target, &[])
        .or_else(|_| parse_target("pod", std::slice::from_ref(&args.target)))?;
    let [(kind, Some(name))] = target.items.as_slice() else {
        bail!("port-forward takes one pod/NAME or svc/NAME");
    };
    let specs = args
        .ports
        .iter()
        .map(|s| parse_port_spec(s))
        .collect::<Result<Vec<_>>>()?;
    let session = ctx.connect().await?;
    let client = session.client.clone();
    let ns = ctx.namespace().to_string();
    let mut forwards = Vec::new();
    for spec in &specs {
        let (pod, port) = match kind {
            Kind::Pod => (name.clone(), pod_port(&spec.remote)?),
            Kind::Service => {
                let svc = match get_one(&client, &ObjectKey::new(Kind::Service, &ns, name)).await? {
                    Object::Service(s) => s,
                    _ => bail!("service {name} is not a Service"),
                };
                let eps = match get_one(&client, &ObjectKey::new(Kind::Endpoints, &ns, name)).await
                {
                    Ok(Object::Endpoints(e)) => Some(e),
                    _ => None,
                };
                service_target(&svc, eps.as_ref(), &spec.remote)?
            }
            other => bail!(
                "cannot port-forward to {}: use pod/NAME or svc/NAME",
                other.plural()
            ),
        };
        let listener = TcpListener::bind((args.address, spec.local))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.address, spec.local))?;
        let local = listener.local_addr()?;
        println!("Forwarding from {local} -> {port} (pod {pod})");
        forwards.push(tokio::spawn(accept(
            listener,
            client.clone(),
            ns.clone(),
            pod,
            port,
        )));
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    for f in forwards {
        f.abort();
    }
    Ok(())
}

async fn accept(listener: TcpListener, client: Client, namespace: String, pod: String, port: u16) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (client, namespace, pod) = (client.clone(), namespace.clone(), pod.clone());
        tokio::spawn(async move {
            // A reader that went away must not stop the forwarding.
            let _ = writeln!(std::io::stdout(), "Handling connection for {port}");
            if let Err(e) = forward(&client, &namespace, &pod, port, stream).await {
                eprintln!("error: forwarding to pod {pod} port {port}: {e:#}");
            }
        });
    }
}

/// One connection: ask for a stream to the pod's port, then copy bytes both ways.
async fn forward(
    client: &Client,
    namespace: &str,
    pod: &str,
    port: u16,
    stream: TcpStream,
) -> Result<()> {
    let (mut send, mut recv) = client.connection().open_bi().await?;
    let request = Request::PortForward {
        namespace: namespace.to_string(),
        name: pod.to_string(),
        port,
    };
    write_frame(&mut send, &request).await?;
    match read_frame::<_, Response>(&mut recv, MAX_FRAME_BYTES).await {
        Ok(Some(Response::Ok)) => {}
        Ok(Some(Response::Error(e))) => {
            let key = ObjectKey::new(Kind::Pod, namespace, pod);
            return Err(server_error(edge_api::wire::WireError::Api(e), Some(&key)));
        }
        Ok(_) => bail!("the server closed the stream without answering"),
        Err(e) => return Err(e.into()),
    }
    let _ = stream.set_nodelay(true);
    let (mut from_local, mut to_local) = stream.into_split();
    let upstream = async {
        let _ = tokio::io::copy(&mut from_local, &mut send).await;
        let _ = send.finish();
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut recv, &mut to_local).await;
        // The pod is done sending: pass its end of stream on.
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut to_local).await;
    };
    tokio::join!(upstream, downstream);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::service::{
        EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, ServicePort,
    };

    #[test]
    fn port_specs() {
        let spec = |l, r: &str| PortSpec {
            local: l,
            remote: r.into(),
        };
        assert_eq!(parse_port_spec("8080").unwrap(), spec(8080, "8080"));
        assert_eq!(parse_port_spec("9000:80").unwrap(), spec(9000, "80"));
        assert_eq!(parse_port_spec(":http").unwrap(), spec(0, "http"));
        assert!(parse_port_spec("x:80")
            .unwrap_err()
            .to_string()
            .contains("not a number"));
        assert!(parse_port_spec("80:")
            .unwrap_err()
            .to_string()
            .contains("remote port is missing"));
        assert!(pod_port("http")
            .unwrap_err()
            .to_string()
            .contains("must be a number"));
    }

    #[test]
    fn a_service_port_becomes_a_ready_pods_port() {
        let mut svc = Service::default();
        svc.metadata.name = "web".into();
        svc.spec.ports.push(ServicePort {
            name: "http".into(),
            port: 80,
            ..Default::default()
        });
        let mut eps = Endpoints::default();
        let pod = |n: &str| EndpointAddress {
            ip: "10.0.0.1".into(),
            node_name: "a".into(),
            target_ref: Some(ObjectReference {
                kind: "Pod".into(),
                namespace: "default".into(),
                name: n.into(),
                uid: String::new(),
            }),
        };
        eps.subsets.push(EndpointSubset {
            addresses: vec![pod("web-1")],
            not_ready_addresses: vec![pod("web-0")],
            ports: vec![EndpointPort {
                name: "http".into(),
                port: 8080,
                ..Default::default()
            }],
        });
        assert_eq!(
            service_target(&svc, Some(&eps), "80").unwrap(),
            ("web-1".to_string(), 8080)
        );
        assert_eq!(
            service_target(&svc, Some(&eps), "http").unwrap(),
            ("web-1".to_string(), 8080)
        );
        let e = service_target(&svc, Some(&eps), "81")
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no port \"81\"; its ports are 80"), "{e}");
        assert!(service_target(&svc, None, "80")
            .unwrap_err()
            .to_string()
            .contains("no endpoints"));
        eps.subsets[0].addresses.clear();
        assert!(service_target(&svc, Some(&eps), "80")
            .unwrap_err()
            .to_string()
            .contains("no ready pod"));
    }
}
