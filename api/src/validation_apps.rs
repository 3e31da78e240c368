//! Validation of the workload, service and event kinds; field paths and messages follow
//! Kubernetes' so a user can find and fix the field.

use crate::apps::{PodTemplateSpec, RollingUpdate};
use crate::intstr::IntOrString;
use crate::object::Object;
use crate::pod::Pod;
use crate::scheduling::LabelSelector;
use crate::service::{Service, ServiceType, NODE_PORT_RANGE};
use crate::validation::{dns1123_label, label_key, label_value, FieldResult};

/// Validates the kinds this file owns; `None` for the others.
pub(crate) fn validate_kind(obj: &Object) -> Option<FieldResult> {
    Some(match obj {
        Object::Deployment(d) => validate_replicated(
            d.spec.replicas,
            &d.spec.selector,
            &d.spec.template,
            d.spec.strategy.rolling_update.as_ref(),
            "spec.strategy.rollingUpdate",
        )
        .and_then(|_| non_negative(d.spec.min_ready_seconds, "spec.minReadySeconds"))
        .and_then(|_| {
            non_negative(
                d.spec.revision_history_limit.unwrap_or(0),
                "spec.revisionHistoryLimit",
            )
        })
        .and_then(|_| {
            let deadline = d.spec.progress_deadline_seconds.unwrap_or(600);
            if deadline <= d.spec.min_ready_seconds {
                return err(
                    "spec.progressDeadlineSeconds",
                    "must be greater than spec.minReadySeconds",
                );
            }
            Ok(())
        }),
        Object::ReplicaSet(rs) => validate_replicated(
            rs.spec.replicas,
            &rs.spec.selector,
            &rs.spec.template,
            None,
            "",
        ),
        Object::DaemonSet(ds) => validate_replicated(
            None,
            &ds.spec.selector,
            &ds.spec.template,
            ds.spec.update_strategy.rolling_update.as_ref(),
            "spec.updateStrategy.rollingUpdate",
        ),
        Object::Job(j) => validate_job(j),
        Object::Service(s) => validate_service(s),
        Object::Event(e) => {
            if e.reason.is_empty() || e.involved_object.name.is_empty() {
                err(
                    "reason",
                    "an event needs a reason and an involvedObject.name",
                )
            } else {
                Ok(())
            }
        }
        Object::Endpoints(_) => Ok(()),
        _ => return None,
    })
}

fn err(field: &str, message: impl Into<String>) -> FieldResult {
    Err((field.to_string(), message.into()))
}

fn non_negative(v: impl Into<i64>, field: &str) -> FieldResult {
    let v = v.into();
    if v < 0 {
        return err(field, format!("{v} is negative; must be >= 0"));
    }
    Ok(())
}

fn validate_replicated(
    replicas: Option<i32>,
    selector: &LabelSelector,
    template: &PodTemplateSpec,
    rolling: Option<&RollingUpdate>,
    rolling_path: &str,
) -> FieldResult {
    non_negative(replicas.unwrap_or(1), "spec.replicas")?;
    if selector.match_labels.is_empty() && selector.match_expressions.is_empty() {
        return err(
            "spec.selector",
            "a selector is required (e.g. matchLabels: {app: NAME}) and must match the template's labels",
        );
    }
    crate::validation::validate_label_selector(selector, "spec.selector")?;
    if !selector.matches(&template.metadata.labels) {
        return err(
            "spec.template.metadata.labels",
            "`selector` does not match template `labels`; give the template the labels the selector asks for",
        );
    }
    validate_template(template)?;
    if let Some(r) = rolling {
        validate_rolling(r, rolling_path)?;
    }
    Ok(())
}

fn validate_template(template: &PodTemplateSpec) -> FieldResult {
    for (k, v) in &template.metadata.labels {
        let f = format!("spec.template.metadata.labels[{k:?}]");
        label_key(k).map_err(|m| (f.clone(), m))?;
        label_value(v).map_err(|m| (f, m))?;
    }
    let pod = Pod {
        spec: template.spec.clone(),
        ..Default::default()
    };
    crate::validation::validate_pod(&pod).map_err(|(f, m)| (format!("spec.template.{f}"), m))?;
    if template.spec.node_name.is_some() {
        return err(
            "spec.template.spec.nodeName",
            "a template cannot bind its pods; use nodeSelector or affinity",
        );
    }
    Ok(())
}

fn validate_rolling(r: &RollingUpdate, path: &str) -> FieldResult {
    let check = |v: &Option<IntOrString>, name: &str| -> Result<i32, (String, String)> {
        match v {
            None => Ok(1),
            Some(v) => {
                let f = format!("{path}.{name}");
                let n = v.scaled_value(100, true).map_err(|m| (f.clone(), m))?;
                if matches!(v, IntOrString::String(_)) && n > 100 {
                    return err(&f, "a percentage must not exceed 100%").map(|_| 0);
                }
                Ok(n)
            }
        }
    };
    let surge = check(&r.max_surge, "maxSurge")?;
    let unavailable = check(&r.max_unavailable, "maxUnavailable")?;
    if surge == 0 && unavailable == 0 {
        return err(
            &format!("{path}.maxUnavailable"),
            "may not be 0 when maxSurge is 0 (the rollout could never progress)",
        );
    }
    Ok(())
}

