//! Unit tests of the workload, service and event descriptions and of the `Events:` table.

use super::*;
use crate::cli::testutil::*;
use edge_api::apps::{DaemonSet, Deployment, Job, ReplicaSet};
use edge_api::event::{Event, EventSource, EventType};
use edge_api::service::{
    EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Service, ServicePort,
    ServiceType,
};
use edge_api::{IntOrString, Object, OwnerReference, PodPhase};

/// The value of a `Key:  value` line, however wide the key column is.
fn field<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(str::trim)
}

fn owner(kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "edge.dev/v1".into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: true,
        block_owner_deletion: true,
    }
}

pub fn deployment() -> Deployment {
    let mut d = Deployment {
        metadata: meta("web", "default", 600),
        ..Default::default()
    };
    d.metadata.uid = "dep-uid".into();
    d.metadata.labels.insert("app".into(), "web".into());
    d.spec.replicas = Some(3);
    d.spec
        .selector
        .match_labels
        .insert("app".into(), "web".into());
    d.spec
        .template
        .metadata
        .labels
        .insert("app".into(), "web".into());
    d.spec.template.spec.containers = vec![crate::cli::testutil::container("main")];
    d.status.replicas = 3;
    d.status.updated_replicas = 3;
    d.status.available_replicas = 3;
    d.status.ready_replicas = 3;
    d.status.conditions = vec![
        Condition::new("Available", true, "MinimumReplicasAvailable", ""),
        Condition::new("Progressing", true, "NewReplicaSetAvailable", ""),
    ];
    d
}

fn replicaset(name: &str, image: &str, replicas: i32) -> ReplicaSet {
    let mut rs = ReplicaSet {
        metadata: meta(name, "default", 600),
        ..Default::default()
    };
    rs.metadata.uid = format!("{name}-uid");
    rs.metadata.owner_references = vec![owner("Deployment", "web", "dep-uid")];
    rs.spec.replicas = Some(replicas);
    rs.spec.template = deployment().spec.template;
    rs.spec.template.spec.containers[0].image = image.into();
    rs.spec
        .template
        .metadata
        .labels
        .insert("pod-template-hash".into(), "abc".into());
    rs.status.replicas = replicas;
    rs
}

fn event(uid: &str, reason: &str, message: &str, count: u32, age_secs: i64) -> Event {
    Event {
        metadata: meta(&format!("x.{reason}"), "default", age_secs),
        involved_object: ObjectReference {
            kind: "Deployment".into(),
            namespace: "default".into(),
            name: "web".into(),
            uid: uid.into(),
        },
        reason: reason.into(),
        message: message.into(),
        type_: EventType::Normal,
        source: EventSource {
            component: "deployment-controller".into(),
            host: String::new(),
        },
        count,
        first_timestamp: Some(now() - chrono::Duration::seconds(age_secs)),
        last_timestamp: Some(now() - chrono::Duration::seconds(age_secs / 2)),
        ..Default::default()
    }
}

#[test]
fn deployment_shows_replicas_strategy_template_conditions_and_replicasets() {
    let d = deployment();
    let rses = vec![
        replicaset("web-new", DIGEST, 3),
        replicaset("web-old", "sha256:old", 1),
        replicaset("web-older", "sha256:older", 0),
    ];
    let events = vec![
        event(
            "dep-uid",
            "ScalingReplicaSet",
            "Scaled up replica set web-new to 3",
            1,
            90,
        ),
        event("other-uid", "ScalingReplicaSet", "not about web", 1, 30),
    ];
    let related = Related {
        replicasets: &rses,
        events: &events,
        ..Default::default()
    };
    let s = describe(&Object::Deployment(d), &related, now());
    for want in [
        "Name:                   web",
        "Selector:               app=web",
        "Replicas:               3 desired | 3 updated | 3 total | 3 available | 0 unavailable",
        "StrategyType:           RollingUpdate",
        "MinReadySeconds:        0",
        "RollingUpdateStrategy:  25% max unavailable, 25% max surge",
        "Pod Template:",
        "  Labels:  app=web",
        "  Containers:",
        "    main:",
        "Conditions:",
        "  Type          Status   Reason",
        "  ----          ------   ------",
        "  Available     True     MinimumReplicasAvailable",
        "  Progressing   True     NewReplicaSetAvailable",
        "OldReplicaSets:  web-old (1/1 replicas created)",
        "NewReplicaSet:   web-new (3/3 replicas created)",
        "Events:",
        "  Type     Reason              Age   From                    Message",
        "  ----     ------              ---   ----                    -------",
        "  Normal   ScalingReplicaSet   90s   deployment-controller   Scaled up replica set web-new to 3",
    ] {
        assert!(s.lines().any(|l| l == want), "missing {want:?} in\n{s}");
    }
    assert!(!s.contains("not about web"), "{s}");
    assert!(
        !s.contains("web-older"),
        "scaled-down old sets are left out:\n{s}"
    );
}

