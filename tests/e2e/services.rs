//! Services with the real binaries: a control plane and two agents on one machine (each with its
//! own node address, 127.0.0.2 and 127.0.0.3), a Deployment of HTTP pods behind a NodePort
//! service. Every agent's node port answers and prefers its own pods; the client's address
//! reaches the workload; a not-ready pod gets no traffic; a component reaches another by name
//! and through the env vars; deleting a pod under load loses no request; `expose` and
//! `port-forward` work.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const NODE_A: &str = "127.0.0.2";
const NODE_B: &str = "127.0.0.3";
/// curl binds to this address, so the workload must see it (not the proxy's) as the client.
const CLIENT: &str = "127.0.0.9";
const WAIT: Duration = Duration::from_secs(120);

/// One Deployment of the HTTP component, two pods spread over the two nodes, serving on `port`
/// (named `http`). Pods share their node's network, so one node holds one pod per port.
fn deployment(name: &str, track: &str, port: u16, relay: &str) -> String {
    format!(
        "apiVersion: edge.dev/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web, track: {track}}}}}
  template:
    metadata: {{labels: {{app: web, track: {track}}}}}
    spec:
      topologySpreadConstraints:
      - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {{matchLabels: {{app: web, track: {track}}}}}}}
      containers:
      - name: main
        image: {relay}
        ports: [{{containerPort: {port}, name: http}}]
        readinessProbe: {{httpGet: {{path: /healthz, port: {port}}}, periodSeconds: 1}}
"
    )
}

/// Two Deployments (ports 8080 and 8081, so that each node holds two endpoints) behind one
/// NodePort service whose named targetPort resolves per pod.
fn manifests(relay: &str) -> String {
    format!(
        "{}---\n{}---
apiVersion: edge.dev/v1
kind: Service
metadata: {{name: web}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: http}}]
",
        deployment("web", "stable", 8080, relay),
        deployment("web-blue", "blue", 8081, relay)
    )
}

/// A pod of the service that never becomes ready, pinned to node-a.
fn unready(relay: &str) -> String {
    format!(
        "apiVersion: edge.dev/v1
kind: Pod
metadata: {{name: canary, labels: {{app: web, track: canary}}}}
spec:
  nodeName: node-a
  containers:
  - name: main
    image: {relay}
    ports: [{{containerPort: 8082, name: http}}]
    readinessProbe: {{httpGet: {{path: /unready, port: 8082}}, periodSeconds: 1}}
"
    )
}

/// The caller: a pod that reaches `web` by name and by env vars (started after the service).
fn front(relay: &str) -> String {
    format!(
        "apiVersion: edge.dev/v1
kind: Pod
metadata: {{name: front, labels: {{app: front}}}}
spec:
  nodeName: node-b
  containers:
  - name: main
    image: {relay}
    ports: [{{containerPort: 9090}}]
"
    )
}

/// `curl` from [`CLIENT`]: status and body, or None when it could not get an answer.
fn curl(host: &str, port: u16, path: &str) -> Option<(u16, String)> {
    let url = format!("http://{host}:{port}{path}");
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--interface", CLIENT])
        .args(["-w", "\n%{http_code}", &url])
        .output()
        .expect("run curl (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    let code: u16 = code.trim().parse().ok()?;
    (code != 0).then(|| (code, body.to_string()))
}

/// The pod named in an http-relay answer (`pod=<name>`).
fn pod_of(body: &str) -> String {
    body.lines()
        .find_map(|l| l.strip_prefix("pod="))
        .unwrap_or_default()
        .to_string()
}

/// A plain GET on a new connection (the load generator: no process per request).
fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// (ready pod names, not-ready pod names) of an Endpoints object.
fn endpoint_pods(c: &Cluster, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let Some(ep) = c.json(&["endpoints", name]) else {
        return Default::default();
    };
    let names = |key: &str| -> BTreeSet<String> {
        ep["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|sub| sub[key].as_array().cloned().unwrap_or_default())
            .map(|a| s(&a["targetRef"]["name"]).to_string())
            .collect()
    };
    (names("addresses"), names("notReadyAddresses"))
}

/// The pods of both Deployments: (name, node).
fn web_pods(c: &Cluster) -> Vec<(String, String)> {
    c.pods(Some("app=web,track!=canary"))
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                s(&p["metadata"]["name"]).to_string(),
                s(&p["spec"]["nodeName"]).to_string(),
            )
        })
        .collect()
}

