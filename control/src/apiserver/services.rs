//! Node ports of NodePort services, decided on the write path: a port asked for must be free,
//! a port left out keeps the one allocated before or gets a free one from 30000-32767. Service
//! writes on the leader are serialized by one lock held from the snapshot read to the proposal,
//! so two services created at once cannot both take the same port.

use super::objects::internal;
use crate::store::Snapshot;
use edge_api::object::{Kind, Object};
use edge_api::service::{Service, ServicePort, ServiceType, NODE_PORT_RANGE};
use edge_api::wire::{ApiError, ErrorCode};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::{Mutex, MutexGuard};

static ALLOCATION: Mutex<()> = Mutex::const_new(());

/// Held while a Service is read, decided and proposed; `None` for other kinds.
pub async fn allocation_lock(obj: &Object) -> Option<MutexGuard<'static, ()>> {
    match obj {
        Object::Service(_) => Some(ALLOCATION.lock().await),
        _ => None,
    }
}

/// The incoming object with its node ports decided against the other services in `snap`;
/// other kinds pass through.
pub fn with_node_ports(
    snap: &Snapshot,
    existing: Option<&Object>,
    incoming: Object,
) -> Result<Object, ApiError> {
    let Object::Service(mut svc) = incoming else {
        return Ok(incoming);
    };
    let previous = match existing {
        Some(Object::Service(s)) => Some(s),
        _ => None,
    };
    let taken = taken_ports(snap, &svc)?;
    let start = rand::thread_rng().gen_range(NODE_PORT_RANGE);
    assign_node_ports(&mut svc, previous, &taken, start)?;
    Ok(Object::Service(svc))
}

/// Node ports used by every other service, with the service that holds each.
fn taken_ports(snap: &Snapshot, svc: &Service) -> Result<BTreeMap<i32, String>, ApiError> {
    let mut taken = BTreeMap::new();
    for obj in snap.list(Kind::Service, None).map_err(internal)? {
        let Object::Service(other) = obj else {
            continue;
        };
        let (m, me) = (&other.metadata, &svc.metadata);
        if m.namespace == me.namespace && m.name == me.name {
            continue;
        }
        for p in other.spec.ports.iter().filter_map(|p| p.node_port) {
            taken.insert(p, format!("{}/{}", m.namespace, m.name));
        }
    }
    Ok(taken)
}

/// The pure decision. `start` is where the search for a free port begins (random in practice,
/// so that allocations do not pile up at the bottom of the range).
pub fn assign_node_ports(
    svc: &mut Service,
    previous: Option<&Service>,
    taken: &BTreeMap<i32, String>,
    start: i32,
) -> Result<(), ApiError> {
    if svc.spec.type_ != ServiceType::NodePort {
        return Ok(());
    }
    let name = svc.metadata.name.clone();
    let invalid = |i: usize, port: i32, why: String| {
        ApiError::new(
            ErrorCode::Invalid,
            format!("Service {name:?} is invalid: spec.ports[{i}].nodePort: Invalid value: {port}: {why}"),
        )
    };
    let mut used = BTreeSet::new();
    for (i, p) in svc.spec.ports.iter().enumerate() {
        let Some(np) = p.node_port else { continue };
        if let Some(holder) = taken.get(&np) {
            return Err(invalid(i, np, format!(
                "provided port is already allocated (to service {holder}); choose another or leave nodePort out to get a free one"
            )));
        }
        if !used.insert(np) {
            return Err(invalid(
                i,
                np,
                "used by another port of this service".into(),
            ));
        }
    }
    let free = |np: &i32, used: &BTreeSet<i32>| !taken.contains_key(np) && !used.contains(np);
    for i in 0..svc.spec.ports.len() {
        if svc.spec.ports[i].node_port.is_some() {
            continue;
        }
        let kept = previous
            .and_then(|prev| same_port(&prev.spec.ports, &svc.spec.ports[i]))
            .filter(|np| free(np, &used));
        let span = NODE_PORT_RANGE.end() - NODE_PORT_RANGE.start() + 1;
        let offset =
            start.clamp(*NODE_PORT_RANGE.start(), *NODE_PORT_RANGE.end()) - NODE_PORT_RANGE.start();
        let np = kept
            .or_else(|| {
                (0..span)
                    .map(|k| NODE_PORT_RANGE.start() + (offset + k) % span)
                    .find(|np| free(np, &used))
            })
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Invalid,
                    format!(
                        "Service {name:?}: no free node port left in 30000-32767; delete unused NodePort services or use type ClusterIP"
                    ),
                )
            })?;
        used.insert(np);
        svc.spec.ports[i].node_port = Some(np);
    }
    Ok(())
}

