//! The wasm sandbox through the real binaries: an HTTP pod serving while hostile guests hit
//! their limits, volumes and grants as the guest sees them, crash-loop back-off, and probes.

use crate::support::*;
use std::time::{Duration, Instant};

fn container_status(c: &Cluster, pod: &str) -> serde_json::Value {
    c.pod_json(pod)
        .map(|p| p["status"]["containerStatuses"][0].clone())
        .unwrap_or_default()
}

fn assert_serving(port: u16, when: &str) {
    let t0 = Instant::now();
    let got = http_get(port, "/", Duration::from_secs(5));
    let (status, body) = got.unwrap_or_else(|| panic!("web pod unreachable {when}"));
    assert_eq!(status, 200, "web pod {when}: {body}");
    assert!(body.contains("hello from edge http"), "{body}");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "web pod slow {when}: {:?}",
        t0.elapsed()
    );
}

#[test]
fn an_http_pod_keeps_serving_while_hostile_guests_hit_their_limits() {
    let c = Cluster::start(&[]);
    c.wait_node_ready("node-1");
    let d = c.home.path();
    let port = free_tcp_port();
    let web = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  annotations: {{edge.dev/request-timeout: 2s}}\nspec:\n  containers:\n  - name: web\n    image: {}\n    ports: [{{containerPort: {port}}}]\n    env: [{{name: GREETING, value: from-the-manifest}}]\n    resources: {{limits: {{memory: 64Mi}}}}\n    readinessProbe: {{httpGet: {{path: /, port: {port}}}, periodSeconds: 1}}\n",
        component("http-hello")
    );
    c.ok(&["apply", "-f", &write_manifest(d, "web.yaml", &web)]);
    wait_for("web Ready", Duration::from_secs(60), || {
        let p = c.pod_json("web")?;
        let ready = p["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready.then_some(())
    });
    let (status, body) = http_get(port, "/", Duration::from_secs(5)).expect("curl the pod");
    assert_eq!(status, 200);
    assert!(
        body.contains("from-the-manifest"),
        "env reaches the handler: {body}"
    );

    let hostile = |name: &str, policy: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: {policy}\n  containers:\n  - name: {name}\n    image: {}\n    resources: {{limits: {{memory: 32Mi}}}}\n",
            component(name)
        )
    };
    for (name, policy) in [
        ("membomb", "Never"),
        ("recursion", "Never"),
        ("flood", "Always"),
    ] {
        c.ok(&[
            "apply",
            "-f",
            &write_manifest(d, &format!("{name}.yaml"), &hostile(name, policy)),
        ]);
    }
    let bomb = c.wait_phase("membomb", "Failed");
    assert_eq!(
        bomb["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "MemoryLimitExceeded",
        "{bomb}"
    );
    assert_serving(port, "after the memory bomb");
    let rec = c.wait_phase("recursion", "Failed");
    let term = &rec["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(term["reason"], "Trapped", "{rec}");
    assert!(
        term["message"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("stack"),
        "{rec}"
    );
    assert_serving(port, "after the recursion");

    // An infinite loop in a handler hits the request deadline; the pod goes on serving.
    let t0 = Instant::now();
    let (status, _) = http_get(port, "/spin", Duration::from_secs(15)).expect("spin answers");
    assert_eq!(status, 504);
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "deadline honoured: {:?}",
        t0.elapsed()
    );
    assert_serving(port, "after a request hit its deadline");
    let (status, _) = http_get(port, "/oom", Duration::from_secs(15)).expect("oom answers");
    assert_eq!(status, 500);
    assert_serving(port, "after a request hit its memory limit");
    wait_for(
        "DeadlineExceeded/MemoryLimitExceeded on the web pod",
        Duration::from_secs(20),
        || {
            let p = c.pod_json("web")?;
            let text = p["status"].to_string();
            (text.contains("DeadlineExceeded") || text.contains("MemoryLimitExceeded"))
                .then_some(())
        },
    );

    // The flood is capped while everything else goes on.
    c.wait_phase("flood", "Running");
    std::thread::sleep(Duration::from_secs(3));
    assert_serving(port, "during the output flood");
    let logs = c.ok(&["logs", "flood", "--tail", "2000"]);
    assert!(
        logs.contains("output rate limit exceeded"),
        "flood is capped"
    );
    let log = c.server.as_ref().map(|s| s.log_text()).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn volumes_and_grants_are_what_the_guest_sees() {
    let c = Cluster::start(&[]);
    c.wait_node_ready("node-1");
    let d = c.home.path();
    c.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=greeting=hello-config",
    ]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cret",
    ]);
    let host = d.join("hostdir");
    std::fs::create_dir_all(&host).expect("mkdir");
    std::fs::write(host.join("file.txt"), "from-the-host\n").expect("write");
    let denied_port = free_tcp_port();
    let _listener = std::net::TcpListener::bind(("127.0.0.1", denied_port)).expect("bind");
    let listen_port = free_tcp_port();
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: escape}}\nspec:\n  restartPolicy: Never\n  volumes:\n  - {{name: scratch, emptyDir: {{}}}}\n  - {{name: cfg, configMap: {{name: settings}}}}\n  - {{name: sec, secret: {{secretName: creds}}}}\n  - {{name: host, hostPath: {{path: {}}}}}\n  containers:\n  - name: escape\n    image: {}\n    ports: [{{containerPort: {listen_port}}}]\n    env:\n    - {{name: TARGET, value: '127.0.0.1:{denied_port}'}}\n    - {{name: LISTEN, value: '{listen_port}'}}\n    - name: FROM_SECRET\n      valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}\n    volumeMounts:\n    - {{name: scratch, mountPath: /scratch}}\n    - {{name: cfg, mountPath: /config}}\n    - {{name: sec, mountPath: /secret}}\n    - {{name: host, mountPath: /host, readOnly: true}}\n",
        host.display(),
        component("escape")
    );
    c.ok(&["apply", "-f", &write_manifest(d, "escape.yaml", &manifest)]);
    c.wait_phase("escape", "Succeeded");
    let logs = c.ok(&["logs", "escape"]);
    let expect = [
        "read /etc/hostname: denied",
        "read /etc/passwd: denied",
        "read /config/greeting: ok",
        "hello-config",
        "read /secret/password: ok",
        "s3cret",
        "read /host/file.txt: ok",
        "write /scratch/escape-was-here.txt: ok",
        "write /config/escape-was-here.txt: denied",
        "write /host/escape-was-here.txt: denied",
        &format!("connect 127.0.0.1:{denied_port}: denied"),
        &format!("listen {listen_port}: ok"),
    ];
    for e in expect {
        assert!(
            logs.contains(e),
            "guest output should contain {e:?}:\n{logs}"
        );
    }
    assert!(
        !logs.contains("/etc/hostname: ok") && !logs.contains("../etc/hostname: ok"),
        "{logs}"
    );
    assert!(
        !host.join("escape-was-here.txt").exists(),
        "read-only hostPath was written"
    );
    let log = c.server.as_ref().map(|s| s.log_text()).unwrap_or_default();
    assert!(
        log.contains(&denied_port.to_string()),
        "the operator sees the denied connect in the agent log"
    );
}

