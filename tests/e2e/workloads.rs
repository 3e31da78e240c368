//! Workload controllers with the real binaries: a Deployment rolling between two components
//! within its surge and unavailability bounds, rolling back, stalling on a crashing component,
//! and cascading on delete; a DaemonSet following agents that join; Jobs; namespace deletion.

use crate::support::*;
use serde_json::Value;
use std::time::Duration;

const ROLL: Duration = Duration::from_secs(120);

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn web(wasm: &str, deadline: u32, min_ready: u32) -> String {
    format!(
        "apiVersion: edge.dev/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 1, maxUnavailable: 1}}}}
  progressDeadlineSeconds: {deadline}
  minReadySeconds: {min_ready}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: main
        image: {}
        resources: {{requests: {{cpu: 10m, memory: 8Mi}}, limits: {{memory: 32Mi}}}}
",
        component(wasm)
    )
}

/// Waits until the Deployment reports a finished rollout, as `rollout status` judges it.
fn wait_rolled_out(c: &Cluster, name: &str, replicas: i64) -> Value {
    wait_for(&format!("deployment {name} rolled out"), ROLL, || {
        let d = c.json(&["deployment", name])?;
        let st = &d["status"];
        let done = st["updatedReplicas"] == replicas
            && st["replicas"] == replicas
            && st["availableReplicas"] == replicas
            && st["observedGeneration"].as_u64() >= d["metadata"]["generation"].as_u64()
            && condition_of(&d, "Progressing").is_some_and(|(_, r)| r == "NewReplicaSetAvailable");
        done.then_some(d)
    })
}

/// The ReplicaSets of app=web by revision: (revision, name, replicas).
fn replica_sets(c: &Cluster) -> Vec<(String, String, i64)> {
    let mut v: Vec<_> = c
        .items(&["rs", "-l", "app=web"])
        .iter()
        .map(|rs| {
            let m = &rs["metadata"];
            (
                s(&m["annotations"]["deployment.kubernetes.io/revision"]).to_string(),
                s(&m["name"]).to_string(),
                rs["spec"]["replicas"].as_i64().unwrap_or(1),
            )
        })
        .collect();
    v.sort();
    v
}

/// The images of the live (not terminating) web pods.
fn live_images(c: &Cluster) -> Vec<String> {
    c.items(&["pods", "-l", "app=web"])
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| s(&p["spec"]["containers"][0]["image"]).to_string())
        .collect()
}

fn check_bounds(counts: &PodCounts, what: &str) {
    // 3 replicas, maxSurge 1, maxUnavailable 1.
    assert!(
        counts.max_active <= 4,
        "{what}: {} pods at once (> 3 + maxSurge 1): {:?}",
        counts.max_active,
        counts.timeline
    );
    assert!(
        counts.min_available >= 2,
        "{what}: only {} ready (< 3 - maxUnavailable 1): {:?}",
        counts.min_available,
        counts.timeline
    );
    assert!(
        counts.timeline.len() > 6,
        "{what}: the watch saw the rollout: {:?}",
        counts.timeline
    );
}

