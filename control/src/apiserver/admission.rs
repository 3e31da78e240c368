//! Admission defaults for pods, as Kubernetes' DefaultTolerationSeconds plugin: every pod
//! tolerates the not-ready and unreachable NoExecute taints for a bounded time (300 s unless
//! the server is configured otherwise), so a node that vanishes briefly does not cost it its
//! pods, and one that stays away has them replaced elsewhere.

use crate::nodes::TAINT_UNREACHABLE;
use edge_api::object::Object;
use edge_api::scheduling::{TaintEffect, Toleration, TolerationOperator, TAINT_NOT_READY};
use edge_api::wire::{ApiError, ErrorCode};
use edge_api::PodSpec;
use std::sync::atomic::{AtomicI64, Ordering};

// Process-wide, like the API server flags they stand for: `normalize` is a plain function.
static NOT_READY_SECONDS: AtomicI64 = AtomicI64::new(300);
static UNREACHABLE_SECONDS: AtomicI64 = AtomicI64::new(300);

/// Sets the default `tolerationSeconds` (from `edged server` flags).
pub fn configure(not_ready_seconds: i64, unreachable_seconds: i64) {
    NOT_READY_SECONDS.store(not_ready_seconds, Ordering::Relaxed);
    UNREACHABLE_SECONDS.store(unreachable_seconds, Ordering::Relaxed);
}

/// Adds the default tolerations to a pod; other objects are left alone.
pub fn default_tolerations(obj: &mut Object) {
    if let Object::Pod(p) = obj {
        add_default_tolerations(
            &mut p.spec,
            NOT_READY_SECONDS.load(Ordering::Relaxed),
            UNREACHABLE_SECONDS.load(Ordering::Relaxed),
        );
    }
}

/// Adds a NoExecute toleration for each of the two taints the pod does not already address
/// (a toleration with that key, or no key, and effect NoExecute or none), as Kubernetes does.
pub fn add_default_tolerations(
    spec: &mut PodSpec,
    not_ready_seconds: i64,
    unreachable_seconds: i64,
) {
    for (key, seconds) in [
        (TAINT_NOT_READY, not_ready_seconds),
        (TAINT_UNREACHABLE, unreachable_seconds),
    ] {
        let addressed = spec.tolerations.iter().any(|t| {
            (t.key.is_empty() || t.key == key)
                && t.effect.is_none_or(|e| e == TaintEffect::NoExecute)
        });
        if !addressed {
            spec.tolerations.push(Toleration {
                key: key.to_string(),
                operator: TolerationOperator::Exists,
                value: String::new(),
                effect: Some(TaintEffect::NoExecute),
                toleration_seconds: Some(seconds),
            });
        }
    }
}

/// Fencing of status writes: a write that names a uid must be for that incarnation. An agent
/// back from a partition may still hold statuses of a pod that was replaced meanwhile by a
/// new one under the same name; that write is refused as not found (the old pod is gone), so
/// the agent drops it instead of retrying.
pub fn same_incarnation(existing: &Object, incoming: &Object) -> Result<(), ApiError> {
    let uid = &incoming.meta().uid;
    if uid.is_empty() || *uid == existing.meta().uid {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::NotFound,
        format!(
            "{} with uid {uid} not found: it was replaced by uid {}",
            existing.key(),
            existing.meta().uid
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tol(key: &str, effect: Option<TaintEffect>, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: key.into(),
            operator: TolerationOperator::Exists,
            value: String::new(),
            effect,
            toleration_seconds: seconds,
        }
    }

    fn keys_and_seconds(spec: &PodSpec) -> Vec<(String, Option<i64>)> {
        spec.tolerations
            .iter()
            .map(|t| (t.key.clone(), t.toleration_seconds))
            .collect()
    }

    #[test]
    fn defaults_table() {
        let ne = Some(TaintEffect::NoExecute);
        let ns = Some(TaintEffect::NoSchedule);
        // (tolerations the pod has) -> (key, seconds) after admission
        type Case = (Vec<Toleration>, Vec<(&'static str, Option<i64>)>);
        let cases: Vec<Case> = vec![
            (
                vec![],
                vec![(TAINT_NOT_READY, Some(300)), (TAINT_UNREACHABLE, Some(20))],
            ),
            // Its own unreachable toleration is kept as it is.
            (
                vec![tol(TAINT_UNREACHABLE, ne, Some(5))],
                vec![(TAINT_UNREACHABLE, Some(5)), (TAINT_NOT_READY, Some(300))],
            ),
            // A catch-all toleration addresses both.
            (vec![tol("", None, None)], vec![("", None)]),
            // Effect left open addresses NoExecute too.
            (
                vec![tol(TAINT_NOT_READY, None, None)],
                vec![(TAINT_NOT_READY, None), (TAINT_UNREACHABLE, Some(20))],
            ),
            // A NoSchedule-only toleration does not.
            (
                vec![tol(TAINT_UNREACHABLE, ns, None)],
                vec![
                    (TAINT_UNREACHABLE, None),
                    (TAINT_NOT_READY, Some(300)),
                    (TAINT_UNREACHABLE, Some(20)),
                ],
            ),
        ];
        for (i, (have, want)) in cases.into_iter().enumerate() {
            let mut spec = PodSpec {
                tolerations: have,
                ..Default::default()
            };
            add_default_tolerations(&mut spec, 300, 20);
            let want: Vec<(String, Option<i64>)> =
                want.into_iter().map(|(k, s)| (k.to_string(), s)).collect();
            assert_eq!(keys_and_seconds(&spec), want, "case {i}");
            // Applying twice changes nothing: re-applying a manifest stays "unchanged".
            let again = spec.clone();
            add_default_tolerations(&mut spec, 300, 20);
            assert_eq!(spec, again, "case {i} is idempotent");
        }
    }

    #[test]
    fn status_writes_are_fenced_by_uid() {
        let mut stored = edge_api::Pod::default();
        stored.metadata.name = "web".into();
        stored.metadata.uid = "new".into();
        let stored = Object::Pod(stored);
        let mut old = stored.clone();
        old.meta_mut().uid = "old".into();
        let e = same_incarnation(&stored, &old).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(e.message.contains("replaced"), "{e}");
        assert!(same_incarnation(&stored, &stored).is_ok());
        // Writers that do not name a uid (an agent's Node status) are not fenced.
        let mut anonymous = stored.clone();
        anonymous.meta_mut().uid.clear();
        assert!(same_incarnation(&stored, &anonymous).is_ok());
    }

    #[test]
    fn only_pods_are_defaulted() {
        let mut ns = Object::Namespace(Default::default());
        let before = ns.clone();
        default_tolerations(&mut ns);
        assert_eq!(ns, before);
        let mut pod = Object::Pod(Default::default());
        default_tolerations(&mut pod);
        assert_eq!(pod.as_pod().map(|p| p.spec.tolerations.len()), Some(2));
    }
}
