//! Table columns for the workload, service and event kinds, as `kubectl get` prints them.

use crate::cli::render::{age, Columns};
use chrono::{DateTime, Utc};
use edge_api::apps::{DaemonSet, Job, PodTemplateSpec};
use edge_api::event::Event;
use edge_api::scheduling::LabelSelector;
use edge_api::service::{Endpoints, Service, ServiceType};
use edge_api::{Kind, Object};

/// Headers for the kinds this file renders; `None` for the others.
pub fn headers(kind: Kind, wide: bool) -> Option<Vec<&'static str>> {
    let mut h = match kind {
        Kind::Deployment => vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        Kind::ReplicaSet => vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        Kind::DaemonSet => vec![
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE",
        ],
        Kind::Job => vec!["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        Kind::Service => vec!["NAME", "TYPE", "PORT(S)", "AGE"],
        Kind::Endpoints => vec!["NAME", "ENDPOINTS", "AGE"],
        Kind::Event => vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        _ => return None,
    };
    if wide {
        match kind {
            Kind::Deployment | Kind::ReplicaSet | Kind::DaemonSet | Kind::Job => {
                h.extend(["IMAGES", "SELECTOR"])
            }
            Kind::Service => h.push("SELECTOR"),
            Kind::Event => h.extend(["SOURCE", "COUNT", "FIRST SEEN"]),
            _ => {}
        }
    }
    Some(h)
}

/// Cells for the kinds this file renders; `None` for the others.
pub fn cells(obj: &Object, cols: Columns, now: DateTime<Utc>) -> Option<Vec<String>> {
    let name = obj.meta().name.clone();
    let created = age(obj.meta().creation_timestamp, now);
    let wide = cols.wide;
    Some(match obj {
        Object::Deployment(d) => {
            let s = &d.status;
            let want = d.spec.replicas.unwrap_or(1);
            let mut c = vec![
                name,
                format!("{}/{want}", s.ready_replicas),
                s.updated_replicas.to_string(),
                s.available_replicas.to_string(),
                created,
            ];
            workload_wide(&mut c, wide, &d.spec.template, Some(&d.spec.selector));
            c
        }
        Object::ReplicaSet(rs) => {
            let s = &rs.status;
            let mut c = vec![
                name,
                rs.spec.replicas.unwrap_or(1).to_string(),
                s.replicas.to_string(),
                s.ready_replicas.to_string(),
                created,
            ];
            workload_wide(&mut c, wide, &rs.spec.template, Some(&rs.spec.selector));
            c
        }
        Object::DaemonSet(ds) => daemonset_cells(ds, name, created, wide),
        Object::Job(j) => job_cells(j, name, created, wide, now),
        Object::Service(s) => {
            let mut c = vec![
                name,
                format!("{:?}", s.spec.type_),
                service_ports(s),
                created,
            ];
            if wide {
                c.push(map_or_none(&s.spec.selector));
            }
            c
        }
        Object::Endpoints(e) => vec![name, endpoints_summary(e), created],
        Object::Event(e) => event_cells(e, wide, now),
        _ => return None,
    })
}

fn workload_wide(
    c: &mut Vec<String>,
    wide: bool,
    t: &PodTemplateSpec,
    sel: Option<&LabelSelector>,
) {
    if !wide {
        return;
    }
    let images: Vec<String> = t
        .spec
        .containers
        .iter()
        .map(|c| crate::cli::render::short_image(&c.image))
        .collect();
    c.push(images.join(","));
    c.push(sel.map(selector_string).unwrap_or_else(|| "<none>".into()));
}

fn daemonset_cells(ds: &DaemonSet, name: String, created: String, wide: bool) -> Vec<String> {
    let s = &ds.status;
    let mut c = vec![
        name,
        s.desired_number_scheduled.to_string(),
        s.current_number_scheduled.to_string(),
        s.number_ready.to_string(),
        s.updated_number_scheduled.to_string(),
        s.number_available.to_string(),
        map_or_none(&ds.spec.template.spec.node_selector),
        created,
    ];
    workload_wide(&mut c, wide, &ds.spec.template, Some(&ds.spec.selector));
    c
}

fn job_cells(
    j: &Job,
    name: String,
    created: String,
    wide: bool,
    now: DateTime<Utc>,
) -> Vec<String> {
    let s = &j.status;
    let status = job_status(j);
    let duration = match (s.start_time, s.completion_time) {
        (Some(start), Some(end)) => crate::cli::render::format_age(end - start),
        (Some(start), None) => crate::cli::render::format_age(now - start),
        _ => String::new(),
    };
    let mut c = vec![
        name,
        status,
        format!("{}/{}", s.succeeded, j.spec.completions.unwrap_or(1)),
        duration,
        created,
    ];
    workload_wide(&mut c, wide, &j.spec.template, j.spec.selector.as_ref());
    c
}

/// `Complete`, `Failed`, `Running` or `Suspended`-free `Pending`, from the Job's conditions.
pub fn job_status(j: &Job) -> String {
    let is =
        |t: &str| edge_api::meta::condition(&j.status.conditions, t).is_some_and(|c| c.is_true());
    if is("Complete") {
        "Complete".into()
    } else if is("Failed") {
        "Failed".into()
    } else if j.status.active > 0 {
        "Running".into()
    } else {
        "Pending".into()
    }
}

fn event_cells(e: &Event, wide: bool, now: DateTime<Utc>) -> Vec<String> {
    let o = &e.involved_object;
    let mut c = vec![
        age(e.last_timestamp.or(e.first_timestamp), now),
        format!("{:?}", e.type_),
        e.reason.clone(),
        format!("{}/{}", o.kind.to_ascii_lowercase(), o.name),
        e.message.clone(),
    ];
    if wide {
        let src = match (e.source.component.as_str(), e.source.host.as_str()) {
            (c, "") => c.to_string(),
            (c, h) => format!("{c}, {h}"),
        };
        c.extend([src, e.count.to_string(), age(e.first_timestamp, now)]);
    }
    c
}

/// `80:30080/TCP,443/TCP`, as kubectl shows ports.
pub fn service_ports(s: &Service) -> String {
    s.spec
        .ports
        .iter()
        .map(|p| {
            let proto = format!("{:?}", p.protocol).to_ascii_uppercase();
            match p.node_port {
                Some(np) if s.spec.type_ == ServiceType::NodePort => {
                    format!("{}:{np}/{proto}", p.port)
                }
                _ => format!("{}/{proto}", p.port),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Ready `ip:port` pairs, at most three then `+ N more...`, as kubectl does.
pub fn endpoints_summary(e: &Endpoints) -> String {
    let all: Vec<String> = e
        .subsets
        .iter()
        .flat_map(|s| {
            s.addresses
                .iter()
                .flat_map(move |a| s.ports.iter().map(move |p| format!("{}:{}", a.ip, p.port)))
        })
        .collect();
    match all.len() {
        0 => "<none>".into(),
        n if n > 3 => format!("{} + {} more...", all[..3].join(","), n - 3),
        _ => all.join(","),
    }
}

/// `app=web,tier in (a,b)`: a label selector as the command line writes it.
pub fn selector_string(s: &LabelSelector) -> String {
    use edge_api::scheduling::LabelSelectorOperator::*;
    let mut parts: Vec<String> = s
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for r in &s.match_expressions {
        parts.push(match r.operator {
            In => format!("{} in ({})", r.key, r.values.join(",")),
            NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
            Exists => r.key.clone(),
            DoesNotExist => format!("!{}", r.key),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn map_or_none(m: &std::collections::BTreeMap<String, String>) -> String {
    if m.is_empty() {
        return "<none>".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