#[test]
fn a_deployment_rolls_within_its_bounds_rolls_back_stalls_on_a_bad_component_and_cascades() {
    let c = Cluster::start(&[]);
    c.wait_node_ready("node-1");
    let dir = c.home.path();
    let v1 = write_manifest(dir, "v1.yaml", &web("ticker", 60, 0));
    let v2 = write_manifest(dir, "v2.yaml", &web("beacon", 60, 0));

    let out = c.ok(&["apply", "-f", &v1]);
    assert!(out.contains("deployment/web created"), "{out}");
    let d = wait_rolled_out(&c, "web", 3);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let first = replica_sets(&c);
    assert_eq!(first.len(), 1, "{first:?}");
    let (rev, rs1, replicas) = &first[0];
    assert_eq!((rev.as_str(), *replicas), ("1", 3));
    let pods = c.items(&["pods", "-l", "app=web"]);
    assert_eq!(pods.len(), 3);
    let hash = rs1.strip_prefix("web-").expect("RS named web-<hash>");
    assert_eq!(hash.len(), 10);
    for p in &pods {
        assert_eq!(p["metadata"]["labels"]["pod-template-hash"], hash);
        assert_eq!(p["metadata"]["ownerReferences"][0]["name"], rs1.as_str());
        assert!(s(&p["metadata"]["name"]).starts_with(&format!("{rs1}-")));
    }
    let v1_image = live_images(&c)[0].clone();
    // Re-applying the same manifest changes nothing (the revision annotation is the server's).
    assert!(c
        .ok(&["apply", "-f", &v1])
        .contains("deployment/web unchanged"));

    // Roll to another component while watching every pod change.
    let watch = PodWatch::start(&c, "default", "app=web");
    c.ok(&["apply", "-f", &v2]);
    wait_rolled_out(&c, "web", 3);
    check_bounds(&watch.stop(), "rollout to beacon");
    let images = live_images(&c);
    assert_eq!(images.len(), 3);
    assert!(images.iter().all(|i| *i != v1_image), "{images:?}");
    let both = replica_sets(&c);
    assert_eq!(
        both.len(),
        2,
        "the old ReplicaSet is kept for rollback: {both:?}"
    );
    assert_eq!((both[0].1.as_str(), both[0].2), (rs1.as_str(), 0));
    assert_eq!((both[1].0.as_str(), both[1].2), ("2", 3));

    // Roll back to the previous revision.
    let watch = PodWatch::start(&c, "default", "app=web");
    c.ok(&["rollout", "undo", "deployment/web"]);
    let d = wait_rolled_out(&c, "web", 3);
    check_bounds(&watch.stop(), "rollback");
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    assert!(live_images(&c).iter().all(|i| *i == v1_image));
    let back = replica_sets(&c);
    assert_eq!(back.len(), 2, "{back:?}");
    assert_eq!(
        (back[1].0.as_str(), back[1].1.as_str()),
        ("3", rs1.as_str()),
        "the first ReplicaSet is reused as revision 3"
    );

    // A component that crashes at once: the rollout stalls within bounds and says so.
    let bad = write_manifest(dir, "bad.yaml", &web("fail", 8, 2));
    c.ok(&["apply", "-f", &bad]);
    let d = wait_for("the failed-progress condition", ROLL, || {
        let d = c.json(&["deployment", "web"])?;
        (condition_of(&d, "Progressing")?
            == ("False".to_string(), "ProgressDeadlineExceeded".to_string()))
            .then_some(d)
    });
    let msg = d["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"))
        .map(|c| s(&c["message"]).to_string())
        .unwrap_or_default();
    assert!(msg.contains("has timed out progressing"), "{msg}");
    assert!(d["status"]["availableReplicas"].as_i64() >= Some(2), "{d}");
    let running_v1 = live_images(&c).iter().filter(|i| **i == v1_image).count();
    assert!(
        running_v1 >= 2,
        "the old version keeps serving: {running_v1}"
    );
    let out = c.fails(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    assert!(out.contains("exceeded its progress deadline"), "{out}");

    // Events tell the story on the Deployment and its pods.
    let events = c.items(&["events"]);
    let reasons: Vec<&str> = events.iter().map(|e| s(&e["reason"])).collect();
    for want in [
        "ScalingReplicaSet",
        "SuccessfulCreate",
        "SuccessfulDelete",
        "Scheduled",
    ] {
        assert!(reasons.contains(&want), "{want} in {reasons:?}");
    }

    // Deleting the Deployment removes its ReplicaSets and pods.
    c.ok(&["delete", "deployment", "web"]);
    wait_for("ReplicaSets and pods of web to go", ROLL, || {
        (replica_sets(&c).is_empty() && c.items(&["pods", "-l", "app=web"]).is_empty())
            .then_some(())
    });
}

