//! Pure rendering of objects the way kubectl prints them: borderless tables, ages, `-o name`,
//! and YAML/JSON documents (a `List` when several objects are printed).

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, Utc};
use comfy_table::{presets, CellAlignment, Table};
use edge_api::{ConfigMap, Kind, Namespace, Node, Object, Pod, Secret};

/// Label prefix that gives a node its ROLES column (`node-role.edge.dev/gateway`).
pub const NODE_ROLE_PREFIX: &str = "node-role.edge.dev/";

/// kubectl's column gap.
const GAP: u16 = 3;

/// Which columns a table has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Columns {
    /// `-o wide`.
    pub wide: bool,
    /// `-A`: a NAMESPACE column first (namespaced kinds only).
    pub namespace: bool,
}

/// kubectl's `HumanDuration`: two significant units while they matter (`3m20s`, `5h10m`, `3d4h`),
/// one afterwards, so a glance at AGE reads the same in both tools.
pub fn format_age(d: Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let dy = days % 365;
        return if dy == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{dy}d")
        };
    }
    format!("{years}y")
}

/// The AGE of something created at `ts`, `<unknown>` when the server set no timestamp.
pub fn age(ts: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match ts {
        Some(t) => format_age(now - t),
        None => "<unknown>".into(),
    }
}

/// Renders rows under the headers as given (`headers` gives `get` its upper-case ones):
/// borderless, left aligned, columns three spaces apart, no trailing spaces, as kubectl's
/// tabwriter prints.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(headers.to_vec());
    for r in rows {
        t.add_row(r.clone());
    }
    let last = headers.len().saturating_sub(1);
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, if i == last { 0 } else { GAP }));
        col.set_cell_alignment(CellAlignment::Left);
    }
    let mut s = t.trim_fmt();
    s.push('\n');
    s
}

/// Column widths remembered from the first table of `get -w`, so rows printed later for watch
/// events line up under it (a wider cell widens its column from then on).
#[derive(Clone, Debug, Default)]
pub struct WatchColumns {
    widths: Vec<usize>,
}

impl WatchColumns {
    pub fn new(headers: &[&str], rows: &[Vec<String>]) -> Self {
        let mut w = WatchColumns {
            widths: headers.iter().map(|h| h.chars().count()).collect(),
        };
        for r in rows {
            w.widen(r);
        }
        w
    }

    fn widen(&mut self, row: &[String]) {
        for (i, cell) in row.iter().enumerate() {
            let n = cell.chars().count();
            match self.widths.get_mut(i) {
                Some(w) => *w = (*w).max(n),
                None => self.widths.push(n),
            }
        }
    }