#[test]
fn services_route_across_two_agents() {
    let c = Cluster::start(&["--no-agent"]);
    let server = format!("127.0.0.1:{}", c.port);
    let _a = c.spawn_agent("node-a", &server, &["--node-ip", NODE_A]);
    let _b = c.spawn_agent("node-b", &server, &["--node-ip", NODE_B]);
    c.wait_node_ready("node-a");
    c.wait_node_ready("node-b");
    let node = c.node_json("node-a").expect("node-a");
    assert_eq!(
        node["status"]["addresses"][0], NODE_A,
        "the agent reports its node address"
    );

    let relay = component("http-relay");
    let dir = c.home.path();
    c.ok(&[
        "apply",
        "-f",
        &write_manifest(dir, "web.yaml", &manifests(&relay)),
    ]);
    let svc = c.json(&["svc", "web"]).expect("service web");
    let node_port = svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("an allocated node port") as u16;
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    let listed = c.ok(&["get", "svc", "web"]);
    assert!(listed.contains(&format!("80:{node_port}/TCP")), "{listed}");

    // Four ready pods, two per node (the spread constraints), all in the endpoints.
    let pods = wait_for("4 ready web endpoints", WAIT, || {
        let (ready, _) = endpoint_pods(&c, "web");
        (ready.len() == 4).then_some(ready)
    });
    let placed = web_pods(&c);
    let on = |n: &str| -> BTreeSet<String> {
        placed
            .iter()
            .filter(|(_, node)| node == n)
            .map(|(p, _)| p.clone())
            .collect()
    };
    assert_eq!(
        (on("node-a").len(), on("node-b").len()),
        (2, 2),
        "{placed:?}"
    );
    let eps = c.ok(&["get", "endpoints", "web"]);
    assert!(
        eps.contains(&format!("{NODE_A}:8080")) && eps.contains(&format!("{NODE_B}:8080")),
        "{eps}"
    );

    // Every agent's node port answers curl; traffic spreads, each node preferring its own pods;
    // the workload sees the client's address.
    let mut seen = BTreeSet::new();
    for (host, node_name) in [(NODE_A, "node-a"), (NODE_B, "node-b")] {
        let mut here = BTreeSet::new();
        // The agent learns of the endpoints from its own watch, a moment after the API has them.
        wait_for(&format!("{host}:{node_port} to route"), WAIT, || {
            curl(host, node_port, "/").filter(|(code, _)| *code == 200)
        });
        for _ in 0..12 {
            let (code, body) = curl(host, node_port, "/").expect("curl answered");
            assert_eq!(code, 200, "{body}");
            assert!(
                body.contains(&format!("x-forwarded-for={CLIENT}")),
                "the client address reaches the workload: {body}"
            );
            here.insert(pod_of(&body));
        }
        assert_eq!(here, on(node_name), "{host} spreads over its own pods");
        seen.extend(here);
    }
    assert_eq!(seen, pods);

    // A pod of the service that is not ready is listed apart and gets no traffic.
    c.ok(&[
        "apply",
        "-f",
        &write_manifest(dir, "canary.yaml", &unready(&relay)),
    ]);
    wait_for("canary listed as not ready", WAIT, || {
        endpoint_pods(&c, "web").1.contains("canary").then_some(())
    });
    for _ in 0..20 {
        let (code, body) =
            get(SocketAddr::new(NODE_A.parse().unwrap(), node_port), "/").expect("node-a answers");
        assert_eq!(code, 200);
        assert_ne!(pod_of(&body), "canary");
    }
    let described = c.ok(&["describe", "svc", "web"]);
    assert!(
        described.contains(&format!("{node_port}/TCP")),
        "{described}"
    );

    // One component reaches another by service name and through the env vars.
    c.ok(&[
        "apply",
        "-f",
        &write_manifest(dir, "front.yaml", &front(&relay)),
    ]);
    let front_addr = SocketAddr::new(NODE_B.parse().unwrap(), 9090);
    for path in [
        "/call?url=http://web/",
        "/call?url=http://web.default/",
        "/call-env?service=WEB",
    ] {
        let (code, body) = wait_for(&format!("front {path}"), WAIT, || {
            get(front_addr, path).ok()
        });
        assert_eq!(code, 200, "{path}: {body}");
        assert!(body.contains("upstream status: 200"), "{path}: {body}");
        assert!(
            on("node-b").contains(&pod_of(&body)),
            "{path}: a local web pod answers: {body}"
        );
    }

    // A node port asked for twice is refused, naming who holds it.
    let clash = format!(
        "apiVersion: edge.dev/v1\nkind: Service\nmetadata: {{name: clash}}\nspec: {{type: NodePort, selector: {{app: web}}, ports: [{{port: 80, nodePort: {node_port}}}]}}\n"
    );
    let err = c.fails(&["apply", "-f", &write_manifest(dir, "clash.yaml", &clash)]);
    assert!(
        err.contains("already allocated") && err.contains("default/web"),
        "{err}"
    );

    // expose: a second service for the Deployment's pods, with its own node port.
    let out = c.ok(&[
        "expose",
        "deployment",
        "web",
        "--name",
        "web-api",
        "--port",
        "8000",
        "--target-port",
        "http",
        "--type",
        "NodePort",
    ]);
    assert_eq!(out.trim(), "service/web-api exposed");
    let api = c.json(&["svc", "web-api"]).expect("web-api");
    assert_eq!(api["spec"]["selector"]["track"], "stable");
    let api_port = api["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("node port") as u16;
    let (_, body) = wait_for("web-api to route", WAIT, || {
        curl(NODE_B, api_port, "/").filter(|(code, _)| *code == 200)
    });
    assert!(pod_of(&body).starts_with("web-"), "{body}");

    port_forward(&c);
    no_request_lost_when_a_pod_goes(&c, node_port);
}

/// `port-forward svc/web` carries a connection to one of its pods.
fn port_forward(c: &Cluster) {
    let mut child = Command::new(EDGECTL)
        .args(["port-forward", "svc/web", ":80"])
        .env("HOME", c.home.path())
        .env("EDGECONFIG", c.home.path().join("config"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("port-forward");
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    out.read_line(&mut line).expect("read");
    // "Forwarding from 127.0.0.1:PORT -> 8080 (pod web-...)"
    let local: SocketAddr = line
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected port-forward output: {line:?}"));
    let (code, body) = get(local, "/").expect("through port-forward");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code, 200, "{body}");
    assert!(pod_of(&body).starts_with("web-"), "{body}");
}

/// Load on both node ports while a pod is deleted and replaced: every request is answered.
fn no_request_lost_when_a_pod_goes(c: &Cluster, node_port: u16) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load: Vec<_> = [NODE_A, NODE_B]
        .into_iter()
        .map(|host| {
            let (stop, done, failures) = (stop.clone(), done.clone(), failures.clone());
            let addr = SocketAddr::new(host.parse().unwrap(), node_port);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match get(addr, "/") {
                        Ok((200, _)) => {}
                        other => failures.lock().unwrap().push(format!("{addr}: {other:?}")),
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let victim = web_pods(c)
        .into_iter()
        .find(|(name, node)| node == "node-a" && !name.starts_with("web-blue"))
        .map(|(name, _)| name)
        .expect("a web pod on node-a");
    c.ok(&["delete", "pod", &victim]);
    wait_for("the victim gone and a replacement ready", WAIT, || {
        let (ready, _) = endpoint_pods(c, "web");
        (ready.len() == 4 && !ready.contains(&victim) && c.pod_json(&victim).is_none())
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().expect("load thread");
    }
    let failures = failures.lock().unwrap();
    let total = done.load(Ordering::SeqCst);
    eprintln!("{total} requests while {victim} was replaced");
    assert!(total > 20, "the load ran ({total} requests)");
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}