#[test]
fn custom_rolling_update_and_recreate() {
    let mut d = deployment();
    d.spec.strategy.rolling_update = Some(edge_api::apps::RollingUpdate {
        max_surge: Some(IntOrString::Int(1)),
        max_unavailable: Some(IntOrString::Int(0)),
    });
    let s = describe_deployment(&d, &[]);
    assert!(s.contains("0 max unavailable, 1 max surge"), "{s}");
    assert!(s.contains("NewReplicaSet:   <none>"), "{s}");
    d.spec.strategy.type_ = edge_api::apps::DeploymentStrategyType::Recreate;
    let s = describe_deployment(&d, &[]);
    assert!(s.contains("StrategyType:") && s.contains("Recreate"), "{s}");
    assert!(!s.contains("RollingUpdateStrategy"), "{s}");
}

#[test]
fn repeated_events_show_their_count_and_no_events_read_none() {
    let e = event("u", "BackOff", "Back-off restarting", 5, 600);
    assert_eq!(event_age(&e, now()), "5m (x5 over 10m)");
    assert_eq!(events_text(&[], now()), "Events:  <none>\n");
    let s = describe_replicaset(&replicaset("web-new", DIGEST, 3), &[]);
    assert_eq!(field(&s, "Controlled By"), Some("Deployment/web"), "{s}");
    assert_eq!(field(&s, "Replicas"), Some("3 current / 3 desired"), "{s}");
}

#[test]
fn replicaset_and_daemonset_count_their_own_pods() {
    let rs = replicaset("web-new", DIGEST, 3);
    let mut pods = Vec::new();
    for (i, phase) in [
        PodPhase::Running,
        PodPhase::Running,
        PodPhase::Pending,
        PodPhase::Failed,
    ]
    .into_iter()
    .enumerate()
    {
        let mut p = running_pod();
        p.metadata.name = format!("web-new-{i}");
        p.metadata.owner_references = vec![owner("ReplicaSet", "web-new", "web-new-uid")];
        p.status.phase = phase;
        pods.push(p);
    }
    pods.push(running_pod());
    let s = describe_replicaset(&rs, &pods);
    assert_eq!(
        field(&s, "Pods Status"),
        Some("2 Running / 1 Waiting / 0 Succeeded / 1 Failed"),
        "{s}"
    );

    let mut ds = DaemonSet {
        metadata: meta("agent", "edge-system", 60),
        ..Default::default()
    };
    ds.status.desired_number_scheduled = 2;
    ds.status.number_available = 1;
    let s = describe_daemonset(&ds, &pods);
    assert_eq!(
        field(&s, "Desired Number of Nodes Scheduled"),
        Some("2"),
        "{s}"
    );
    assert_eq!(
        field(&s, "Number of Nodes Scheduled with Available Pods"),
        Some("1"),
        "{s}"
    );
    assert!(s.contains("Node-Selector:"), "{s}");
    assert!(s.contains("0 Running / 0 Waiting"), "{s}");
}

