//! What `get` adds around a kind's columns: `kind/name` names when several kinds are shown,
//! `--show-labels` and `-L` label columns. Pure, over `render`'s headers and rows.

use crate::cli::render::{self, Columns};
use chrono::{DateTime, Utc};
use edge_api::{Kind, Object};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct TableOpts {
    pub cols: Columns,
    /// Name objects `kind/name` (several kinds requested, or `--show-kind`).
    pub show_kind: bool,
    /// A LABELS column at the end.
    pub show_labels: bool,
    /// One column per label key (`-L app`), before LABELS.
    pub label_columns: Vec<String>,
}

/// kubectl's header for a `-L` column: the key's last path segment, upper-cased.
pub fn label_header(key: &str) -> String {
    key.rsplit('/').next().unwrap_or(key).to_ascii_uppercase()
}

/// `a=1,b=2`, or `<none>`.
pub fn labels_cell(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "<none>".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl TableOpts {
    /// The position of the NAME column, where kinds have one (events do not).
    fn name_index(&self, kind: Kind) -> Option<usize> {
        render::headers(kind, self.cols)
            .iter()
            .position(|h| *h == "NAME")
    }

    pub fn headers(&self, kind: Kind) -> Vec<String> {
        let mut h: Vec<String> = render::headers(kind, self.cols)
            .into_iter()
            .map(str::to_string)
            .collect();
        h.extend(self.label_columns.iter().map(|k| label_header(k)));
        if self.show_labels {
            h.push("LABELS".into());
        }
        h
    }

    pub fn row(&self, obj: &Object, now: DateTime<Utc>) -> Vec<String> {
        let mut r = render::row(obj, self.cols, now);
        if self.show_kind {
            if let Some(cell) = self.name_index(obj.kind()).and_then(|i| r.get_mut(i)) {
                *cell = format!("{}/{cell}", obj.kind().as_str().to_ascii_lowercase());
            }
        }
        let labels = &obj.meta().labels;
        for key in &self.label_columns {
            r.push(labels.get(key).cloned().unwrap_or_default());
        }
        if self.show_labels {
            r.push(labels_cell(labels));
        }
        r
    }

    /// A whole table of objects of one kind.
    pub fn table(&self, kind: Kind, objects: &[Object], now: DateTime<Utc>) -> String {
        let headers = self.headers(kind);
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let rows: Vec<_> = objects.iter().map(|o| self.row(o, now)).collect();
        render::table(&headers, &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::testutil::*;

    #[test]
    fn show_kind_labels_and_label_columns() {
        let mut p = running_pod();
        p.metadata
            .labels
            .insert("app.kubernetes.io/tier".into(), "front".into());
        let opts = TableOpts {
            show_kind: true,
            show_labels: true,
            label_columns: vec!["app.kubernetes.io/tier".into(), "missing".into()],
            ..Default::default()
        };
        assert_eq!(
            opts.headers(Kind::Pod),
            ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "TIER", "MISSING", "LABELS"]
        );
        let row = opts.row(&Object::Pod(p), now());
        assert_eq!(row[0], "pod/hello");
        assert_eq!(
            row[5..],
            ["front", "", "app=hello,app.kubernetes.io/tier=front"]
        );
    }

    #[test]
    fn all_namespaces_keeps_the_namespace_first_and_no_labels_read_none() {
        let mut p = running_pod();
        p.metadata.labels.clear();
        let opts = TableOpts {
            cols: Columns {
                namespace: true,
                wide: false,
            },
            show_kind: true,
            show_labels: true,
            ..Default::default()
        };
        let row = opts.row(&Object::Pod(p), now());
        assert_eq!(row[..2], ["default", "pod/hello"]);
        assert_eq!(row.last().map(String::as_str), Some("<none>"));
        let table = opts.table(Kind::Pod, &[], now());
        assert!(table.starts_with("NAMESPACE   NAME"), "{table}");
    }
}