#[test]
fn a_daemon_set_covers_every_agent_and_follows_one_that_joins() {
    let c = Cluster::start(&[]);
    c.wait_node_ready("node-1");
    let server = format!("127.0.0.1:{}", c.port);
    let _w1 = c.spawn_agent("worker-1", &server, &[]);
    c.wait_node_ready("worker-1");
    c.ok(&[
        "apply",
        "-f",
        example("daemonset.yaml").to_str().expect("utf8"),
    ]);
    let on_nodes = |c: &Cluster| {
        let mut v: Vec<String> = c
            .items(&["pods", "-l", "app=beacon"])
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .map(|p| s(&p["spec"]["nodeName"]).to_string())
            .collect();
        v.sort();
        v
    };
    let want = |nodes: &[&str]| {
        let want: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
        move |c: &Cluster| (on_nodes(c) == want).then_some(())
    };
    let two = want(&["node-1", "worker-1"]);
    wait_for("a beacon on both nodes", ROLL, || two(&c));

    let _w2 = c.spawn_agent("worker-2", &server, &[]);
    c.wait_node_ready("worker-2");
    let three = want(&["node-1", "worker-1", "worker-2"]);
    wait_for("a beacon on the node that joined", ROLL, || three(&c));
    let ds = wait_for("DaemonSet status", ROLL, || {
        let ds = c.json(&["daemonset", "beacon"])?;
        (ds["status"]["numberReady"] == 3).then_some(ds)
    });
    assert_eq!(ds["status"]["desiredNumberScheduled"], 3);
    assert_eq!(ds["status"]["currentNumberScheduled"], 3);
    assert_eq!(
        c.items(&["pods", "-l", "app=beacon"]).len(),
        3,
        "one pod per node"
    );

    // A node that leaves loses its pod.
    drop(_w2);
    c.ok(&["delete", "node", "worker-2"]);
    wait_for("the departed node's beacon to go", ROLL, || {
        (c.items(&["pods", "-l", "app=beacon"]).len() == 2).then_some(())
    });
    assert_eq!(on_nodes(&c), ["node-1", "worker-1"]);

    // Orphaning: the DaemonSet goes, its pods stay, no longer owned.
    c.ok(&["delete", "daemonset", "beacon", "--cascade=orphan"]);
    wait_for("the DaemonSet to go", ROLL, || {
        c.json(&["daemonset", "beacon"]).is_none().then_some(())
    });
    let pods = c.items(&["pods", "-l", "app=beacon"]);
    assert_eq!(pods.len(), 2, "orphaned pods stay");
    for p in &pods {
        let refs = p["metadata"]["ownerReferences"]
            .as_array()
            .map_or(0, |r| r.len());
        assert_eq!(refs, 0, "{p}");
    }
}

fn job(name: &str, wasm: &str, completions: u32, parallelism: u32, backoff: u32) -> String {
    format!(
        "apiVersion: edge.dev/v1
kind: Job
metadata: {{name: {name}, namespace: batch}}
spec:
  completions: {completions}
  parallelism: {parallelism}
  backoffLimit: {backoff}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: {}
",
        component(wasm)
    )
}

