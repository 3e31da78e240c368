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
    if let Some(result) = crate::validation_apps::validate_kind(obj) {
        return result.map_err(|(f, m)| fail(&f, m));
    }
    match obj {
        Object::Pod(p) => validate_pod(p).map_err(|(f, m)| fail(&f, m)),
        Object::Namespace(_) => dns1123_label(&meta.name).map_err(|m| fail("metadata.name", m)),
        Object::Node(n) => validate_taints(&n.spec.taints).map_err(|(f, m)| fail(&f, m)),
        Object::ConfigMap(cm) => validate_data_keys(cm.data.keys().chain(cm.binary_data.keys()))
            .and_then(|_| {
                cm.entries()
                    .map(|_| ())
                    .map_err(|m| ("binaryData".into(), m))
            })
            .map_err(|(f, m)| fail(&f, m)),
        Object::Secret(sec) => validate_data_keys(sec.data.keys().chain(sec.string_data.keys()))
            .and_then(|_| sec.entries().map(|_| ()).map_err(|m| ("data".into(), m)))
            .map_err(|(f, m)| fail(&f, m)),
        _ => Ok(()),
    }
}

pub(crate) fn validate_pod(pod: &Pod) -> Result<(), (String, String)> {
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
        validate_container_extras(pod, c).map_err(|(f, m)| (field(&f), m))?;
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
    validate_volumes(pod)?;
    for (k, v) in &pod.spec.node_selector {
        label_key(k).map_err(|m| (format!("spec.nodeSelector[{k:?}]"), m))?;
        label_value(v).map_err(|m| (format!("spec.nodeSelector[{k:?}]"), m))?;
    }
    validate_placement(pod)
}

pub(crate) type FieldResult = Result<(), (String, String)>;

fn err(field: String, message: impl Into<String>) -> FieldResult {
    Err((field, message.into()))
}

