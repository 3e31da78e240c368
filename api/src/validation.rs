//! Validation of objects before anything is stored: names, labels, and each kind's required fields.

use crate::object::Object;
use crate::pod::Pod;

/// One problem with one field of one object, worded so the user knows what to fix.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{object}: {field}: {message}")]
pub struct ValidationError {
    /// `Pod "default/hello"` style description of the object.
    pub object: String,
    /// Dotted path of the offending field, e.g. `spec.containers[0].image`.
    pub field: String,
    pub message: String,
}

/// DNS-1123 label: lower-case alphanumerics and '-', starting and ending alphanumeric, ≤ 63.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!(
            "must be at most 63 characters (it has {})",
            s.len()
        ));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let bytes = s.as_bytes();
    if !s.chars().all(ok_char) || bytes[0] == b'-' || bytes[s.len() - 1] == b'-' {
        return Err(format!(
            "{s:?} is not a valid DNS-1123 label: use lower-case letters, digits and '-', starting and ending with a letter or digit (e.g. \"my-app\")"
        ));
    }
    Ok(())
}

/// DNS-1123 subdomain: dot-separated labels, ≤ 253 characters.
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err(format!(
            "must be at most 253 characters (it has {})",
            s.len()
        ));
    }
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    s.split('.').try_for_each(dns1123_label).map_err(|_| {
        format!(
            "{s:?} is not a valid DNS-1123 subdomain: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit (e.g. \"my-app\")"
        )
    })
}

fn label_name(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(ok)
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A label key: optional DNS subdomain prefix and '/', then a name of ≤ 63 characters.
pub fn label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        dns1123_subdomain(p)?;
    }
    if !label_name(name) {
        return Err(
            "must be alphanumerics, '-', '_' or '.', at most 63, starting and ending alphanumeric"
                .into(),
        );
    }
    Ok(())
}

pub fn label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || label_name(v) {
        Ok(())
    } else {
        Err("must be empty or alphanumerics, '-', '_' or '.', at most 63, starting and ending alphanumeric".into())
    }
}

/// Validates an object as the API server receives it (after defaults were applied).
pub fn validate(obj: &Object) -> Result<(), ValidationError> {
    let key = obj.key();
    let what = if key.name.is_empty() {
        format!("{} (unnamed)", key.kind)
    } else {
        key.to_string()
    };
    let fail = |field: &str, message: String| ValidationError {
        object: what.clone(),
        field: field.to_string(),
        message,
    };
    let meta = obj.meta();
    dns1123_subdomain(&meta.name).map_err(|m| fail("metadata.name", m))?;
    if obj.kind().namespaced() {
        dns1123_label(&meta.namespace).map_err(|m| fail("metadata.namespace", m))?;
    }
    for (k, v) in &meta.labels {
        label_key(k).map_err(|m| fail(&format!("metadata.labels[{k:?}]"), format!("key {m}")))?;
        label_value(v).map_err(|m| {
            fail(
                &format!("metadata.labels[{k:?}]"),
                format!("value {v:?} {m}"),
            )
        })?;
    }
    match obj {
        Object::Pod(p) => validate_pod(p).map_err(|(f, m)| fail(&f, m)),
        Object::Namespace(_) => dns1123_label(&meta.name).map_err(|m| fail("metadata.name", m)),
        Object::Node(_) => Ok(()),
    }
}

