//! Parsing YAML manifests (multi-document) into objects, with caps on size, depth and aliases
//! and errors that name the document, the object and the field.

use crate::object::{Kind, Namespace, Node, Object};
use crate::pod::Pod;
use serde::de::DeserializeOwned;

/// Larger manifests are refused before parsing: nothing legitimate comes close.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{source_name}: manifest is {size} bytes, more than the {MAX_MANIFEST_BYTES}-byte limit; split it into several files")]
    TooLarge { source_name: String, size: usize },
    #[error("{source_name}: not valid YAML: {message}")]
    Yaml {
        source_name: String,
        message: String,
    },
    #[error("{source_name} (document {document}): {message}")]
    Document {
        source_name: String,
        document: usize,
        message: String,
    },
}

fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = 64;
    budget.max_aliases = 100;
    budget.max_anchors = 100;
    budget.max_documents = 1000;
    budget.max_nodes = 200_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// Parses every document in `text`; `source_name` (usually the file path) prefixes errors.
pub fn parse_documents(text: &str, source_name: &str) -> Result<Vec<Object>, ManifestError> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            source_name: source_name.to_string(),
            size: text.len(),
        });
    }
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple_with_options(text, yaml_options()).map_err(|e| {
            ManifestError::Yaml {
                source_name: source_name.to_string(),
                message: e.to_string(),
            }
        })?;
    docs.into_iter()
        .enumerate()
        .filter(|(_, d)| !d.is_null())
        .map(|(i, doc)| {
            object_from_value(doc).map_err(|message| ManifestError::Document {
                source_name: source_name.to_string(),
                document: i + 1,
                message,
            })
        })
        .collect()
}

/// Turns one parsed document into a typed object, rejecting unknown kinds and fields.
pub fn object_from_value(mut doc: serde_json::Value) -> Result<Object, String> {
    let map = doc
        .as_object_mut()
        .ok_or("expected a mapping with apiVersion, kind, metadata and spec")?;
    let kind_name = match map.remove("kind") {
        Some(serde_json::Value::String(k)) => k,
        Some(_) => return Err("kind: must be a string such as Pod".into()),
        None => return Err("kind: missing; every object needs a kind such as Pod".into()),
    };
    match map.get("apiVersion").and_then(|v| v.as_str()) {
        Some(crate::API_VERSION) | Some("v1") => {}
        Some(other) => {
            return Err(format!(
                "apiVersion: {other:?} is not served; use {:?}",
                crate::API_VERSION
            ))
        }
        None => return Err(format!("apiVersion: missing; use {:?}", crate::API_VERSION)),
    }
    map.insert("apiVersion".into(), crate::API_VERSION.into());
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_string();
    let kind = Kind::parse(&kind_name)
        .filter(|k| k.as_str() == kind_name)
        .ok_or_else(|| {
            let known: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            format!(
                "kind: unknown kind {kind_name:?}; this server knows {}",
                known.join(", ")
            )
        })?;
    let prefix = format!("{kind} {name:?}");
    let typed = |e: String| format!("{prefix}: {e}");
    Ok(match kind {
        Kind::Pod => Object::Pod(typed_from::<Pod>(doc).map_err(typed)?),
        Kind::Node => Object::Node(typed_from::<Node>(doc).map_err(typed)?),
        Kind::Namespace => Object::Namespace(typed_from::<Namespace>(doc).map_err(typed)?),
        Kind::ConfigMap => Object::ConfigMap(typed_from(doc).map_err(typed)?),
        Kind::Secret => Object::Secret(typed_from(doc).map_err(typed)?),
        Kind::Event => Object::Event(typed_from(doc).map_err(typed)?),
        Kind::Deployment => Object::Deployment(typed_from(doc).map_err(typed)?),
        Kind::ReplicaSet => Object::ReplicaSet(typed_from(doc).map_err(typed)?),
        Kind::DaemonSet => Object::DaemonSet(typed_from(doc).map_err(typed)?),
        Kind::Job => Object::Job(typed_from(doc).map_err(typed)?),
        Kind::Service => Object::Service(typed_from(doc).map_err(typed)?),
        Kind::Endpoints => Object::Endpoints(typed_from(doc).map_err(typed)?),
    })
}

fn typed_from<T: DeserializeOwned>(doc: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_with_separators() {
        let y = "---\napiVersion: edge.dev/v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\nspec:\n  containers:\n  - name: c\n    image: ./x.wasm\n---\n";
        let objs = parse_documents(y, "f.yaml").unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].kind(), Kind::Namespace);
        assert_eq!(objs[1].key().namespace, "a");
    }

    #[test]
    fn unknown_kind_is_named() {
        let e = parse_documents(
            "apiVersion: v1\nkind: Gizmo\nmetadata: {name: g}\n",
            "f.yaml",
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("f.yaml (document 1)") && s.contains("Gizmo") && s.contains("Pod"),
            "{s}"
        );
    }

    #[test]
    fn unknown_field_names_its_path() {
        let y = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    imag: x\n";
        let s = parse_documents(y, "f.yaml").unwrap_err().to_string();
        assert!(
            s.contains("Pod \"p\"") && s.contains("spec.containers[0]") && s.contains("imag"),
            "{s}"
        );
    }

    #[test]
    fn broken_yaml_is_an_error() {
        let e = parse_documents("kind: [unclosed\n", "f.yaml").unwrap_err();
        assert!(matches!(e, ManifestError::Yaml { .. }), "{e}");
    }

    #[test]
    fn alias_bombs_are_capped() {
        let mut y = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..20 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("b{}", i - 1)
            };
            y.push_str(&format!("b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(parse_documents(&y, "bomb.yaml").is_err());
    }

    #[test]
    fn oversized_manifest_is_refused() {
        let y = "#".repeat(MAX_MANIFEST_BYTES + 1);
        assert!(matches!(
            parse_documents(&y, "big.yaml"),
            Err(ManifestError::TooLarge { .. })
        ));
    }
}