/// Tolerations, affinity and topology spread, with Kubernetes' rules and field paths.
fn validate_placement(pod: &Pod) -> FieldResult {
    use crate::scheduling::{TaintEffect, TolerationOperator};
    for (i, t) in pod.spec.tolerations.iter().enumerate() {
        let f = |s: &str| format!("spec.tolerations[{i}].{s}");
        if t.key.is_empty() {
            if t.operator != TolerationOperator::Exists {
                return err(
                    f("operator"),
                    "must be Exists when key is empty (which tolerates every taint)",
                );
            }
        } else {
            label_key(&t.key).map_err(|m| (f("key"), m))?;
        }
        match t.operator {
            TolerationOperator::Exists if !t.value.is_empty() => {
                return err(f("value"), "must be empty when operator is Exists");
            }
            _ => label_value(&t.value).map_err(|m| (f("value"), m))?,
        }
        if t.toleration_seconds.is_some() && t.effect != Some(TaintEffect::NoExecute) {
            return err(
                f("tolerationSeconds"),
                "may be set only when effect is NoExecute",
            );
        }
    }
    if let Some(a) = &pod.spec.affinity {
        validate_affinity(a)?;
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in pod.spec.topology_spread_constraints.iter().enumerate() {
        let f = |s: &str| format!("spec.topologySpreadConstraints[{i}].{s}");
        if c.max_skew < 1 {
            return err(f("maxSkew"), format!("{} must be at least 1", c.max_skew));
        }
        label_key(&c.topology_key).map_err(|m| (f("topologyKey"), m))?;
        if !seen.insert((&c.topology_key, c.when_unsatisfiable)) {
            return err(
                f("topologyKey"),
                format!(
                    "duplicate constraint for {:?} and {:?}",
                    c.topology_key, c.when_unsatisfiable
                ),
            );
        }
        if let Some(m) = c.min_domains {
            if m < 1 {
                return err(f("minDomains"), format!("{m} must be at least 1"));
            }
            if c.when_unsatisfiable
                != crate::scheduling::UnsatisfiableConstraintAction::DoNotSchedule
            {
                return err(
                    f("minDomains"),
                    "may be set only when whenUnsatisfiable is DoNotSchedule",
                );
            }
        }
        if let Some(s) = &c.label_selector {
            validate_label_selector(s, &f("labelSelector"))?;
        }
    }
    Ok(())
}

fn validate_affinity(a: &crate::scheduling::Affinity) -> FieldResult {
    let base = "spec.affinity";
    if let Some(na) = &a.node_affinity {
        let na_path = format!("{base}.nodeAffinity");
        if let Some(req) = &na.required {
            let path = format!(
                "{na_path}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
            );
            if req.node_selector_terms.is_empty() {
                return err(path, "at least one term is required");
            }
            for (i, t) in req.node_selector_terms.iter().enumerate() {
                validate_node_selector_term(t, &format!("{path}[{i}]"))?;
            }
        }
        for (i, p) in na.preferred.iter().enumerate() {
            let path = format!("{na_path}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            validate_weight(p.weight, &path)?;
            validate_node_selector_term(&p.preference, &format!("{path}.preference"))?;
        }
    }
    for (name, pa) in [
        ("podAffinity", &a.pod_affinity),
        ("podAntiAffinity", &a.pod_anti_affinity),
    ] {
        let Some(pa) = pa else { continue };
        let path = format!("{base}.{name}");
        for (i, t) in pa.required.iter().enumerate() {
            validate_pod_affinity_term(
                t,
                &format!("{path}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"),
            )?;
        }
        for (i, w) in pa.preferred.iter().enumerate() {
            let path = format!("{path}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            validate_weight(w.weight, &path)?;
            validate_pod_affinity_term(&w.pod_affinity_term, &format!("{path}.podAffinityTerm"))?;
        }
    }
    Ok(())
}

fn validate_weight(weight: i32, path: &str) -> FieldResult {
    if !(1..=100).contains(&weight) {
        return err(
            format!("{path}.weight"),
            format!("{weight} must be in the range 1-100"),
        );
    }
    Ok(())
}

fn validate_node_selector_term(t: &crate::scheduling::NodeSelectorTerm, path: &str) -> FieldResult {
    use crate::scheduling::NodeSelectorOperator::*;
    for (i, r) in t.match_expressions.iter().enumerate() {
        let arity = match r.operator {
            In | NotIn => Arity::Many,
            Exists | DoesNotExist => Arity::Zero,
            Gt | Lt => Arity::OneInteger,
        };
        let path = format!("{path}.matchExpressions[{i}]");
        validate_requirement(&path, &r.key, &r.values, arity)?;
    }
    for (i, r) in t.match_fields.iter().enumerate() {
        let f = |s: &str| format!("{path}.matchFields[{i}].{s}");
        if r.key != crate::scheduling::FIELD_NODE_NAME {
            return err(
                f("key"),
                format!("{:?}: the only field is metadata.name", r.key),
            );
        }
        if !matches!(r.operator, In | NotIn) || r.values.len() != 1 {
            return err(f("operator"), "use In or NotIn with a single node name");
        }
    }
    Ok(())
}

/// How many values an operator takes, as Kubernetes checks them.
enum Arity {
    Many,
    Zero,
    OneInteger,
}

fn validate_requirement(path: &str, key: &str, values: &[String], arity: Arity) -> FieldResult {
    label_key(key).map_err(|m| (format!("{path}.key"), m))?;
    let bad = match arity {
        Arity::Many if values.is_empty() => "must be given when operator is In or NotIn",
        Arity::Zero if !values.is_empty() => {
            "must be empty when operator is Exists or DoesNotExist"
        }
        Arity::OneInteger if values.len() != 1 || values[0].parse::<i64>().is_err() => {
            "must be a single integer when operator is Gt or Lt"
        }
        _ => "",
    };
    if !bad.is_empty() {
        return err(format!("{path}.values"), bad);
    }
    for v in values {
        label_value(v).map_err(|m| (format!("{path}.values"), format!("{v:?} {m}")))?;
    }
    Ok(())
}

fn validate_pod_affinity_term(t: &crate::scheduling::PodAffinityTerm, path: &str) -> FieldResult {
    if t.topology_key.is_empty() {
        return err(
            format!("{path}.topologyKey"),
            "is required (e.g. kubernetes.io/hostname)",
        );
    }
    label_key(&t.topology_key).map_err(|m| (format!("{path}.topologyKey"), m))?;
    for (i, ns) in t.namespaces.iter().enumerate() {
        dns1123_label(ns).map_err(|m| (format!("{path}.namespaces[{i}]"), m))?;
    }
    match &t.label_selector {
        Some(s) => validate_label_selector(s, &format!("{path}.labelSelector")),
        None => Ok(()),
    }
}

pub(crate) fn validate_label_selector(
    s: &crate::scheduling::LabelSelector,
    path: &str,
) -> FieldResult {
    use crate::scheduling::LabelSelectorOperator::*;
    for (k, v) in &s.match_labels {
        let f = format!("{path}.matchLabels[{k:?}]");
        label_key(k).map_err(|m| (f.clone(), m))?;
        label_value(v).map_err(|m| (f, m))?;
    }
    for (i, r) in s.match_expressions.iter().enumerate() {
        let arity = match r.operator {
            In | NotIn => Arity::Many,
            Exists | DoesNotExist => Arity::Zero,
        };
        let path = format!("{path}.matchExpressions[{i}]");
        validate_requirement(&path, &r.key, &r.values, arity)?;
    }
    Ok(())
}

fn validate_taints(taints: &[crate::scheduling::Taint]) -> FieldResult {
    let mut seen = std::collections::BTreeSet::new();
    for (i, t) in taints.iter().enumerate() {
        let f = |s: &str| format!("spec.taints[{i}].{s}");
        label_key(&t.key).map_err(|m| (f("key"), m))?;
        label_value(&t.value).map_err(|m| (f("value"), m))?;
        if !seen.insert((&t.key, t.effect)) {
            return err(
                f("key"),
                format!("duplicate taint {:?} with effect {:?}", t.key, t.effect),
            );
        }
    }
    Ok(())
}

/// Keys of ConfigMap/Secret data become file names: `[-._a-zA-Z0-9]+`, not `.` or `..`.
fn validate_data_keys<'a>(keys: impl Iterator<Item = &'a String>) -> Result<(), (String, String)> {
    for k in keys {
        let ok = !k.is_empty()
            && k.len() <= 253
            && k != "."
            && k != ".."
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err((
                format!("data[{k:?}]"),
                "keys must be letters, digits, '-', '_' or '.' (they become file names)".into(),
            ));
        }
    }
    Ok(())
}

fn validate_volumes(pod: &Pod) -> Result<(), (String, String)> {
    let mut names = std::collections::BTreeSet::new();
    for (i, v) in pod.spec.volumes.iter().enumerate() {
        let field = |f: &str| format!("spec.volumes[{i}]{f}");
        dns1123_label(&v.name).map_err(|m| (field(".name"), m))?;
        if !names.insert(v.name.as_str()) {
            return Err((
                field(".name"),
                format!("duplicate volume name {:?}", v.name),
            ));
        }
        if v.source_count() != 1 {
            return Err((
                field(""),
                "set exactly one of emptyDir, hostPath, configMap, secret".into(),
            ));
        }
        if let Some(h) = &v.host_path {
            if !h.path.starts_with('/') {
                return Err((
                    field(".hostPath.path"),
                    format!("{:?} must be an absolute path", h.path),
                ));
            }
        }
        if let Some(size) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) {
            crate::quantity::parse("memory", size)
                .map_err(|e| (field(".emptyDir.sizeLimit"), e.to_string()))?;
        }
    }
    Ok(())
}

