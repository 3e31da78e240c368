//! `describe service|endpoints|event`: a Service's ports and the endpoints behind it, an
//! Endpoints object's ready and not-ready addresses, one Event's fields.

use super::events::{event_source, underlined};
use super::{timestamp, Doc};
use edge_api::event::Event;
use edge_api::service::{Endpoints, Service, ServiceType};
use edge_api::ObjectMeta;
use std::collections::BTreeMap;

fn header(d: &mut Doc, m: &ObjectMeta) {
    d.pair(0, "Name", m.name.clone());
    d.pair(0, "Namespace", m.namespace.clone());
    d.map(0, "Labels", &m.labels);
    d.map(0, "Annotations", &m.annotations);
}

fn or_unset(name: &str) -> String {
    if name.is_empty() {
        "<unset>".into()
    } else {
        name.to_string()
    }
}

fn pairs(m: &BTreeMap<String, String>) -> String {
    if m.is_empty() {
        return "<none>".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Every `ip:port` of the endpoints for one service port (by name), ready ones only.
fn endpoint_addresses(e: &Endpoints, port_name: &str) -> String {
    let all: Vec<String> = e
        .subsets
        .iter()
        .flat_map(|s| {
            let ports: Vec<i32> = s
                .ports
                .iter()
                .filter(|p| p.name == port_name || s.ports.len() == 1)
                .map(|p| p.port)
                .collect();
            s.addresses.iter().flat_map(move |a| {
                ports
                    .clone()
                    .into_iter()
                    .map(move |p| format!("{}:{p}", a.ip))
            })
        })
        .collect();
    if all.is_empty() {
        "<none>".into()
    } else {
        all.join(",")
    }
}

/// `edgectl describe service`, with its Endpoints object when there is one.
pub fn describe_service(s: &Service, endpoints: Option<&Endpoints>) -> String {
    let mut d = Doc::default();
    header(&mut d, &s.metadata);
    d.pair(0, "Selector", pairs(&s.spec.selector));
    d.pair(0, "Type", format!("{:?}", s.spec.type_));
    for p in &s.spec.ports {
        let proto = format!("{:?}", p.protocol).to_ascii_uppercase();
        d.pair(
            0,
            "Port",
            format!("{}  {}/{proto}", or_unset(&p.name), p.port),
        );
        let target = p
            .target_port
            .as_ref()
            .map_or_else(|| p.port.to_string(), |t| t.to_string());
        d.pair(0, "TargetPort", format!("{target}/{proto}"));
        if s.spec.type_ == ServiceType::NodePort {
            let np = p
                .node_port
                .map_or("<pending>".to_string(), |n| n.to_string());
            d.pair(
                0,
                "NodePort",
                format!("{}  {np}/{proto}", or_unset(&p.name)),
            );
        }
        let eps = endpoints.map_or("<none>".to_string(), |e| endpoint_addresses(e, &p.name));
        d.pair(0, "Endpoints", eps);
    }
    d.pair(
        0,
        "Session Affinity",
        format!("{:?}", s.spec.session_affinity),
    );
    d.render()
}

/// `edgectl describe endpoints`.
pub fn describe_endpoints(e: &Endpoints) -> String {
    let mut d = Doc::default();
    header(&mut d, &e.metadata);
    if e.subsets.is_empty() {
        d.pair(0, "Subsets", "<none>");
        return d.render();
    }
    d.text(0, "Subsets:");
    for s in &e.subsets {
        let ips = |a: &[edge_api::service::EndpointAddress]| {
            if a.is_empty() {
                "<none>".to_string()
            } else {
                a.iter().map(|a| a.ip.clone()).collect::<Vec<_>>().join(",")
            }
        };
        d.pair(2, "Addresses", ips(&s.addresses));
        d.pair(2, "NotReadyAddresses", ips(&s.not_ready_addresses));
        d.pair(2, "Ports", "");
        let rows: Vec<Vec<String>> = s
            .ports
            .iter()
            .map(|p| {
                vec![
                    or_unset(&p.name),
                    p.port.to_string(),
                    format!("{:?}", p.protocol).to_ascii_uppercase(),
                ]
            })
            .collect();
        underlined(&mut d, 4, &["Name", "Port", "Protocol"], &rows);
        d.text(0, "");
    }
    d.render()
}

/// `edgectl describe event`.
pub fn describe_event(e: &Event) -> String {
    let mut d = Doc::default();
    header(&mut d, &e.metadata);
    d.pair(0, "Type", format!("{:?}", e.type_));
    d.pair(0, "Reason", e.reason.clone());
    d.pair(0, "Message", e.message.clone());
    d.pair(0, "Count", e.count.to_string());
    d.pair(0, "First Timestamp", timestamp(e.first_timestamp));
    d.pair(0, "Last Timestamp", timestamp(e.last_timestamp));
    d.pair(0, "Source", event_source(e));
    let o = &e.involved_object;
    d.text(0, "Involved Object:");
    d.pair(2, "Kind", o.kind.clone());
    d.pair(2, "Name", o.name.clone());
    if !o.namespace.is_empty() {
        d.pair(2, "Namespace", o.namespace.clone());
    }
    if !o.uid.is_empty() {
        d.pair(2, "UID", o.uid.clone());
    }
    d.render()
}