#[test]
fn a_crashing_pod_backs_off_ten_then_twenty_seconds() {
    let c = Cluster::start(&[]);
    c.wait_node_ready("node-1");
    let m = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: crash}}\nspec:\n  restartPolicy: Always\n  containers:\n  - name: crash\n    image: {}\n",
        component("fail")
    );
    c.ok(&[
        "apply",
        "-f",
        &write_manifest(c.home.path(), "crash.yaml", &m),
    ]);
    let mut seen: Vec<(u64, Instant)> = Vec::new();
    let start = Instant::now();
    while seen.len() < 3 && start.elapsed() < Duration::from_secs(80) {
        let n = container_status(&c, "crash")["restartCount"]
            .as_u64()
            .unwrap_or(0);
        if n > seen.last().map(|s| s.0).unwrap_or(0) {
            seen.push((n, Instant::now()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen.len() >= 3,
        "restarts seen: {:?}",
        seen.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    let first = seen[1].1 - seen[0].1;
    let second = seen[2].1 - seen[1].1;
    assert!(
        first >= Duration::from_secs(9) && first <= Duration::from_secs(14),
        "first back-off {first:?}"
    );
    assert!(
        second >= Duration::from_secs(19) && second <= Duration::from_secs(25),
        "second back-off {second:?}"
    );
    let cs = container_status(&c, "crash");
    assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff", "{cs}");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3, "{cs}");
    assert!(c.ok(&["get", "pods"]).contains("CrashLoopBackOff"));
    // The agent's reports become Events, counted rather than repeated, as kubelet's are.
    let described = c.ok(&["describe", "pod", "crash"]);
    let events = described.split("Events:").nth(1).unwrap_or_default();
    assert!(
        events.contains("Back-off restarting failed component crash"),
        "{described}"
    );
    assert!(events.contains("exited with code 3"), "{described}");
    assert!(events.contains("(x"), "repeats are counted:\n{described}");
}

#[test]
fn liveness_restarts_and_readiness_gates_ready() {
    let c = Cluster::start(&[]);
    c.wait_node_ready("node-1");
    let d = c.home.path();
    let pod = |name: &str, port: u16, probe: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - name: web\n    image: {}\n    ports: [{{containerPort: {port}}}]\n    {probe}: {{httpGet: {{path: /nope, port: {port}}}, periodSeconds: 1, failureThreshold: 2}}\n",
            component("http-hello")
        )
    };
    let (p1, p2) = (free_tcp_port(), free_tcp_port());
    c.ok(&[
        "apply",
        "-f",
        &write_manifest(d, "live.yaml", &pod("live", p1, "livenessProbe")),
    ]);
    c.ok(&[
        "apply",
        "-f",
        &write_manifest(d, "ready.yaml", &pod("ready", p2, "readinessProbe")),
    ]);
    let cs = wait_for("a liveness restart", Duration::from_secs(60), || {
        let cs = container_status(&c, "live");
        (cs["restartCount"].as_u64().unwrap_or(0) >= 1).then_some(cs)
    });
    assert!(cs.to_string().contains("Liveness probe failed"), "{cs}");
    let described = c.ok(&["describe", "pod", "live"]);
    assert!(
        described.contains("Unhealthy") && described.contains("Liveness probe failed"),
        "{described}"
    );
    c.wait_phase("ready", "Running");
    std::thread::sleep(Duration::from_secs(4));
    let p = c.pod_json("ready").expect("ready pod");
    let ready = p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned());
    assert_eq!(
        ready.map(|r| r["status"].clone()),
        Some("False".into()),
        "{p}"
    );
    assert_eq!(
        p["status"]["containerStatuses"][0]["restartCount"], 0,
        "readiness never restarts"
    );
    let table = c.ok(&["get", "pods"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("ready") && l.contains("0/1")),
        "{table}"
    );
}
