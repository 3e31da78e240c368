//! Unit tests of `describe`: the blocks and fields kubectl users look for.

use super::*;
use crate::cli::testutil::*;

#[test]
fn pod_description_has_the_usual_blocks() {
    let mut p = running_pod();
    p.spec.containers[0].env = vec![edge_api::pod::EnvVar {
        name: "GREETING".into(),
        value: "hi".into(),
    }];
    p.metadata.labels.insert("tier".into(), "web".into());
    let s = describe_pod(&p);
    let lines: Vec<_> = s.lines().collect();
    assert_eq!(lines[0], "Name:            hello");
    assert_eq!(lines[1], "Namespace:       default");
    assert_eq!(lines[2], "Node:            node-a");
    assert!(lines[3].starts_with("Start Time:      "), "{s}");
    assert_eq!(lines[4], "Labels:          app=hello");
    assert_eq!(lines[5], "                 tier=web");
    assert_eq!(lines[6], "Annotations:     <none>");
    assert_eq!(lines[7], "Status:          Running");
    for want in [
        "Containers:",
        "  main:",
        &format!("    Image:          {DIGEST}"),
        "    Args:",
        "      --port",
        "      8080",
        "    State:          Running",
        "    Ready:          True",
        "    Restart Count:  0",
        "    Limits:",
        "      memory:  64Mi",
        "    Requests:",
        "      cpu:  250m",
        "    Environment:",
        "      GREETING:  hi",
        "  side:",
        "    Restart Count:  2",
        "    Environment:    <none>",
        "Conditions:",
        "  Type    Status   Reason               Message",
        "  Ready   False    ContainersNotReady   side",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in\n{s}");
    }
    assert!(
        s.contains(&format!(
            "      Started:  {}",
            timestamp(p.status.start_time)
        )),
        "{s}"
    );
}

#[test]
fn terminated_and_waiting_states_show_reason_and_exit_code() {
    let s = describe_pod(&failed_pod());
    assert!(s.contains("    State:          Terminated\n"), "{s}");
    assert!(s.contains("      Reason:     Error\n"), "{s}");
    assert!(s.contains("      Exit Code:  3\n"), "{s}");
    assert!(s.contains("      Finished:"), "{s}");
    assert!(s.contains("Status:          Failed (exit 3)"), "{s}");
    assert!(s.contains("Conditions:  <none>"), "{s}");

    let s = describe_pod(&crashing_pod());
    assert!(s.contains("    State:          Waiting\n"), "{s}");
    assert!(s.contains("      Reason:   CrashLoopBackOff\n"), "{s}");
    assert!(s.contains("      Message:  back-off 5m0s\n"), "{s}");
    assert!(s.contains("Node:            <none>"), "{s}");
}

#[test]
fn node_description_lists_capacity_info_and_its_pods() {
    let n = ready_node("node-a");
    let mut elsewhere = running_pod();
    elsewhere.metadata.name = "elsewhere".into();
    elsewhere.spec.node_name = Some("node-b".into());
    let mut done = running_pod();
    done.metadata.name = "done".into();
    done.status.phase = edge_api::PodPhase::Succeeded;
    let s = describe_node(&n, &[running_pod(), elsewhere, done], now());
    for want in [
        "Name:               node-a",
        "Roles:              <none>",
        "Unschedulable:      false",
        "Capacity:",
        "  cpu:     4",
        "  memory:  1Gi",
        "Allocatable:",
        "  cpu:  3500m",
        "System Info:",
        "  Architecture:      aarch64",
        "  Agent Version:     v0.1.0",
        "  Runtime Version:   <none>",
        "Non-terminated Pods:  (1 in total)",
        "  Namespace   Name    CPU Requests   Memory Requests   Age",
        "  default     hello   250m           0                 5m",
        "  cpu        250m (7%)",
    ] {
        assert!(s.lines().any(|l| l == want), "missing {want:?} in\n{s}");
    }
    assert!(!s.contains("elsewhere") && !s.contains("done"), "{s}");
    assert!(s.contains("  Ready   True     "), "{s}");
}
