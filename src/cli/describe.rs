//! `edgectl describe`: kubectl-like `Key:  value` blocks for every kind, as pure functions.
//!
//! The layout engine (`Doc`), the dispatcher and pods, nodes and namespaces are here; `workload`
//! has the pod's volumes, probes, mounts and environment, `data` ConfigMaps and Secrets, `apps`
//! the workload kinds, `service` Services, Endpoints and Events, `template` pod templates and
//! `events` the `Events:` table every description ends with.

mod apps;
mod data;
mod events;
mod service;
mod template;
mod workload;

pub use apps::{
    describe_daemonset, describe_deployment, describe_job, describe_replicaset, owned_pods,
    pods_status, rolling_update_line,
};
pub use data::{describe_configmap, describe_secret};
pub use events::{event_age, events_about, events_text};
pub use service::{describe_endpoints, describe_event, describe_service};
pub use template::pod_template_text;
pub use workload::{env_value, probe_line};

use crate::cli::render::{self, age, node_roles};
use chrono::{DateTime, Local, Utc};
use edge_api::event::Event;
use edge_api::meta::Condition;
use edge_api::pod::{Container, ContainerStatus};
use edge_api::{quantity, Endpoints, Namespace, Node, Object, Pod, ReplicaSet};
use std::collections::BTreeMap;

/// Lines of a description. Values of consecutive `key: value` lines at one indent are aligned,
/// which is what kubectl's tabwriter gives its readers.
#[derive(Default)]
struct Doc {
    lines: Vec<Line>,
}

enum Line {
    Pair {
        indent: usize,
        key: String,
        value: String,
    },
    Text {
        indent: usize,
        text: String,
    },
}

impl Doc {
    fn pair(&mut self, indent: usize, key: &str, value: impl Into<String>) {
        self.lines.push(Line::Pair {
            indent,
            key: format!("{key}:"),
            value: value.into(),
        });
    }

    /// A value on its own line under the previous pair (more labels, say).
    fn more(&mut self, indent: usize, value: impl Into<String>) {
        self.lines.push(Line::Pair {
            indent,
            key: String::new(),
            value: value.into(),
        });
    }

    fn text(&mut self, indent: usize, text: impl Into<String>) {
        self.lines.push(Line::Text {
            indent,
            text: text.into(),
        });
    }

    /// `key=value` per line, `<none>` when empty (labels, annotations).
    fn map(&mut self, indent: usize, key: &str, map: &BTreeMap<String, String>) {
        let mut it = map.iter();
        match it.next() {
            None => self.pair(indent, key, "<none>"),
            Some((k, v)) => {
                self.pair(indent, key, format!("{k}={v}"));
                for (k, v) in it {
                    self.more(indent, format!("{k}={v}"));
                }
            }
        }
    }

    /// A heading with `name: value` pairs under it (capacity, limits); nothing when empty.
    fn section(&mut self, indent: usize, heading: &str, map: &BTreeMap<String, String>) {
        if map.is_empty() {
            return;
        }
        self.pair(indent, heading, "");
        for (k, v) in map {
            self.pair(indent + 2, k, v.clone());
        }
    }

    /// A table indented under a heading.
    fn table(&mut self, indent: usize, headers: &[&str], rows: &[Vec<String>]) {
        for line in render::table(headers, rows).lines() {
            self.text(indent, line);
        }
    }

