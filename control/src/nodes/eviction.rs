//! Pure pod decisions on tainted and unready nodes, as Kubernetes' taint manager and node
//! lifecycle controller make them: when a pod is evicted because of NoExecute taints it does
//! not tolerate (or tolerates only for `tolerationSeconds`), and marking pods on an unready
//! node not Ready so that services stop sending them traffic.

use super::health::is_lifecycle_taint;
use chrono::{DateTime, Utc};
use edge_api::meta::{condition, set_condition, Condition};
use edge_api::scheduling::{Taint, TaintEffect};
use edge_api::Pod;

/// The condition Kubernetes sets on a pod it is about to evict.
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";
pub const REASON_TAINT_MANAGER: &str = "DeletionByTaintManager";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    Never,
    Now,
    /// Once the earliest toleration runs out.
    At(DateTime<Utc>),
}

/// When `pod` must leave a node carrying `taints`. Each NoExecute taint the pod does not
/// tolerate evicts it now; one it tolerates for `tolerationSeconds` evicts it that long after
/// the taint was added (the most lenient matching toleration counts; one without seconds
/// tolerates forever). Finished pods and pods already being deleted stay as they are.
/// `ignore_lifecycle` leaves out the not-ready/unreachable taints (during a full disruption).
pub fn eviction(
    pod: &Pod,
    taints: &[Taint],
    ignore_lifecycle: bool,
    now: DateTime<Utc>,
) -> Eviction {
    if pod.status.phase.is_terminal() || pod.metadata.deletion_timestamp.is_some() {
        return Eviction::Never;
    }
    let mut earliest: Option<DateTime<Utc>> = None;
    let no_execute = taints
        .iter()
        .filter(|t| t.effect == TaintEffect::NoExecute)
        .filter(|t| !(ignore_lifecycle && is_lifecycle_taint(t)));
    for taint in no_execute {
        let matching: Vec<Option<i64>> = pod
            .spec
            .tolerations
            .iter()
            .filter(|tol| tol.tolerates(taint))
            .map(|tol| tol.toleration_seconds)
            .collect();
        if matching.is_empty() {
            return Eviction::Now;
        }
        if matching.iter().any(Option::is_none) {
            continue;
        }
        let seconds = matching.into_iter().flatten().max().unwrap_or(0).max(0);
        let since = taint.time_added.unwrap_or(now);
        let at = since + chrono::Duration::seconds(seconds);
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    match earliest {
        None => Eviction::Never,
        Some(at) if at <= now => Eviction::Now,
        Some(at) => Eviction::At(at),
    }
}

/// The pod as evicted: marked for deletion (its agent stops it and removes it; its controller
/// replaces it) with a `DisruptionTarget` condition saying why.
pub fn evicted(pod: &Pod, node: &str, now: DateTime<Utc>) -> Pod {
    let mut p = pod.clone();
    p.metadata.deletion_timestamp = Some(now);
    set_condition(
        &mut p.status.conditions,
        Condition::new(
            DISRUPTION_TARGET,
            true,
            REASON_TAINT_MANAGER,
            &format!("Taint manager: deleting due to NoExecute taint on node {node}"),
        ),
    );
    p
}

/// The pod marked not Ready because its node is not ready, if it was Ready: endpoints drop
/// it until its agent reports again.
pub fn marked_not_ready(pod: &Pod, node: &str) -> Option<Pod> {
    if pod.status.phase.is_terminal() || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ready = condition(&pod.status.conditions, "Ready")?;
    if !ready.is_true() {
        return None;
    }
    let mut p = pod.clone();
    set_condition(
        &mut p.status.conditions,
        Condition::new(
            "Ready",
            false,
            "NodeNotReady",
            &format!("node {node} is not ready"),
        ),
    );
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::scheduling::{Toleration, TolerationOperator, TAINT_NOT_READY};
    use edge_api::PodPhase;

    const UNREACHABLE: &str = super::super::health::TAINT_UNREACHABLE;

    fn taint(key: &str, effect: TaintEffect, added: DateTime<Utc>) -> Taint {
        Taint {
            key: key.into(),
            value: String::new(),
            effect,
            time_added: Some(added),
        }
    }

    fn tol(key: &str, effect: Option<TaintEffect>, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: key.into(),
            operator: TolerationOperator::Exists,
            value: String::new(),
            effect,
            toleration_seconds: seconds,
        }
    }

    #[test]
    fn eviction_table() {
        let t0 = Utc::now();
        let s = |n: i64| t0 + chrono::Duration::seconds(n);
        let ne = Some(TaintEffect::NoExecute);
        let unreachable = vec![
            taint(UNREACHABLE, TaintEffect::NoSchedule, t0),
            taint(UNREACHABLE, TaintEffect::NoExecute, t0),
        ];
        let default_tols = vec![
            tol(TAINT_NOT_READY, ne, Some(300)),
            tol(UNREACHABLE, ne, Some(300)),
        ];
        // (tolerations, taints, now) -> verdict
        type Case = (Vec<Toleration>, Vec<Taint>, DateTime<Utc>, Eviction);
        let cases: Vec<Case> = vec![
            (vec![], vec![], t0, Eviction::Never),
            // NoSchedule alone never evicts.
            (
                vec![],
                vec![taint(UNREACHABLE, TaintEffect::NoSchedule, t0)],
                t0,
                Eviction::Never,
            ),
            (vec![], unreachable.clone(), t0, Eviction::Now),
            (
                default_tols.clone(),
                unreachable.clone(),
                s(10),
                Eviction::At(s(300)),
            ),
            (
                default_tols.clone(),
                unreachable.clone(),
                s(300),
                Eviction::Now,
            ),
            (
                vec![tol(UNREACHABLE, ne, None)],
                unreachable.clone(),
                s(9999),
                Eviction::Never,
            ),
            // Catch-all toleration (empty key, Exists, any effect) tolerates forever.
            (
                vec![tol("", None, None)],
                unreachable.clone(),
                s(9999),
                Eviction::Never,
            ),
            // The most lenient matching toleration wins.
            (
                vec![tol(UNREACHABLE, ne, Some(5)), tol("", None, Some(60))],
                unreachable.clone(),
                s(10),
                Eviction::At(s(60)),
            ),
            // Zero or negative seconds: at once.
            (
                vec![tol(UNREACHABLE, ne, Some(0))],
                unreachable.clone(),
                t0,
                Eviction::Now,
            ),
            (
                vec![tol(UNREACHABLE, ne, Some(-5))],
                unreachable.clone(),
                t0,
                Eviction::Now,
            ),
            // A second, untolerated NoExecute taint evicts at once.
            (
                default_tols.clone(),
                vec![
                    taint(UNREACHABLE, TaintEffect::NoExecute, t0),
                    taint("maintenance", TaintEffect::NoExecute, t0),
                ],
                t0,
                Eviction::Now,
            ),
            // Two tolerated taints: the earliest deadline.
            (
                vec![
                    tol(UNREACHABLE, ne, Some(100)),
                    tol("maintenance", ne, Some(20)),
                ],
                vec![
                    taint(UNREACHABLE, TaintEffect::NoExecute, t0),
                    taint("maintenance", TaintEffect::NoExecute, s(30)),
                ],
                s(40),
                Eviction::At(s(50)),
            ),
        ];
        for (i, (tols, taints, now, want)) in cases.into_iter().enumerate() {
            let mut p = Pod::default();
            p.spec.tolerations = tols;
            assert_eq!(eviction(&p, &taints, false, now), want, "case {i}");
        }
    }

    #[test]
    fn finished_deleted_and_disruption_exempt_pods_stay() {
        let t0 = Utc::now();
        let taints = vec![taint(UNREACHABLE, TaintEffect::NoExecute, t0)];
        let mut done = Pod::default();
        done.status.phase = PodPhase::Succeeded;
        assert_eq!(eviction(&done, &taints, false, t0), Eviction::Never);
        let mut going = Pod::default();
        going.metadata.deletion_timestamp = Some(t0);
        assert_eq!(eviction(&going, &taints, false, t0), Eviction::Never);
        // During a full disruption lifecycle taints do not evict; others still do.
        let p = Pod::default();
        assert_eq!(eviction(&p, &taints, true, t0), Eviction::Never);
        let user = vec![taint("maintenance", TaintEffect::NoExecute, t0)];
        assert_eq!(eviction(&p, &user, true, t0), Eviction::Now);
    }

    #[test]
    fn evicted_pods_are_terminating_with_a_reason() {
        let now = Utc::now();
        let e = evicted(&Pod::default(), "n1", now);
        assert_eq!(e.metadata.deletion_timestamp, Some(now));
        let c = condition(&e.status.conditions, DISRUPTION_TARGET).expect("condition");
        assert_eq!(c.reason, REASON_TAINT_MANAGER);
        assert!(c.message.contains("n1"));
    }

    #[test]
    fn ready_pods_on_unready_nodes_become_not_ready_once() {
        let mut p = Pod::default();
        assert!(
            marked_not_ready(&p, "n").is_none(),
            "no Ready condition yet"
        );
        p.status
            .conditions
            .push(Condition::new("Ready", true, "", ""));
        let m = marked_not_ready(&p, "n").expect("marked");
        let c = condition(&m.status.conditions, "Ready").expect("Ready");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "NodeNotReady")
        );
        assert!(marked_not_ready(&m, "n").is_none());
    }
}
