//! Events about a pod's components derived from the statuses its agent reports (Started,
//! BackOff, Unhealthy, Killing on a limit), so `describe pod` tells the story as kubelet's do.
//! The agent reports state; the API server, which sees the old and the new status, turns the
//! difference into Events.

use edge_api::event::EventType;
use edge_api::pod::{ContainerStatus, StateTerminated};
use edge_api::Pod;

/// One event to record about the pod: type, reason, message.
pub type PodEvent = (EventType, &'static str, String);

/// The events implied by going from `old` to `new` (the same pod): the pure part.
pub fn from_status_change(old: &Pod, new: &Pod) -> Vec<PodEvent> {
    let mut out = Vec::new();
    for c in &new.status.container_statuses {
        let before = old
            .status
            .container_statuses
            .iter()
            .find(|o| o.name == c.name);
        container_events(&new.metadata.name, before, c, &mut out);
    }
    out
}

fn container_events(
    pod: &str,
    before: Option<&ContainerStatus>,
    now: &ContainerStatus,
    out: &mut Vec<PodEvent>,
) {
    let name = &now.name;
    let started_before = before
        .and_then(|b| b.state.running.as_ref())
        .map(|r| r.started_at);
    if let Some(r) = &now.state.running {
        if started_before != Some(r.started_at) {
            out.push((
                EventType::Normal,
                "Started",
                format!("Started component {name}"),
            ));
        }
    }
    let ended_before = before
        .and_then(|b| last_termination(b))
        .map(|t| t.finished_at);
    if let Some(t) = last_termination(now) {
        if ended_before != Some(t.finished_at) {
            if let Some(e) = termination_event(name, t) {
                out.push(e);
            }
        }
    }
    let backing_off = |s: &ContainerStatus| {
        s.state
            .waiting
            .as_ref()
            .is_some_and(|w| w.reason == "CrashLoopBackOff")
    };
    let restarted = before.is_none_or(|b| b.restart_count != now.restart_count);
    if backing_off(now) && (restarted || !before.is_some_and(backing_off)) {
        out.push((
            EventType::Warning,
            "BackOff",
            format!("Back-off restarting failed component {name} in pod {pod}"),
        ));
    }
}

/// The most recent end of a run: the current state if terminated, else the last state.
fn last_termination(s: &ContainerStatus) -> Option<&StateTerminated> {
    s.state
        .terminated
        .as_ref()
        .or(s.last_state.terminated.as_ref())
}

fn termination_event(name: &str, t: &StateTerminated) -> Option<PodEvent> {
    let detail = if t.message.is_empty() {
        format!("component {name} exited with code {}", t.exit_code)
    } else {
        format!("component {name}: {}", t.message)
    };
    match t.reason.as_str() {
        "Completed" => None,
        // kubelet says Unhealthy with the probe's message, then Killing.
        "Unhealthy" => Some((EventType::Warning, "Unhealthy", detail)),
        "MemoryLimitExceeded" => Some((EventType::Warning, "MemoryLimitExceeded", detail)),
        "DeadlineExceeded" => Some((EventType::Warning, "DeadlineExceeded", detail)),
        "Trapped" => Some((EventType::Warning, "Trapped", detail)),
        _ => Some((EventType::Warning, "Failed", detail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use edge_api::pod::{ContainerState, StateRunning, StateWaiting};

    fn pod(statuses: Vec<ContainerStatus>) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = "web".into();
        p.status.container_statuses = statuses;
        p
    }

    fn running(at: i64, restarts: u32) -> ContainerStatus {
        ContainerStatus {
            name: "main".into(),
            restart_count: restarts,
            state: ContainerState {
                running: Some(StateRunning {
                    started_at: Utc.timestamp_opt(at, 0).single(),
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn crashed(exit: i32, reason: &str, message: &str, at: i64, restarts: u32) -> ContainerStatus {
        ContainerStatus {
            name: "main".into(),
            restart_count: restarts,
            state: ContainerState {
                waiting: Some(StateWaiting {
                    reason: "CrashLoopBackOff".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            last_state: ContainerState {
                terminated: Some(StateTerminated {
                    exit_code: exit,
                    reason: reason.into(),
                    message: message.into(),
                    finished_at: Utc.timestamp_opt(at, 0).single(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn reasons(events: &[PodEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.1).collect()
    }

    #[test]
    fn table() {
        let cases: Vec<(&str, Pod, Pod, Vec<&str>)> = vec![
            (
                "first start",
                pod(vec![]),
                pod(vec![running(1, 0)]),
                vec!["Started"],
            ),
            (
                "same run reported again",
                pod(vec![running(1, 0)]),
                pod(vec![running(1, 0)]),
                vec![],
            ),
            (
                "crash then back-off",
                pod(vec![running(1, 0)]),
                pod(vec![crashed(3, "Error", "", 2, 1)]),
                vec!["Failed", "BackOff"],
            ),
            (
                "back-off reported again",
                pod(vec![crashed(3, "Error", "", 2, 1)]),
                pod(vec![crashed(3, "Error", "", 2, 1)]),
                vec![],
            ),
            (
                "liveness restart",
                pod(vec![running(1, 0)]),
                pod(vec![running(5, 1)]).with_last(crashed(
                    137,
                    "Unhealthy",
                    "Liveness probe failed: timeout",
                    4,
                    1,
                )),
                vec!["Started", "Unhealthy"],
            ),
            (
                "memory limit",
                pod(vec![running(1, 0)]),
                pod(vec![crashed(137, "MemoryLimitExceeded", "", 2, 1)]),
                vec!["MemoryLimitExceeded", "BackOff"],
            ),
            (
                "clean exit",
                pod(vec![running(1, 0)]),
                pod(vec![crashed(0, "Completed", "", 2, 1)]),
                vec!["BackOff"],
            ),
        ];
        for (name, old, new, want) in cases {
            assert_eq!(reasons(&from_status_change(&old, &new)), want, "{name}");
        }
    }

    #[test]
    fn messages_name_the_component_and_the_cause() {
        let e = from_status_change(
            &pod(vec![running(1, 0)]),
            &pod(vec![running(5, 1)]).with_last(crashed(
                137,
                "Unhealthy",
                "Liveness probe failed: timeout",
                4,
                1,
            )),
        );
        assert_eq!(e[1].2, "component main: Liveness probe failed: timeout");
        assert_eq!(e[1].0, EventType::Warning);
    }

    trait WithLast {
        fn with_last(self, from: ContainerStatus) -> Self;
    }

    impl WithLast for Pod {
        fn with_last(mut self, from: ContainerStatus) -> Self {
            self.status.container_statuses[0].last_state = from.last_state;
            self
        }
    }
}
