//! Fencing on reconnect: the control plane's list of the pods bound to this node is the
//! authority. A pod's uid is its assignment: the same uid keeps running untouched (no restart
//! of healthy pods, even after a partition); a pod no longer in the list (deleted, or evicted
//! and replaced elsewhere) stops; a pod marked for deletion stops and its removal is confirmed;
//! a newer incarnation under the same name (a new uid) replaces the old one.

use crate::supervisor::{decide, PodAction};
use edge_api::Pod;
use std::collections::HashSet;

/// Uids this node runs that the control plane no longer binds here.
pub fn not_bound_here(running: &HashSet<String>, bound: &[Pod]) -> Vec<String> {
    let bound: HashSet<&str> = bound.iter().map(|p| p.metadata.uid.as_str()).collect();
    let mut gone: Vec<String> = running
        .iter()
        .filter(|uid| !bound.contains(uid.as_str()))
        .cloned()
        .collect();
    gone.sort();
    gone
}

/// What becomes of a pod when `bound` (the authoritative list) meets what runs here.
#[derive(Debug, PartialEq)]
pub enum Fate<'a> {
    /// Runs here but is not bound here any more (by uid): stop it and forget it.
    Stop(String),
    Act(&'a Pod, PodAction),
}

pub fn reconcile<'a>(running: &HashSet<String>, bound: &'a [Pod]) -> Vec<Fate<'a>> {
    let mut out: Vec<Fate> = not_bound_here(running, bound)
        .into_iter()
        .map(Fate::Stop)
        .collect();
    for p in bound {
        out.push(Fate::Act(p, decide(p, running.contains(&p.metadata.uid))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::PodPhase;

    fn pod(name: &str, uid: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = name.into();
        p.metadata.uid = uid.into();
        p.spec.node_name = Some("here".into());
        p
    }

    fn running(uids: &[&str]) -> HashSet<String> {
        uids.iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn reconnect_table() {
        let mut evicted = pod("web-1", "u1");
        evicted.metadata.deletion_timestamp = Some(chrono::Utc::now());
        let mut finished = pod("job-1", "u9");
        finished.status.phase = PodPhase::Succeeded;
        use PodAction::*;
        type Case = (
            &'static str,
            HashSet<String>,
            Vec<Pod>,
            Vec<(&'static str, Option<PodAction>)>,
        );
        let cases: Vec<Case> = vec![
            (
                "the control plane lost nothing: nothing restarts",
                running(&["u1", "u2"]),
                vec![pod("web-1", "u1"), pod("web-2", "u2")],
                vec![("u1", Some(Keep)), ("u2", Some(Keep))],
            ),
            (
                "evicted during the partition: stop and confirm",
                running(&["u1"]),
                vec![evicted.clone()],
                vec![("u1", Some(Terminate))],
            ),
            (
                "removed (or replaced elsewhere) during the partition: stop",
                running(&["u1", "u2"]),
                vec![pod("web-2", "u2")],
                vec![("u1", None), ("u2", Some(Keep))],
            ),
            (
                "a newer assignment under the same name: the old one stops",
                running(&["u1"]),
                vec![pod("web-1", "u7")],
                vec![("u1", None), ("u7", Some(Start))],
            ),
            (
                "after an agent restart the bound pods start",
                running(&[]),
                vec![pod("web-1", "u1"), finished.clone()],
                vec![("u1", Some(Start)), ("u9", Some(LeaveFinished))],
            ),
            (
                "an empty list is authoritative too",
                running(&["u1"]),
                vec![],
                vec![("u1", None)],
            ),
        ];
        // Each pod by uid: None for "stop it", Some(action) otherwise.
        for (what, run, bound, want) in cases {
            let got: Vec<(String, Option<PodAction>)> = reconcile(&run, &bound)
                .into_iter()
                .map(|f| match f {
                    Fate::Stop(uid) => (uid, None),
                    Fate::Act(p, a) => (p.metadata.uid.clone(), Some(a)),
                })
                .collect();
            let want: Vec<(String, Option<PodAction>)> =
                want.into_iter().map(|(u, f)| (u.to_string(), f)).collect();
            assert_eq!(got, want, "{what}");
        }
    }
}