fn validate_job(j: &crate::apps::Job) -> FieldResult {
    let s = &j.spec;
    non_negative(s.parallelism.unwrap_or(1), "spec.parallelism")?;
    non_negative(s.completions.unwrap_or(1), "spec.completions")?;
    non_negative(s.backoff_limit.unwrap_or(6), "spec.backoffLimit")?;
    non_negative(
        s.ttl_seconds_after_finished.unwrap_or(0),
        "spec.ttlSecondsAfterFinished",
    )?;
    if s.active_deadline_seconds.is_some_and(|d| d <= 0) {
        return err("spec.activeDeadlineSeconds", "must be greater than 0");
    }
    if let Some(sel) = &s.selector {
        crate::validation::validate_label_selector(sel, "spec.selector")?;
    }
    if s.template.spec.restart_policy == crate::pod::RestartPolicy::Always {
        return err(
            "spec.template.spec.restartPolicy",
            "a Job's pods must use restartPolicy OnFailure or Never",
        );
    }
    validate_template(&s.template)
}

fn validate_service(s: &Service) -> FieldResult {
    for (k, v) in &s.spec.selector {
        let f = format!("spec.selector[{k:?}]");
        label_key(k).map_err(|m| (f.clone(), m))?;
        label_value(v).map_err(|m| (f, m))?;
    }
    if s.spec.ports.is_empty() {
        return err("spec.ports", "a service needs at least one port");
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in s.spec.ports.iter().enumerate() {
        let f = |name: &str| format!("spec.ports[{i}].{name}");
        if s.spec.ports.len() > 1 && p.name.is_empty() {
            return err(
                &f("name"),
                "each port needs a name when there is more than one",
            );
        }
        if !p.name.is_empty() {
            dns1123_label(&p.name).map_err(|m| (f("name"), m))?;
            if !names.insert(p.name.as_str()) {
                return err(&f("name"), format!("duplicate port name {:?}", p.name));
            }
        }
        if !(1..=65535).contains(&p.port) {
            return err(&f("port"), format!("{} is not a port (1-65535)", p.port));
        }
        match &p.target_port {
            Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => {
                return err(&f("targetPort"), format!("{n} is not a port (1-65535)"));
            }
            Some(IntOrString::String(name)) => {
                dns1123_label(name).map_err(|m| (f("targetPort"), m))?;
            }
            _ => {}
        }
        if let Some(np) = p.node_port {
            if s.spec.type_ != ServiceType::NodePort {
                return err(
                    &f("nodePort"),
                    "only a service of type NodePort has node ports",
                );
            }
            if !NODE_PORT_RANGE.contains(&np) {
                return err(
                    &f("nodePort"),
                    format!("{np} is outside the node port range 30000-32767"),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::manifest::parse_documents;
    use crate::validation::validate;

    fn check(yaml: &str) -> Result<(), String> {
        let yaml = format!("apiVersion: edge.dev/v1\n{yaml}");
        let mut objs = parse_documents(&yaml, "test.yaml").map_err(|e| e.to_string())?;
        objs[0].default_namespace("default");
        validate(&objs[0]).map_err(|e| e.to_string())
    }

    const DEPLOY: &str = "kind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: 'sha256:0000000000000000000000000000000000000000000000000000000000000000'}]}\n";

    #[test]
    fn a_deployment_whose_selector_matches_its_template_is_valid() {
        check(DEPLOY).unwrap();
    }

    #[test]
    fn selector_not_matching_template_is_refused_with_the_field() {
        let bad = DEPLOY.replace("labels: {app: web}", "labels: {app: other}");
        let e = check(&bad).unwrap_err();
        assert!(e.contains("spec.template.metadata.labels"), "{e}");
    }

    #[test]
    fn zero_surge_and_zero_unavailable_is_refused() {
        let bad =
            format!("{DEPLOY}  strategy: {{rollingUpdate: {{maxSurge: 0, maxUnavailable: 0}}}}\n");
        let e = check(&bad).unwrap_err();
        assert!(e.contains("maxUnavailable"), "{e}");
    }

    #[test]
    fn a_job_with_restart_always_is_refused() {
        let job = DEPLOY
            .replace("Deployment", "Job")
            .replace("  selector: {matchLabels: {app: web}}\n", "");
        let e = check(&job).unwrap_err();
        assert!(e.contains("restartPolicy"), "{e}");
    }

    #[test]
    fn service_ports_are_checked() {
        let svc =
            "kind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80, nodePort: 30001}]}\n";
        assert!(check(svc).unwrap_err().contains("NodePort"));
        let svc = "kind: Service\nmetadata: {name: s}\nspec: {type: NodePort, ports: [{port: 80, nodePort: 80}]}\n";
        assert!(check(svc).unwrap_err().contains("30000-32767"));
        let svc = "kind: Service\nmetadata: {name: s}\nspec: {type: NodePort, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}\n";
        check(svc).unwrap();
    }
}
