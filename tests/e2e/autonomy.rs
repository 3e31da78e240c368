//! Node lifecycle and edge autonomy with the real binaries: an agent cut off by a UDP relay
//! keeps its pods while the control plane marks its node NotReady and replaces its Deployment
//! pods elsewhere, then stops the old copies when the link heals; an agent killed and
//! restarted while the server is down runs its pods again from its local store, and nothing
//! restarts when the server returns.

use crate::support::*;
use serde_json::Value;
use std::time::Duration;

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

fn manifest(c: &Cluster) -> String {
    let ticker = component("ticker");
    let text = format!(
        r#"apiVersion: edge.dev/v1
kind: Deployment
metadata: {{name: beats}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: beats}}}}
  template:
    metadata: {{labels: {{app: beats}}}}
    spec:
      containers:
      - name: ticker
        image: {ticker}
        resources: {{requests: {{cpu: 10m, memory: 8Mi}}}}
---
apiVersion: edge.dev/v1
kind: Pod
metadata: {{name: keeper, labels: {{app: keeper}}}}
spec:
  tolerations:
  - {{key: {UNREACHABLE}, operator: Exists, effect: NoExecute}}
  containers:
  - name: ticker
    image: {ticker}
"#
    );
    write_manifest(c.home.path(), "autonomy.yaml", &text)
}