fn validate_pod(pod: &Pod) -> Result<(), (String, String)> {
    if pod.spec.containers.is_empty() {
        return Err((
            "spec.containers".into(),
            "a pod needs at least one component under spec.containers".into(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in pod.spec.containers.iter().enumerate() {
        let field = |f: &str| format!("spec.containers[{i}].{f}");
        dns1123_label(&c.name).map_err(|m| (field("name"), m))?;
        if !seen.insert(c.name.as_str()) {
            return Err((
                field("name"),
                format!("duplicate component name {:?}", c.name),
            ));
        }
        validate_image(&c.image).map_err(|m| (field("image"), m))?;
        for (j, e) in c.env.iter().enumerate() {
            if e.name.is_empty() || e.name.contains('=') || e.name.contains('\0') {
                return Err((
                    field(&format!("env[{j}].name")),
                    format!("{:?} is not a valid environment variable name", e.name),
                ));
            }
        }
        for (section, map) in [
            ("requests", &c.resources.requests),
            ("limits", &c.resources.limits),
        ] {
            for (res, q) in map {
                if res != "cpu" && res != "memory" {
                    return Err((
                        field(&format!("resources.{section}")),
                        format!("unknown resource {res:?}: use cpu or memory"),
                    ));
                }
                crate::quantity::parse(res, q)
                    .map_err(|e| (field(&format!("resources.{section}.{res}")), e.to_string()))?;
            }
        }
    }
    for (k, v) in &pod.spec.node_selector {
        label_key(k).map_err(|m| (format!("spec.nodeSelector[{k:?}]"), m))?;
        label_value(v).map_err(|m| (format!("spec.nodeSelector[{k:?}]"), m))?;
    }
    Ok(())
}

/// What the API server accepts as a component reference. Local paths never reach it:
/// `edgectl apply` uploads them first.
pub fn validate_image(image: &str) -> Result<(), String> {
    if let Some(hex) = image.strip_prefix("sha256:") {
        if hex.len() == 64
            && hex
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            return Ok(());
        }
        return Err(format!("{image:?} is not a valid digest: expected sha256: followed by 64 lower-case hex digits"));
    }
    if image.is_empty() {
        return Err("must name a component: a local .wasm path (uploaded by edgectl apply) or sha256:<digest>".into());
    }
    Err(format!(
        "{image:?} is not an uploaded component: use `edgectl apply -f` with a local .wasm path so it is uploaded, or a sha256:<digest> of an uploaded one"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_documents;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn pod(name: &str, image: &str) -> Object {
        let y = format!("apiVersion: edge.dev/v1\nkind: Pod\nmetadata: {{name: {name:?}}}\nspec: {{containers: [{{name: main, image: {image:?}}}]}}\n");
        let mut o = parse_documents(&y, "t").unwrap().remove(0);
        o.default_namespace("default");
        o
    }

    #[test]
    fn dns1123_names() {
        assert!(dns1123_label("my-app-1").is_ok());
        for bad in ["", "My-App", "-a", "a-", "a_b", &"x".repeat(64)] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
        assert!(dns1123_subdomain("a.b-c.d").is_ok());
        assert!(dns1123_subdomain("a..b").is_err());
    }

    #[test]
    fn a_valid_pod_passes() {
        assert_eq!(validate(&pod("hello", DIGEST)), Ok(()));
    }

    #[test]
    fn bad_name_names_the_field() {
        let e = validate(&pod("Hello_World", DIGEST)).unwrap_err();
        assert_eq!(e.field, "metadata.name");
        assert!(e.to_string().contains("DNS-1123"), "{e}");
        assert!(e.to_string().contains("Hello_World"), "{e}");
    }

    #[test]
    fn non_digest_image_is_refused_with_a_hint() {
        let e = validate(&pod("a", "docker.io/nginx")).unwrap_err();
        assert_eq!(e.field, "spec.containers[0].image");
        assert!(e.message.contains("edgectl apply"), "{e}");
        let e = validate(&pod("a", "sha256:abc")).unwrap_err();
        assert!(e.message.contains("64"), "{e}");
    }

    #[test]
    fn bad_quantity_is_refused() {
        let mut o = pod("a", DIGEST);
        if let Object::Pod(p) = &mut o {
            p.spec.containers[0]
                .resources
                .limits
                .insert("memory".into(), "lots".into());
        }
        let e = validate(&o).unwrap_err();
        assert_eq!(e.field, "spec.containers[0].resources.limits.memory");
    }
}