    /// A pair's value column is shared by the pairs at its indent until a line less indented or
    /// a plain heading at that indent; deeper lines in between (a container's state details)
    /// do not break it, so a container's fields line up as in kubectl.
    fn render(&self) -> String {
        let n = self.lines.len();
        let mut widths: Vec<Option<usize>> = vec![None; n];
        for i in 0..n {
            let Line::Pair { indent, .. } = &self.lines[i] else {
                continue;
            };
            if widths[i].is_some() {
                continue;
            }
            let run_indent = *indent;
            let mut members = Vec::new();
            for j in i..n {
                match &self.lines[j] {
                    Line::Pair { indent, .. } if *indent == run_indent => members.push(j),
                    Line::Text { indent, .. } if *indent <= run_indent => break,
                    Line::Pair { indent, .. } if *indent < run_indent => break,
                    _ => {}
                }
            }
            let width = members
                .iter()
                .filter_map(|&j| match &self.lines[j] {
                    Line::Pair { key, value, .. } if !value.is_empty() => Some(key.chars().count()),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            for j in members {
                widths[j] = Some(width);
            }
        }
        let mut out = String::new();
        for (line, width) in self.lines.iter().zip(widths) {
            match line {
                Line::Text { indent, text } => push_line(&mut out, *indent, text),
                Line::Pair { indent, key, value } => {
                    let text = if value.is_empty() {
                        key.clone()
                    } else {
                        format!("{key:<w$}{value}", w = width.unwrap_or(0) + 2)
                    };
                    push_line(&mut out, *indent, &text);
                }
            }
        }
        out
    }
}

fn push_line(out: &mut String, indent: usize, text: &str) {
    out.extend(std::iter::repeat_n(' ', indent));
    out.push_str(text.trim_end());
    out.push('\n');
}

/// kubectl's describe time format (RFC 1123 with numeric zone), in local time.
pub fn timestamp(t: Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => t
            .with_timezone(&Local)
            .format("%a, %d %b %Y %H:%M:%S %z")
            .to_string(),
        None => "<unset>".into(),
    }
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

fn conditions(doc: &mut Doc, conds: &[Condition], with_time: bool) {
    if conds.is_empty() {
        doc.pair(0, "Conditions", "<none>");
        return;
    }
    doc.text(0, "Conditions:");
    let mut headers = vec!["Type", "Status"];
    if with_time {
        headers.push("LastTransitionTime");
    }
    headers.extend(["Reason", "Message"]);
    let rows: Vec<Vec<String>> = conds
        .iter()
        .map(|c| {
            let mut r = vec![c.type_.clone(), c.status.clone()];
            if with_time {
                r.push(timestamp(c.last_transition_time));
            }
            r.extend([c.reason.clone(), c.message.clone()]);
            r
        })
        .collect();
    doc.table(2, &headers, &rows);
}

/// `edgectl describe pod`.
pub fn describe_pod(p: &Pod) -> String {
    let mut d = Doc::default();
    let m = &p.metadata;
    d.pair(0, "Name", m.name.clone());
    d.pair(0, "Namespace", m.namespace.clone());
    d.pair(
        0,
        "Node",
        p.spec.node_name.clone().unwrap_or_else(|| "<none>".into()),
    );
    d.pair(0, "Start Time", timestamp(p.status.start_time));
    d.map(0, "Labels", &m.labels);
    d.map(0, "Annotations", &m.annotations);
    d.pair(0, "Status", p.display_status());
    if !p.status.reason.is_empty() {
        d.pair(0, "Reason", p.status.reason.clone());
    }
    if !p.status.message.is_empty() {
        d.pair(0, "Message", p.status.message.clone());
    }
    apps::controlled_by(&mut d, m);
    if !p.spec.node_selector.is_empty() {
        d.map(0, "Node-Selectors", &p.spec.node_selector);
    }
    d.pair(0, "Restart Policy", format!("{:?}", p.spec.restart_policy));
    if let Some(t) = m.deletion_timestamp {
        d.pair(0, "Terminating Since", timestamp(Some(t)));
    }
    d.text(0, "Containers:");
    for c in &p.spec.containers {
        let status = p
            .status
            .container_statuses
            .iter()
            .find(|s| s.name == c.name);
        container(&mut d, c, status);
    }
    conditions(&mut d, &p.status.conditions, false);
    workload::volumes(&mut d, &p.spec.volumes);
    d.render()
}

fn container(d: &mut Doc, c: &Container, status: Option<&ContainerStatus>) {
    d.text(2, format!("{}:", c.name));
    d.pair(4, "Image", c.image.clone());
    if let Some(s) = status.filter(|s| !s.image.is_empty() && s.image != c.image) {
        d.pair(4, "Image ID", s.image.clone());
    }
    if !c.ports.is_empty() {
        let ports: Vec<_> = c
            .ports
            .iter()
            .map(|p| format!("{}/{}", p.container_port, p.protocol))
            .collect();
        d.pair(4, "Ports", ports.join(", "));
    }
    if c.args.is_empty() {
        d.pair(4, "Args", "<none>");
    } else {
        d.pair(4, "Args", "");
        for a in &c.args {
            d.text(6, a.clone());
        }
    }
    match status {
        None => d.pair(4, "State", "Waiting"),
        Some(s) => {
            let st = &s.state;
            if let Some(t) = &st.terminated {
                d.pair(4, "State", "Terminated");
                d.pair(6, "Reason", or_none(&t.reason));
                if !t.message.is_empty() {
                    d.pair(6, "Message", t.message.clone());
                }
                d.pair(6, "Exit Code", t.exit_code.to_string());
                d.pair(6, "Started", timestamp(t.started_at));
                d.pair(6, "Finished", timestamp(t.finished_at));
            } else if let Some(r) = &st.running {
                d.pair(4, "State", "Running");
                d.pair(6, "Started", timestamp(r.started_at));
            } else if let Some(w) = &st.waiting {
                d.pair(4, "State", "Waiting");
                d.pair(6, "Reason", or_none(&w.reason));
                if !w.message.is_empty() {
                    d.pair(6, "Message", w.message.clone());
                }
            } else {
                d.pair(4, "State", "Waiting");
            }
        }
    }
    let (ready, restarts) = status.map_or((false, 0), |s| (s.ready, s.restart_count));
    d.pair(4, "Ready", if ready { "True" } else { "False" });
    d.pair(4, "Restart Count", restarts.to_string());
    d.section(4, "Limits", &c.resources.limits);
    d.section(4, "Requests", &c.resources.requests);
    workload::probes(d, c);
    workload::environment(d, c);
    workload::mounts(d, c);
    workload::outbound(d, c);
}

/// `edgectl describe node`, with the pods bound to it (`pods` may hold pods of other nodes;
/// only this node's non-terminated ones are shown).
pub fn describe_node(n: &Node, pods: &[Pod], now: DateTime<Utc>) -> String {
    let mut d = Doc::default();
    let m = &n.metadata;
    d.pair(0, "Name", m.name.clone());
    d.pair(0, "Roles", node_roles(n));
    d.map(0, "Labels", &m.labels);
    d.map(0, "Annotations", &m.annotations);
    d.pair(0, "CreationTimestamp", timestamp(m.creation_timestamp));
    d.pair(0, "Unschedulable", n.spec.unschedulable.to_string());
    conditions(&mut d, &n.status.conditions, true);
    if !n.status.addresses.is_empty() {
        d.text(0, "Addresses:");
        for a in &n.status.addresses {
            d.text(2, a.clone());
        }
    }
    d.section(0, "Capacity", &n.status.capacity);
    d.section(0, "Allocatable", &n.status.allocatable);
    let info = &n.status.node_info;
    d.text(0, "System Info:");
    d.pair(2, "Architecture", or_none(&info.architecture));
    d.pair(2, "Operating System", or_none(&info.operating_system));
    d.pair(2, "Agent Version", or_none(&info.agent_version));
    d.pair(2, "Runtime Version", or_none(&info.runtime_version));

    let mine: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.spec.node_name.as_deref() == Some(m.name.as_str()) && p.occupies_node())
        .collect();
    d.pair(
        0,
        "Non-terminated Pods",
        format!("({} in total)", mine.len()),
    );
    if !mine.is_empty() {
        let rows: Vec<Vec<String>> = mine
            .iter()
            .map(|p| {
                vec![
                    p.metadata.namespace.clone(),
                    p.metadata.name.clone(),
                    quantity::format("cpu", p.request("cpu")),
                    quantity::format("memory", p.request("memory")),
                    age(p.metadata.creation_timestamp, now),
                ]
            })
            .collect();
        d.table(
            2,
            &[
                "Namespace",
                "Name",
                "CPU Requests",
                "Memory Requests",
                "Age",
            ],
            &rows,
        );
    }
    d.text(0, "Allocated resources:");
    let rows: Vec<Vec<String>> = ["cpu", "memory"]
        .iter()
        .map(|r| {
            let used: u64 = mine.iter().map(|p| p.request(r)).sum();
            let total = n.allocatable(r);
            let pct = used.saturating_mul(100).checked_div(total).unwrap_or(0);
            vec![
                r.to_string(),
                format!("{} ({pct}%)", quantity::format(r, used)),
            ]
        })
        .collect();
    d.table(2, &["Resource", "Requests"], &rows);
    d.render()
}

/// `edgectl describe namespace`.
pub fn describe_namespace(ns: &Namespace) -> String {
    let mut d = Doc::default();
    d.pair(0, "Name", ns.metadata.name.clone());
    d.map(0, "Labels", &ns.metadata.labels);
    d.map(0, "Annotations", &ns.metadata.annotations);
    let status = if ns.metadata.deletion_timestamp.is_some() {
        "Terminating"
    } else if ns.status.phase.is_empty() {
        "Active"
    } else {
        ns.status.phase.as_str()
    };
    d.pair(0, "Status", status);
    d.render()
}

/// What descriptions show besides the object itself; the caller fetches it. Lists may hold
/// objects unrelated to the one described: each layout picks its own by owner or name.
#[derive(Default)]
pub struct Related<'a> {
    /// Pods (a node's, a workload's).
    pub pods: &'a [Pod],
    /// ReplicaSets (a Deployment's).
    pub replicasets: &'a [ReplicaSet],
    /// Endpoints (a Service's, by name).
    pub endpoints: &'a [Endpoints],
    /// Events (those about the object, by uid, are shown).
    pub events: &'a [Event],
}