    /// One row as a line (with newline) in the remembered layout.
    pub fn line(&mut self, row: &[String]) -> String {
        self.widen(row);
        let mut s = String::new();
        for (i, cell) in row.iter().enumerate() {
            s.push_str(cell);
            if i + 1 < row.len() {
                let pad = self.widths[i] - cell.chars().count() + GAP as usize;
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        s.push('\n');
        s
    }
}

/// The header of a `kind` table.
pub fn headers(kind: Kind, cols: Columns) -> Vec<&'static str> {
    let mut h = Vec::new();
    if cols.namespace && kind.namespaced() {
        h.push("NAMESPACE");
    }
    if let Some(more) = crate::cli::render_apps::headers(kind, cols.wide) {
        h.extend(more);
        return h;
    }
    match kind {
        Kind::Pod => {
            h.extend(["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
            if cols.wide {
                h.extend(["NODE", "IMAGES"]);
            }
        }
        Kind::Node => {
            h.extend(["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
            if cols.wide {
                h.extend(["ARCH", "OS", "CPU", "MEMORY"]);
            }
        }
        Kind::Namespace => h.extend(["NAME", "STATUS", "AGE"]),
        Kind::ConfigMap => h.extend(["NAME", "DATA", "AGE"]),
        Kind::Secret => h.extend(["NAME", "TYPE", "DATA", "AGE"]),
        _ => {}
    }
    h
}

/// One table row for `obj`, matching `headers(obj.kind(), cols)`.
pub fn row(obj: &Object, cols: Columns, now: DateTime<Utc>) -> Vec<String> {
    let mut r = Vec::new();
    if cols.namespace && obj.kind().namespaced() {
        r.push(obj.meta().namespace.clone());
    }
    if let Some(more) = crate::cli::render_apps::cells(obj, cols, now) {
        r.extend(more);
        return r;
    }
    match obj {
        Object::Pod(p) => r.extend(pod_cells(p, cols.wide, now)),
        Object::Node(n) => r.extend(node_cells(n, cols.wide, now)),
        Object::Namespace(ns) => r.extend(namespace_cells(ns, now)),
        Object::ConfigMap(cm) => r.extend([
            cm.metadata.name.clone(),
            configmap_keys(cm).to_string(),
            age(cm.metadata.creation_timestamp, now),
        ]),
        Object::Secret(s) => r.extend([
            s.metadata.name.clone(),
            s.type_.clone(),
            secret_keys(s).to_string(),
            age(s.metadata.creation_timestamp, now),
        ]),
        _ => {}
    }
    r
}

/// `ready/total` over the pod's declared components.
pub fn pod_ready(p: &Pod) -> String {
    let ready = p
        .status
        .container_statuses
        .iter()
        .filter(|c| c.ready)
        .count();
    format!("{ready}/{}", p.spec.containers.len())
}

fn pod_cells(p: &Pod, wide: bool, now: DateTime<Utc>) -> Vec<String> {
    let mut c = vec![
        p.metadata.name.clone(),
        pod_ready(p),
        p.display_status(),
        p.restarts().to_string(),
        age(p.metadata.creation_timestamp, now),
    ];
    if wide {
        c.push(p.spec.node_name.clone().unwrap_or_else(|| "<none>".into()));
        let images: Vec<_> = p
            .spec
            .containers
            .iter()
            .map(|c| short_image(&c.image))
            .collect();
        c.push(if images.is_empty() {
            "<none>".into()
        } else {
            images.join(",")
        });
    }
    c
}

/// A digest shortened to what a person compares (`sha256:0123456789ab`); other references as-is.
pub fn short_image(image: &str) -> String {
    match image.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 12 => format!("sha256:{}", &hex[..12]),
        _ => image.to_string(),
    }
}

/// `Ready` / `NotReady`, with `,SchedulingDisabled` for a cordoned node.
pub fn node_status(n: &Node) -> String {
    let mut s = if n.is_ready() { "Ready" } else { "NotReady" }.to_string();
    if n.spec.unschedulable {
        s.push_str(",SchedulingDisabled");
    }
    s
}

/// Roles from `node-role.edge.dev/<role>` labels, `<none>` without any.
pub fn node_roles(n: &Node) -> String {
    let roles: Vec<_> = n
        .metadata
        .labels
        .keys()
        .filter_map(|k| k.strip_prefix(NODE_ROLE_PREFIX))
        .filter(|r| !r.is_empty())
        .collect();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

fn node_cells(n: &Node, wide: bool, now: DateTime<Utc>) -> Vec<String> {
    let info = &n.status.node_info;
    let mut c = vec![
        n.metadata.name.clone(),
        node_status(n),
        node_roles(n),
        age(n.metadata.creation_timestamp, now),
        or_none(&info.agent_version),
    ];
    if wide {
        let resource = |r: &str| {
            n.status
                .allocatable
                .get(r)
                .or_else(|| n.status.capacity.get(r))
                .cloned()
                .unwrap_or_else(|| "<none>".into())
        };
        c.extend([
            or_none(&info.architecture),
            or_none(&info.operating_system),
            resource("cpu"),
            resource("memory"),
        ]);
    }
    c
}

fn namespace_cells(ns: &Namespace, now: DateTime<Utc>) -> Vec<String> {
    let status = if ns.metadata.deletion_timestamp.is_some() {
        "Terminating".to_string()
    } else if ns.status.phase.is_empty() {
        "Active".to_string()
    } else {
        ns.status.phase.clone()
    };
    vec![
        ns.metadata.name.clone(),
        status,
        age(ns.metadata.creation_timestamp, now),
    ]
}

/// The DATA column of a ConfigMap: its keys in `data` and `binaryData`.
pub fn configmap_keys(cm: &ConfigMap) -> usize {
    cm.data.len() + cm.binary_data.len()
}

/// The DATA column of a Secret: its keys (a `stringData` key not yet folded in counts once).
pub fn secret_keys(s: &Secret) -> usize {
    s.data.len()
        + s.string_data
            .keys()
            .filter(|k| !s.data.contains_key(*k))
            .count()
}

/// A whole table for objects of one kind.
pub fn objects_table(kind: Kind, objects: &[Object], cols: Columns, now: DateTime<Utc>) -> String {
    let rows: Vec<_> = objects.iter().map(|o| row(o, cols, now)).collect();
    table(&headers(kind, cols), &rows)
}

/// `-o name`: `pod/hello`.
pub fn object_name(obj: &Object) -> String {
    format!(
        "{}/{}",
        obj.kind().as_str().to_ascii_lowercase(),
        obj.meta().name
    )
}

/// Serializes through JSON values with keys sorted, which is the field order kubectl prints
/// (apiVersion, kind, metadata, spec, status), and fills in a missing apiVersion.
fn to_value(obj: &Object) -> Result<serde_json::Value> {
    let mut obj = obj.clone();
    if obj.api_version_mut().is_empty() {
        *obj.api_version_mut() = edge_api::API_VERSION.to_string();
    }
    let v = serde_json::to_value(&obj).context("cannot encode object")?;
    Ok(sorted(v))
}

fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

/// One object as itself, or several (or a listing) as a kubectl `List`.
fn document(objects: &[Object], as_list: bool) -> Result<serde_json::Value> {
    if !as_list && objects.len() == 1 {
        return to_value(&objects[0]);
    }
    let items = objects.iter().map(to_value).collect::<Result<Vec<_>>>()?;
    Ok(serde_json::json!({
        "apiVersion": edge_api::API_VERSION,
        "items": items,
        "kind": "List",
    }))
}

/// `-o yaml`.
pub fn to_yaml(objects: &[Object], as_list: bool) -> Result<String> {
    let doc = document(objects, as_list)?;
    serde_saphyr::to_string(&doc).context("cannot render YAML")
}

/// `-o json`, pretty and newline-terminated.
pub fn to_json(objects: &[Object], as_list: bool) -> Result<String> {
    let doc = document(objects, as_list)?;
    let mut s = serde_json::to_string_pretty(&doc).context("cannot render JSON")?;
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
