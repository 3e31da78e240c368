//! The endpoints controller's decisions, pure: which pods back a service (with the port each
//! one serves on), and what to write so that every Endpoints object matches its Service.
//!
//! A pod has no address of its own: it shares its node's network, so an endpoint is the node's
//! address (`Node.status.addresses`) and the pod's port.

use edge_api::intstr::IntOrString;
use edge_api::meta::{condition, OwnerReference};
use edge_api::object::{Kind, ObjectKey};
use edge_api::service::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Protocol,
    ServicePort,
};
use edge_api::{Node, Pod, PodPhase, Service};
use std::collections::{BTreeMap, HashMap};

/// A write the controller wants, with the revision it was decided from (compare-and-swap).
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create (`revision` None) or replace the Endpoints object.
    Put {
        endpoints: Box<Endpoints>,
        revision: Option<u64>,
    },
    /// Remove Endpoints whose Service is gone.
    Delete { key: ObjectKey, revision: u64 },
}

/// What makes two pods land in the same subset: the same resolved ports.
type PortKey = Vec<(String, i32, bool)>;

/// The subsets of a service's Endpoints: the pods in its namespace that its selector picks,
/// bound to a node that has an address, grouped by the ports they resolve to (a named
/// `targetPort` may differ between pods). Ready pods on ready nodes are `addresses`; the others
/// `notReadyAddresses`. Terminating and finished pods are left out: they take no new traffic.
pub fn endpoints_for(service: &Service, pods: &[Pod], nodes: &[Node]) -> Vec<EndpointSubset> {
    let selector = &service.spec.selector;
    if selector.is_empty() {
        return Vec::new();
    }
    let nodes: HashMap<&str, &Node> = nodes
        .iter()
        .map(|n| (n.metadata.name.as_str(), n))
        .collect();
    let mut groups: BTreeMap<PortKey, EndpointSubset> = BTreeMap::new();
    for pod in pods {
        let m = &pod.metadata;
        let selected = m.namespace == service.metadata.namespace
            && selector.iter().all(|(k, v)| m.labels.get(k) == Some(v));
        if !selected || m.deletion_timestamp.is_some() || pod.status.phase.is_terminal() {
            continue;
        }
        let Some(node_name) = pod.spec.node_name.as_deref() else {
            continue;
        };
        let Some(node) = nodes.get(node_name) else {
            continue;
        };
        let Some(ip) = node.status.addresses.iter().find(|a| !a.is_empty()) else {
            continue;
        };
        let ports: PortKey = service
            .spec
            .ports
            .iter()
            .filter_map(|sp| {
                resolve_port(sp, pod).map(|p| (sp.name.clone(), p, sp.protocol == Protocol::Udp))
            })
            .collect();
        if ports.is_empty() {
            continue;
        }
        let address = EndpointAddress {
            ip: ip.clone(),
            node_name: node_name.to_string(),
            target_ref: Some(ObjectReference {
                kind: "Pod".into(),
                namespace: m.namespace.clone(),
                name: m.name.clone(),
                uid: m.uid.clone(),
            }),
        };
        let subset = groups
            .entry(ports.clone())
            .or_insert_with(|| EndpointSubset {
                ports: ports
                    .iter()
                    .map(|(name, port, udp)| EndpointPort {
                        name: name.clone(),
                        port: *port,
                        protocol: if *udp { Protocol::Udp } else { Protocol::Tcp },
                    })
                    .collect(),
                ..Default::default()
            });
        if is_ready(pod) && node.is_ready() {
            subset.addresses.push(address);
        } else {
            subset.not_ready_addresses.push(address);
        }
    }
    let mut subsets: Vec<EndpointSubset> = groups.into_values().collect();
    for s in &mut subsets {
        s.addresses.sort_by(address_order);
        s.not_ready_addresses.sort_by(address_order);
    }
    subsets
}

fn address_order(a: &EndpointAddress, b: &EndpointAddress) -> std::cmp::Ordering {
    let name = |x: &EndpointAddress| x.target_ref.as_ref().map(|r| r.name.clone());
    (&a.ip, name(a)).cmp(&(&b.ip, name(b)))
}