/// The node port the previous version of the service gave the same port (matched by name, or
/// by number and protocol when unnamed).
fn same_port(previous: &[ServicePort], port: &ServicePort) -> Option<i32> {
    previous
        .iter()
        .find(|p| {
            if port.name.is_empty() {
                p.port == port.port && p.protocol == port.protocol
            } else {
                p.name == port.name
            }
        })
        .and_then(|p| p.node_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ports: &[(&str, i32, Option<i32>)]) -> Service {
        let mut s = Service::default();
        s.metadata.name = "web".into();
        s.spec.type_ = ServiceType::NodePort;
        s.spec.ports = ports
            .iter()
            .map(|(name, port, np)| ServicePort {
                name: name.to_string(),
                port: *port,
                node_port: *np,
                ..Default::default()
            })
            .collect();
        s
    }

    fn ports(s: &Service) -> Vec<Option<i32>> {
        s.spec.ports.iter().map(|p| p.node_port).collect()
    }

    #[test]
    fn node_ports_are_allocated_kept_and_refused_when_taken() {
        let taken = BTreeMap::from([
            (30000, "default/a".to_string()),
            (30001, "default/b".to_string()),
            (32767, "prod/c".to_string()),
        ]);
        let prev = svc(&[("http", 80, Some(31000)), ("admin", 81, Some(31001))]);
        struct Case {
            name: &'static str,
            incoming: Service,
            previous: Option<Service>,
            start: i32,
            want: Result<Vec<Option<i32>>, &'static str>,
        }
        let cases = [
            Case {
                name: "free port from the start, skipping taken ones",
                incoming: svc(&[("", 80, None)]),
                previous: None,
                start: 30000,
                want: Ok(vec![Some(30002)]),
            },
            Case {
                name: "the search wraps around the end of the range",
                incoming: svc(&[("", 80, None)]),
                previous: None,
                start: 32767,
                want: Ok(vec![Some(30002)]),
            },
            Case {
                name: "two ports get two different ports",
                incoming: svc(&[("a", 80, None), ("b", 81, None)]),
                previous: None,
                start: 30001,
                want: Ok(vec![Some(30002), Some(30003)]),
            },
            Case {
                name: "a re-apply without nodePort keeps the allocated ones",
                incoming: svc(&[("admin", 81, None), ("http", 80, None)]),
                previous: Some(prev.clone()),
                start: 30000,
                want: Ok(vec![Some(31001), Some(31000)]),
            },
            Case {
                name: "an explicit free port is kept",
                incoming: svc(&[("", 80, Some(30500))]),
                previous: None,
                start: 30000,
                want: Ok(vec![Some(30500)]),
            },
            Case {
                name: "a taken port is refused, naming its holder",
                incoming: svc(&[("", 80, Some(30001))]),
                previous: None,
                start: 30000,
                want: Err("spec.ports[0].nodePort: Invalid value: 30001: provided port is already allocated (to service default/b)"),
            },
            Case {
                name: "the same port twice in one service is refused",
                incoming: svc(&[("a", 80, Some(30500)), ("b", 81, Some(30500))]),
                previous: None,
                start: 30000,
                want: Err("spec.ports[1].nodePort: Invalid value: 30500: used by another port"),
            },
        ];
        for c in cases {
            let mut s = c.incoming;
            let got = assign_node_ports(&mut s, c.previous.as_ref(), &taken, c.start)
                .map(|()| ports(&s))
                .map_err(|e| e.message);
            match (&got, &c.want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{}", c.name),
                (Err(g), Err(w)) => assert!(g.contains(w), "{}: {g}", c.name),
                _ => panic!("{}: got {got:?}, want {:?}", c.name, c.want),
            }
        }
    }

    #[test]
    fn cluster_ip_services_get_no_node_port_and_a_full_range_is_an_error() {
        let mut s = svc(&[("", 80, None)]);
        s.spec.type_ = ServiceType::ClusterIP;
        assign_node_ports(&mut s, None, &BTreeMap::new(), 30000).unwrap();
        assert_eq!(ports(&s), vec![None]);
        let full: BTreeMap<i32, String> = NODE_PORT_RANGE.map(|p| (p, "x/y".into())).collect();
        let mut s = svc(&[("", 80, None)]);
        let e = assign_node_ports(&mut s, None, &full, 30000).unwrap_err();
        assert!(e.message.contains("no free node port"), "{e}");
    }
}