fn name(p: &Value) -> String {
    p["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn node_of(p: &Value) -> &str {
    p["spec"]["nodeName"].as_str().unwrap_or_default()
}

fn terminating(p: &Value) -> bool {
    !p["metadata"]["deletionTimestamp"].is_null()
}

fn running_on(p: &Value, node: &str) -> bool {
    node_of(p) == node && p["status"]["phase"] == "Running" && !terminating(p)
}

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn count_lines(text: &str, all: &[&str]) -> usize {
    text.lines()
        .filter(|l| all.iter().all(|w| l.contains(w)))
        .count()
}

#[test]
fn a_cut_off_agent_keeps_its_pods_which_are_replaced_elsewhere_and_fenced_on_healing() {
    // The server advertises the relay, so the agents learn no way around it: the cut agent
    // cannot fail over to the server's own address. edgectl and worker-b use that one.
    let port = free_port();
    let relay = UdpRelay::start(port);
    let via_relay = format!("127.0.0.1:{}", relay.port);
    let c = Cluster::start_at(
        port,
        &[
            "--no-agent",
            "--advertise",
            &via_relay,
            "--node-grace-period",
            "4s",
            "--default-unreachable-toleration-seconds",
            "3",
            "--default-not-ready-toleration-seconds",
            "3",
        ],
    );
    c.edgectl_direct();
    let direct = format!("127.0.0.1:{}", c.port);
    let fast = ["--heartbeat-interval", "1s"];
    let agent_a = c.spawn_agent("worker-a", &via_relay, &fast);
    c.wait_node_ready("worker-a");
    c.ok(&["apply", "-f", &manifest(&c)]);
    let old: Vec<Value> = wait_for("2 beats pods on worker-a", Duration::from_secs(90), || {
        let pods = c.pods(Some("app=beats"));
        (pods.len() == 2 && pods.iter().all(|p| running_on(p, "worker-a"))).then_some(pods)
    });
    let keeper = c.wait_phase("keeper", "Running");
    let a_dir = c.agent_dir("worker-a");
    let old_logs: Vec<_> = old
        .iter()
        .map(|p| pod_log_file(&a_dir, p, "ticker"))
        .collect();
    let keeper_log = pod_log_file(&a_dir, &keeper, "ticker");
    wait_grows(&keeper_log, 0, "keeper output");
    let _agent_b = c.spawn_agent("worker-b", &direct, &fast);
    c.wait_node_ready("worker-b");

    relay.cut(true);
    wait_for("worker-a Unknown", Duration::from_secs(30), || {
        (c.node_ready("worker-a").as_deref() == Some("Unknown")).then_some(())
    });
    let node = c.node_json("worker-a").expect("node");
    let taints = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let effects: Vec<&str> = taints
        .iter()
        .filter(|t| t["key"] == UNREACHABLE)
        .filter_map(|t| t["effect"].as_str())
        .collect();
    assert!(
        effects.contains(&"NoSchedule") && effects.contains(&"NoExecute"),
        "unreachable taints on the silent node: {node}"
    );
    assert_eq!(
        condition(&node, "Ready").map(|c| c["reason"].clone()),
        Some(Value::from("NodeStatusUnknown"))
    );
    let no_execute_added = taints
        .iter()
        .find(|t| t["key"] == UNREACHABLE && t["effect"] == "NoExecute")
        .map(|t| time(&t["timeAdded"]))
        .expect("timeAdded");
    // Cut off, the agent keeps running its pods.
    for log in old_logs.iter().chain([&keeper_log]) {
        wait_grows(log, file_len(log), "output of a pod on the cut-off node");
    }

    // After tolerationSeconds the Deployment's pods run on worker-b instead.
    let new = wait_for("2 beats pods on worker-b", Duration::from_secs(90), || {
        let pods: Vec<Value> = c
            .pods(Some("app=beats"))
            .into_iter()
            .filter(|p| running_on(p, "worker-b"))
            .collect();
        (pods.len() == 2).then_some(pods)
    });
    let seconds = new[0]["spec"]["tolerations"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["key"] == UNREACHABLE))
        .map(|t| t["tolerationSeconds"].clone());
    assert_eq!(
        seconds,
        Some(Value::from(3)),
        "default toleration: {}",
        new[0]
    );
    for p in &old {
        let now = c
            .pod_json(&name(p))
            .expect("the evicted pod waits for its node");
        assert!(terminating(&now), "evicted: {now}");
        let why = condition(&now, "DisruptionTarget").expect("DisruptionTarget");
        assert_eq!(why["reason"], "DeletionByTaintManager");
        let waited = time(&why["lastTransitionTime"]) - no_execute_added;
        assert!(
            waited >= chrono::Duration::seconds(3),
            "evicted only once the toleration ran out (after {waited})"
        );
    }
    let kept = c.pod_json("keeper").expect("keeper");
    assert!(
        !terminating(&kept) && node_of(&kept) == "worker-a",
        "a pod tolerating unreachable forever stays: {kept}"
    );
    // Still cut off, the old copies run on: the partition cannot tell them to stop.
    for log in &old_logs {
        wait_grows(log, file_len(log), "the old copy on the cut-off node");
    }

    // Long enough for the agent to give the link up: healing then goes through a reconnect,
    // where the list of pods bound here is what fences the old copies.
    wait_for(
        "the agent to notice the cut",
        Duration::from_secs(60),
        || {
            agent_a
                .log_text()
                .contains("lost the control plane; pods keep running")
                .then_some(())
        },
    );
    relay.cut(false);
    wait_for("worker-a Ready again", Duration::from_secs(60), || {
        (c.node_ready("worker-a").as_deref() == Some("True")).then_some(())
    });
    for p in &old {
        wait_for(
            "the old copy to be removed",
            Duration::from_secs(60),
            || c.pod_json(&name(p)).is_none().then_some(()),
        );
    }
    let stopped: Vec<u64> = old_logs.iter().map(|l| file_len(l)).collect();
    std::thread::sleep(Duration::from_millis(2500));
    let later: Vec<u64> = old_logs.iter().map(|l| file_len(l)).collect();
    assert_eq!(stopped, later, "the old copies stopped on the healed agent");
    let log = agent_a.log_text();
    for p in &old {
        assert_eq!(
            count_lines(
                &log,
                &["stopping pod (deleted)", &format!("pod={}", name(p))]
            ),
            1,
            "{log}"
        );
    }
    let node = c.node_json("worker-a").expect("node");
    let lifecycle_taints = node["spec"]["taints"]
        .as_array()
        .map(|ts| ts.iter().filter(|t| t["key"] == UNREACHABLE).count())
        .unwrap_or(0);
    assert_eq!(lifecycle_taints, 0, "taints removed once back: {node}");
    let beats = c.pods(Some("app=beats"));
    assert_eq!(beats.len(), 2, "exactly the desired number remain");
    assert!(beats.iter().all(|p| running_on(p, "worker-b")));
    // The tolerating pod was never restarted: same uid, no restart, one start.
    let kept = c.wait_phase("keeper", "Running");
    assert_eq!(kept["metadata"]["uid"], keeper["metadata"]["uid"]);
    assert_eq!(kept["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(
        count_lines(&log, &["starting pod", "pod=keeper"]),
        1,
        "{log}"
    );
    let ticks = std::fs::read_to_string(&keeper_log).unwrap_or_default();
    assert_eq!(ticks.matches("tick 1\n").count(), 1, "keeper ran once");
}

#[test]
fn an_agent_restarted_while_the_server_is_down_runs_its_pods_and_nothing_restarts_after() {
    let mut c = Cluster::start(&["--no-agent"]);
    let direct = format!("127.0.0.1:{}", c.port);
    let agent = c.spawn_agent("worker-a", &direct, &[]);
    c.wait_node_ready("worker-a");
    c.ok(&["apply", "-f", &manifest(&c)]);
    let keeper = c.wait_phase("keeper", "Running");
    let beats: Vec<Value> = wait_for("2 beats pods running", Duration::from_secs(90), || {
        let pods = c.pods(Some("app=beats"));
        (pods.len() == 2 && pods.iter().all(|p| running_on(p, "worker-a"))).then_some(pods)
    });
    let mut pods = beats.clone();
    pods.push(keeper);
    let dir = c.agent_dir("worker-a");
    let logs: Vec<_> = pods
        .iter()
        .map(|p| pod_log_file(&dir, p, "ticker"))
        .collect();
    for l in &logs {
        wait_for("tick 2", Duration::from_secs(30), || {
            let t = std::fs::read_to_string(l).unwrap_or_default();
            t.contains("tick 2\n").then_some(())
        });
    }

    // The server goes away, then the agent is killed and started again without it.
    drop(c.server.take());
    drop(agent);
    let agent = c.spawn_agent("worker-a", &direct, &[]);
    for l in &logs {
        wait_for(
            "the pod to run again from the local store",
            Duration::from_secs(60),
            || {
                let t = std::fs::read_to_string(l).unwrap_or_default();
                (t.matches("tick 2\n").count() >= 2).then_some(())
            },
        );
    }
    let offline = agent.log_text();
    assert!(
        offline.contains("starting the last known pods from the local store"),
        "{offline}"
    );
    assert_eq!(count_lines(&offline, &["starting pod"]), 3, "{offline}");

    // The server returns: the agent reconnects and leaves its healthy pods alone.
    c.server = Some(c.spawn_server(&["--no-agent"]));
    c.wait_ready();
    wait_for("the agent to reconnect", Duration::from_secs(60), || {
        let log = agent.log_text();
        (count_lines(&log, &["connected to the control plane"]) >= 1).then_some(())
    });
    c.wait_node_ready("worker-a");
    let ticks_before: Vec<usize> = logs
        .iter()
        .map(|l| {
            std::fs::read_to_string(l)
                .unwrap_or_default()
                .matches("tick 1\n")
                .count()
        })
        .collect();
    assert_eq!(ticks_before, vec![2, 2, 2], "each pod started twice so far");
    for (p, l) in pods.iter().zip(&logs) {
        let now = wait_for("the pod reported Running", Duration::from_secs(30), || {
            c.pod_json(&name(p))
                .filter(|n| n["status"]["phase"] == "Running")
        });
        assert_eq!(now["metadata"]["uid"], p["metadata"]["uid"], "same pod");
        assert_eq!(
            now["status"]["containerStatuses"][0]["restartCount"],
            p["status"]["containerStatuses"][0]["restartCount"],
            "restart count unchanged: {now}"
        );
        wait_grows(l, file_len(l), "the pod runs on");
    }
    let after: Vec<usize> = logs
        .iter()
        .map(|l| {
            std::fs::read_to_string(l)
                .unwrap_or_default()
                .matches("tick 1\n")
                .count()
        })
        .collect();
    assert_eq!(
        after, ticks_before,
        "no pod restarted when the server came back"
    );
    let log = agent.log_text();
    assert_eq!(
        count_lines(&log, &["starting pod"]),
        3,
        "no new starts: {log}"
    );
    assert_eq!(c.pods(Some("app=beats")).len(), 2);
}