#[test]
fn jobs_finish_within_parallelism_respect_backoff_and_a_namespace_deletes_its_contents() {
    let c = Cluster::start(&[]);
    c.wait_node_ready("node-1");
    let dir = c.home.path();
    let ns = write_manifest(
        dir,
        "ns.yaml",
        "apiVersion: edge.dev/v1\nkind: Namespace\nmetadata: {name: batch}\n",
    );
    c.ok(&["apply", "-f", &ns]);

    let watch = PodWatch::start(&c, "batch", "job-name=count");
    c.ok(&[
        "apply",
        "-f",
        &write_manifest(dir, "count.yaml", &job("count", "hello", 5, 2, 2)),
    ]);
    let j = wait_for("job count to complete", ROLL, || {
        let j = c.json(&["job", "count", "-n", "batch"])?;
        (condition_of(&j, "Complete")?.0 == "True").then_some(j)
    });
    let counts = watch.stop();
    assert!(
        counts.max_active <= 2,
        "parallelism 2: {:?}",
        counts.timeline
    );
    assert!(
        counts.max_active == 2,
        "two ran at once: {:?}",
        counts.timeline
    );
    assert_eq!(j["status"]["succeeded"], 5);
    let pods = c.items(&["pods", "-n", "batch", "-l", "job-name=count"]);
    assert_eq!(pods.len(), 5, "exactly five pods");
    assert!(pods.iter().all(|p| p["status"]["phase"] == "Succeeded"));

    c.ok(&[
        "apply",
        "-f",
        &write_manifest(dir, "crash.yaml", &job("crash", "fail", 1, 1, 1)),
    ]);
    let j = wait_for("job crash to fail", ROLL, || {
        let j = c.json(&["job", "crash", "-n", "batch"])?;
        (condition_of(&j, "Failed")? == ("True".to_string(), "BackoffLimitExceeded".to_string()))
            .then_some(j)
    });
    assert_eq!(j["status"]["failed"], 2, "{j}");
    std::thread::sleep(Duration::from_secs(3));
    let pods = c.items(&["pods", "-n", "batch", "-l", "job-name=crash"]);
    assert_eq!(pods.len(), 2, "backoffLimit 1: two tries, no third");
    assert!(pods.iter().all(|p| p["status"]["phase"] == "Failed"));
    let reasons: Vec<String> = c
        .items(&["events", "-n", "batch"])
        .iter()
        .map(|e| s(&e["reason"]).to_string())
        .collect();
    assert!(reasons.iter().any(|r| r == "Completed"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r == "BackoffLimitExceeded"),
        "{reasons:?}"
    );

    // Foreground: the Job stays (being deleted) until its pods are gone.
    c.ok(&[
        "delete",
        "job",
        "count",
        "-n",
        "batch",
        "--cascade=foreground",
    ]);
    wait_for("job count and its pods to go", ROLL, || {
        let job = c.json(&["job", "count", "-n", "batch"]);
        let pods = c.items(&["pods", "-n", "batch", "-l", "job-name=count"]);
        assert!(
            job.is_some() || pods.is_empty(),
            "the Job went before its pods"
        );
        (job.is_none() && pods.is_empty()).then_some(())
    });

    // Something still running in the namespace, then delete the namespace.
    let ticker = format!(
        "apiVersion: edge.dev/v1\nkind: Pod\nmetadata: {{name: ticker, namespace: batch}}\nspec:\n  containers:\n  - name: main\n    image: {}\n",
        component("ticker")
    );
    c.ok(&["apply", "-f", &write_manifest(dir, "ticker.yaml", &ticker)]);
    wait_for("ticker running in batch", ROLL, || {
        let p = c.json(&["pod", "ticker", "-n", "batch"])?;
        (p["status"]["phase"] == "Running").then_some(())
    });
    c.ok(&["delete", "namespace", "batch"]);
    if let Some(n) = c.json(&["namespace", "batch"]) {
        assert_eq!(n["status"]["phase"], "Terminating", "{n}");
    }
    wait_for("namespace batch and its contents to go", ROLL, || {
        (c.json(&["namespace", "batch"]).is_none()).then_some(())
    });
    let left: Vec<Value> = c
        .items(&["pods", "-A"])
        .into_iter()
        .chain(c.items(&["jobs", "-A"]))
        .chain(c.items(&["events", "-A"]))
        .filter(|o| o["metadata"]["namespace"] == "batch")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let err = c.fails(&["delete", "namespace", "default"]);
    assert!(err.contains("cannot be deleted"), "{err}");
}
