//! Objects built for the unit tests of rendering and describe output.

use chrono::{DateTime, TimeZone, Utc};
use edge_api::meta::Condition;
use edge_api::pod::{ContainerStatus, StateRunning, StateTerminated, StateWaiting};
use edge_api::{Container, ContainerState, Node, ObjectMeta, Pod, PodPhase};

pub const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A fixed "now" so ages are deterministic.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
}

pub fn meta(name: &str, namespace: &str, age_secs: i64) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: namespace.into(),
        creation_timestamp: Some(now() - chrono::Duration::seconds(age_secs)),
        ..Default::default()
    }
}

pub fn container(name: &str) -> Container {
    Container {
        name: name.into(),
        image: DIGEST.into(),
        ..Default::default()
    }
}

/// A running pod with two components, one ready, one restarted twice, bound to `node-a`.
pub fn running_pod() -> Pod {
    let mut p = Pod {
        metadata: meta("hello", "default", 300),
        ..Default::default()
    };
    p.metadata.labels.insert("app".into(), "hello".into());
    p.spec.containers = vec![container("main"), container("side")];
    p.spec.containers[0].args = vec!["--port".into(), "8080".into()];
    p.spec.containers[0]
        .resources
        .limits
        .insert("memory".into(), "64Mi".into());
    p.spec.containers[0]
        .resources
        .requests
        .insert("cpu".into(), "250m".into());
    p.spec.node_name = Some("node-a".into());
    p.status.phase = PodPhase::Running;
    p.status.start_time = p.metadata.creation_timestamp;
    p.status.conditions = vec![Condition::new("Ready", false, "ContainersNotReady", "side")];
    p.status.container_statuses = vec![
        ContainerStatus {
            name: "main".into(),
            ready: true,
            restart_count: 0,
            image: DIGEST.into(),
            state: ContainerState {
                running: Some(StateRunning {
                    started_at: p.metadata.creation_timestamp,
                }),
                ..Default::default()
            },
            ..Default::default()
        },
        ContainerStatus {
            name: "side".into(),
            ready: false,
            restart_count: 2,
            image: DIGEST.into(),
            state: ContainerState {
                running: Some(StateRunning {
                    started_at: Some(now()),
                }),
                ..Default::default()
            },
            ..Default::default()
        },
    ];
    p
}

/// A pod whose only component keeps crashing.
pub fn crashing_pod() -> Pod {
    let mut p = Pod {
        metadata: meta("crashy", "prod", 7200),
        ..Default::default()
    };
    p.spec.containers = vec![container("app")];
    p.status.phase = PodPhase::Running;
    p.status.container_statuses = vec![ContainerStatus {
        name: "app".into(),
        restart_count: 7,
        state: ContainerState {
            waiting: Some(StateWaiting {
                reason: "CrashLoopBackOff".into(),
                message: "back-off 5m0s".into(),
            }),
            ..Default::default()
        },
        ..Default::default()
    }];
    p
}

/// A pod that ran to completion with a failure.
pub fn failed_pod() -> Pod {
    let mut p = crashing_pod();
    p.metadata.name = "failed".into();
    p.status.phase = PodPhase::Failed;
    p.status.container_statuses[0].state = ContainerState {
        terminated: Some(StateTerminated {
            exit_code: 3,
            reason: "Error".into(),
            started_at: Some(now() - chrono::Duration::seconds(10)),
            finished_at: Some(now()),
            ..Default::default()
        }),
        ..Default::default()
    };
    p
}

pub fn ready_node(name: &str) -> Node {
    let mut n = Node {
        metadata: meta(name, "", 4 * 86400),
        ..Default::default()
    };
    n.status.conditions = vec![Condition::new("Ready", true, "AgentReady", "heartbeat ok")];
    n.status.node_info.agent_version = "v0.1.0".into();
    n.status.node_info.architecture = "aarch64".into();
    n.status.node_info.operating_system = "linux".into();
    n.status.capacity.insert("cpu".into(), "4".into());
    n.status.capacity.insert("memory".into(), "1Gi".into());
    n.status.allocatable.insert("cpu".into(), "3500m".into());
    n
}