/// Running with the Ready condition true, as the kubelet reports it.
fn is_ready(pod: &Pod) -> bool {
    pod.status.phase == PodPhase::Running
        && condition(&pod.status.conditions, "Ready").is_some_and(|c| c.is_true())
}

/// The pod's port for one service port: `targetPort` as a number, a container port's name,
/// or the service port itself when unset. `None` when a named port is not declared by the pod.
pub fn resolve_port(sp: &ServicePort, pod: &Pod) -> Option<i32> {
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let protocol = match sp.protocol {
                Protocol::Tcp => "TCP",
                Protocol::Udp => "UDP",
            };
            pod.spec
                .containers
                .iter()
                .flat_map(|c| &c.ports)
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.eq_ignore_ascii_case(protocol)
                })
                .map(|p| i32::from(p.container_port))
        }
    }
}

/// The owner reference the controller puts on the Endpoints it manages.
fn owner(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: edge_api::API_VERSION.into(),
        kind: Kind::Service.as_str().into(),
        name: service.metadata.name.clone(),
        uid: service.metadata.uid.clone(),
        controller: true,
        block_owner_deletion: false,
    }
}

fn managed_by_controller(e: &Endpoints) -> bool {
    e.metadata
        .owner_references
        .iter()
        .any(|o| o.controller && o.kind == Kind::Service.as_str())
}

/// The writes that make every Endpoints object match its Service. Services without a selector
/// are left alone (their Endpoints are written by hand, as in Kubernetes); Endpoints this
/// controller made for a Service that is gone are deleted.
pub fn reconcile(
    services: &[Service],
    pods: &[Pod],
    nodes: &[Node],
    existing: &[Endpoints],
) -> Vec<Action> {
    let key = |ns: &str, name: &str| (ns.to_string(), name.to_string());
    let current: HashMap<(String, String), &Endpoints> = existing
        .iter()
        .map(|e| (key(&e.metadata.namespace, &e.metadata.name), e))
        .collect();
    let mut actions = Vec::new();
    let mut wanted = std::collections::HashSet::new();
    for svc in services {
        let m = &svc.metadata;
        if svc.spec.selector.is_empty() || m.deletion_timestamp.is_some() {
            continue;
        }
        wanted.insert(key(&m.namespace, &m.name));
        let mut desired = Endpoints {
            api_version: edge_api::API_VERSION.into(),
            subsets: endpoints_for(svc, pods, nodes),
            ..Default::default()
        };
        desired.metadata.name = m.name.clone();
        desired.metadata.namespace = m.namespace.clone();
        desired.metadata.labels = m.labels.clone();
        desired.metadata.owner_references = vec![owner(svc)];
        match current.get(&key(&m.namespace, &m.name)) {
            Some(old) => {
                let om = &old.metadata;
                let same = old.subsets == desired.subsets
                    && om.labels == desired.metadata.labels
                    && om.owner_references == desired.metadata.owner_references;
                if !same {
                    desired.metadata.uid = om.uid.clone();
                    desired.metadata.creation_timestamp = om.creation_timestamp;
                    desired.metadata.annotations = om.annotations.clone();
                    desired.metadata.generation = om.generation;
                    actions.push(Action::Put {
                        endpoints: Box::new(desired),
                        revision: Some(om.resource_version),
                    });
                }
            }
            None => actions.push(Action::Put {
                endpoints: Box::new(desired),
                revision: None,
            }),
        }
    }
    for e in existing {
        let m = &e.metadata;
        if !wanted.contains(&key(&m.namespace, &m.name)) && managed_by_controller(e) {
            let has_service = services
                .iter()
                .any(|s| s.metadata.namespace == m.namespace && s.metadata.name == m.name);
            // A service that lost its selector keeps its Endpoints for hand editing.
            if !has_service {
                actions.push(Action::Delete {
                    key: ObjectKey::new(Kind::Endpoints, &m.namespace, &m.name),
                    revision: m.resource_version,
                });
            }
        }
    }
    actions
}