fn validate_container_extras(pod: &Pod, c: &crate::pod::Container) -> Result<(), (String, String)> {
    for (j, m) in c.volume_mounts.iter().enumerate() {
        if !pod.spec.volumes.iter().any(|v| v.name == m.name) {
            return Err((
                format!("volumeMounts[{j}].name"),
                format!("no volume named {:?} in spec.volumes", m.name),
            ));
        }
        if !m.mount_path.starts_with('/') || m.mount_path.split('/').any(|p| p == "..") {
            return Err((
                format!("volumeMounts[{j}].mountPath"),
                format!("{:?} must be an absolute path without '..'", m.mount_path),
            ));
        }
    }
    for (name, probe) in [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ] {
        let Some(p) = probe else { continue };
        let actions = usize::from(p.http_get.is_some()) + usize::from(p.tcp_socket.is_some());
        if actions != 1 {
            return Err((name.into(), "set exactly one of httpGet, tcpSocket".into()));
        }
        if p.period_seconds == 0
            || p.timeout_seconds == 0
            || p.failure_threshold == 0
            || p.success_threshold == 0
        {
            return Err((
                name.into(),
                "periodSeconds, timeoutSeconds and thresholds must be at least 1".into(),
            ));
        }
    }
    for (j, e) in c.env.iter().enumerate() {
        if let Some(src) = &e.value_from {
            let refs = usize::from(src.config_map_key_ref.is_some())
                + usize::from(src.secret_key_ref.is_some());
            if refs != 1 || !e.value.is_empty() {
                return Err((format!("env[{j}]"), "set either value or valueFrom with exactly one of configMapKeyRef, secretKeyRef".into()));
            }
        }
    }
    for (j, o) in c.outbound.iter().enumerate() {
        let ok = o == "*"
            || o.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && (p == "*" || p.parse::<u16>().is_ok()));
        if !ok {
            return Err((
                format!("outbound[{j}]"),
                format!("{o:?}: use host:port, host:* or *"),
            ));
        }
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