/// The description of any object, ending with its events as kubectl's do.
pub fn describe(obj: &Object, r: &Related, now: DateTime<Utc>) -> String {
    let m = obj.meta();
    let mut out = match obj {
        Object::Pod(p) => describe_pod(p),
        Object::Node(n) => describe_node(n, r.pods, now),
        Object::Namespace(ns) => describe_namespace(ns),
        Object::ConfigMap(cm) => describe_configmap(cm),
        Object::Secret(sec) => describe_secret(sec),
        Object::Deployment(d) => describe_deployment(d, r.replicasets),
        Object::ReplicaSet(rs) => describe_replicaset(rs, r.pods),
        Object::DaemonSet(ds) => describe_daemonset(ds, r.pods),
        Object::Job(j) => describe_job(j, r.pods, now),
        Object::Service(s) => {
            let eps = r
                .endpoints
                .iter()
                .find(|e| e.metadata.name == m.name && e.metadata.namespace == m.namespace);
            describe_service(s, eps)
        }
        Object::Endpoints(e) => describe_endpoints(e),
        Object::Event(e) => return describe_event(e),
    };
    out.push_str(&events_text(&events_about(&m.uid, r.events), now));
    out
}

#[cfg(test)]
#[path = "describe_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "describe_apps_tests.rs"]
mod apps_tests;
