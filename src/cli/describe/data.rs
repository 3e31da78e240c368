//! `describe configmap|secret`: a ConfigMap's keys with their values, a Secret's keys with their
//! sizes only.

use super::Doc;
use edge_api::configdata::decode_base64;
use edge_api::{ConfigMap, ObjectMeta, Secret};

fn header(d: &mut Doc, m: &ObjectMeta) {
    d.pair(0, "Name", m.name.clone());
    d.pair(0, "Namespace", m.namespace.clone());
    d.map(0, "Labels", &m.labels);
    d.map(0, "Annotations", &m.annotations);
}

/// `edgectl describe configmap`: each key as kubectl shows it (`key:`, `----`, the value), then
/// binary keys with their sizes.
pub fn describe_configmap(cm: &ConfigMap) -> String {
    let mut d = Doc::default();
    header(&mut d, &cm.metadata);
    let mut out = d.render();
    out.push_str("\nData\n====\n");
    for (i, (k, v)) in cm.data.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{k}:\n----\n{}", printable(v)));
        if !v.ends_with('\n') {
            out.push('\n');
        }
    }
    out.push_str("\nBinaryData\n====\n");
    let mut d = Doc::default();
    for (k, v) in &cm.binary_data {
        d.pair(0, k, byte_count(decode_base64(v).map(|b| b.len())));
    }
    out.push_str(&d.render());
    out
}

/// `edgectl describe secret`: the type and each key's size. Values are never printed, neither
/// decoded nor as base64 (`get -o yaml` is the explicit way to read them).
pub fn describe_secret(s: &Secret) -> String {
    let mut d = Doc::default();
    header(&mut d, &s.metadata);
    d.text(0, "");
    d.pair(0, "Type", s.type_.clone());
    d.text(0, "");
    d.text(0, "Data");
    d.text(0, "====");
    let mut sizes: std::collections::BTreeMap<&str, String> = s
        .data
        .iter()
        .map(|(k, v)| (k.as_str(), byte_count(decode_base64(v).map(|b| b.len()))))
        .collect();
    // A stringData key (not yet folded in by the server) wins, as it will when stored.
    for (k, v) in &s.string_data {
        sizes.insert(k, byte_count(Ok(v.len())));
    }
    for (k, size) in sizes {
        d.pair(0, k, size);
    }
    d.render()
}

fn byte_count(len: Result<usize, String>) -> String {
    match len {
        Ok(n) => format!("{n} bytes"),
        Err(_) => "<not valid base64>".into(),
    }
}

/// A value as text for a terminal: control characters other than newline and tab are shown
/// escaped, so a stored value cannot drive the terminal.
fn printable(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