#[test]
fn job_shows_counts_times_and_conditions() {
    let mut j = Job {
        metadata: meta("batch", "default", 120),
        ..Default::default()
    };
    j.metadata.uid = "job-uid".into();
    j.spec.completions = Some(5);
    j.spec.parallelism = Some(2);
    j.status.start_time = Some(now() - chrono::Duration::seconds(65));
    j.status.succeeded = 2;
    j.status.active = 2;
    j.status.ready = 1;
    let s = describe_job(&j, &[], now());
    for want in [
        "Parallelism:",
        "Completions:",
        "Backoff Limit:",
        "Duration:",
        "Pods Statuses:",
        "2 Active (1 Ready) / 2 Succeeded / 0 Failed",
        "controller-uid=job-uid",
        "Running",
        "65s",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    j.status.conditions = vec![Condition::new(
        "Failed",
        true,
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    )];
    let s = describe_job(&j, &[], now());
    assert!(
        s.contains("BackoffLimitExceeded   Job has reached the specified backoff limit"),
        "{s}"
    );
}

#[test]
fn service_shows_ports_and_its_endpoints_and_endpoints_their_subsets() {
    let mut svc = Service {
        metadata: meta("web", "default", 60),
        ..Default::default()
    };
    svc.spec.selector.insert("app".into(), "web".into());
    svc.spec.type_ = ServiceType::NodePort;
    svc.spec.ports = vec![ServicePort {
        name: "http".into(),
        port: 80,
        target_port: Some(IntOrString::Int(8080)),
        node_port: Some(30080),
        ..Default::default()
    }];
    let mut eps = edge_api::Endpoints {
        metadata: meta("web", "default", 60),
        ..Default::default()
    };
    eps.subsets = vec![EndpointSubset {
        addresses: vec![EndpointAddress {
            ip: "10.0.0.1".into(),
            ..Default::default()
        }],
        not_ready_addresses: vec![EndpointAddress {
            ip: "10.0.0.2".into(),
            ..Default::default()
        }],
        ports: vec![EndpointPort {
            name: "http".into(),
            port: 8080,
            ..Default::default()
        }],
    }];
    let s = describe_service(&svc, Some(&eps));
    for want in [
        "Selector:          app=web",
        "Type:              NodePort",
        "Port:              http  80/TCP",
        "TargetPort:        8080/TCP",
        "NodePort:          http  30080/TCP",
        "Endpoints:         10.0.0.1:8080",
        "Session Affinity:  None",
    ] {
        assert!(s.lines().any(|l| l == want), "missing {want:?} in\n{s}");
    }
    let s = describe_endpoints(&eps);
    for want in [
        "  Addresses:          10.0.0.1",
        "  NotReadyAddresses:  10.0.0.2",
        "    Name   Port   Protocol",
        "    http   8080   TCP",
    ] {
        assert!(s.lines().any(|l| l == want), "missing {want:?} in\n{s}");
    }
}

#[test]
fn an_event_describes_its_object() {
    let e = event("dep-uid", "ScalingReplicaSet", "Scaled up", 2, 60);
    let s = describe(&Object::Event(e), &Related::default(), now());
    assert!(s.contains("Reason:           ScalingReplicaSet"), "{s}");
    assert!(s.contains("Involved Object:\n  Kind:"), "{s}");
    assert!(s.contains("UID:        dep-uid"), "{s}");
    assert!(!s.contains("Events:"), "{s}");
}

#[test]
fn an_unschedulable_pod_says_why() {
    let mut p = running_pod();
    p.spec.node_name = None;
    p.status = Default::default();
    p.status.conditions = vec![Condition::new(
        "PodScheduled",
        false,
        "Unschedulable",
        "0/3 nodes are available: 3 Insufficient memory.",
    )];
    p.metadata.owner_references = vec![owner("ReplicaSet", "web-abc", "rs-uid")];
    let s = describe(&Object::Pod(p), &Related::default(), now());
    assert_eq!(
        field(&s, "Controlled By"),
        Some("ReplicaSet/web-abc"),
        "{s}"
    );
    assert!(
        s.contains("PodScheduled   False    Unschedulable   0/3 nodes are available: 3 Insufficient memory."),
        "{s}"
    );
    assert!(s.ends_with("Events:  <none>\n"), "{s}");
}
