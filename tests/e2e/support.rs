//! Helpers: start `edged` processes in temporary directories, run `edgectl` against them, wait.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const EDGED: &str = env!("CARGO_BIN_EXE_edged");
pub const EDGECTL: &str = env!("CARGO_BIN_EXE_edgectl");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The example manifests, after checking the components they use were built.
pub fn example(name: &str) -> PathBuf {
    let components = repo().join("examples/components");
    assert!(
        components.join("hello.wasm").exists(),
        "guest components are missing: run scripts/build-modules.sh (scripts/test.sh does)"
    );
    repo().join("examples").join(name)
}

/// A free UDP port on loopback (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// Polls `f` every 100 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A daemon process that is killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn spawn(args: &[&str], home: &Path, log_name: &str) -> Daemon {
        let log = home.join(log_name);
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(EDGED)
            .args(args)
            .env("HOME", home)
            .env("EDGECONFIG", home.join("config"))
            .env("RUST_LOG", "info,edge_control=debug,edge_agent=debug")
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn edged");
        Daemon { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Ctrl-C: a graceful stop.
    pub fn interrupt(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("edged did not stop on SIGINT:\n{}", self.log_text());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An all-in-one cluster (server + built-in agent) in a temporary home.
pub struct Cluster {
    pub home: tempfile::TempDir,
    pub port: u16,
    pub server: Option<Daemon>,
}

impl Cluster {
    pub fn start(extra: &[&str]) -> Cluster {
        let home = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut c = Cluster {
            home,
            port,
            server: None,
        };
        c.server = Some(c.spawn_server(extra));
        c.wait_ready();
        c
    }

    pub fn data_dir(&self) -> PathBuf {
        self.home.path().join("data")
    }

    pub fn spawn_server(&self, extra: &[&str]) -> Daemon {
        let listen = format!("127.0.0.1:{}", self.port);
        let data = self.data_dir();
        let mut args = vec![
            "server",
            "--data-dir",
            data.to_str().expect("utf8"),
            "--listen",
            &listen,
            "--node-name",
            "node-1",
        ];
        args.extend_from_slice(extra);
        Daemon::spawn(&args, self.home.path(), "server.log")
    }

    /// Waits until edgectl can reach the server (and, with a built-in agent, the node is Ready).
    pub fn wait_ready(&self) {
        wait_for("the server to answer", Duration::from_secs(60), || {
            let o = self.edgectl(&["get", "namespaces"]);
            o.status.success().then_some(())
        });
    }

    pub fn wait_node_ready(&self, node: &str) {
        wait_for(
            &format!("node {node} Ready"),
            Duration::from_secs(60),
            || {
                let o = self.edgectl(&["get", "nodes"]);
                let text = stdout(&o);
                text.lines()
                    .any(|l| l.starts_with(node) && l.contains(" Ready"))
                    .then_some(())
            },
        );
    }

    pub fn edgectl(&self, args: &[&str]) -> Output {
        Command::new(EDGECTL)
            .args(args)
            .env("HOME", self.home.path())
            .env("EDGECONFIG", self.home.path().join("config"))
            .stdin(Stdio::null())
            .output()
            .expect("run edgectl")
    }

    /// Runs edgectl and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.edgectl(args);
        assert!(
            o.status.success(),
            "edgectl {args:?} failed:\nstdout: {}\nstderr: {}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// Runs edgectl and asserts failure, returning stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.edgectl(args);
        assert!(
            !o.status.success(),
            "edgectl {args:?} should have failed:\n{}",
            stdout(&o)
        );
        stderr(&o)
    }

    /// The pod as JSON, if it exists.
    pub fn pod_json(&self, name: &str) -> Option<serde_json::Value> {
        let o = self.edgectl(&["get", "pod", name, "-o", "json"]);
        if !o.status.success() {
            return None;
        }
        serde_json::from_slice(&o.stdout).ok()
    }

    pub fn wait_phase(&self, name: &str, phase: &str) -> serde_json::Value {
        wait_for(
            &format!("pod {name} {phase}"),
            Duration::from_secs(90),
            || {
                self.pod_json(name)
                    .filter(|p| p["status"]["phase"] == phase)
            },
        )
    }

    pub fn wait_gone(&self, name: &str) {
        wait_for(
            &format!("pod {name} to be gone"),
            Duration::from_secs(60),
            || self.pod_json(name).is_none().then_some(()),
        );
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A free TCP port on loopback.
pub fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A plain HTTP/1.1 GET to 127.0.0.1:`port`: status code and body, or None if it could not connect.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Writes a manifest into `dir` and returns its path as a string.
pub fn write_manifest(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write manifest");
    p.to_str().expect("utf8").to_string()
}

/// The absolute path of a built guest component.
pub fn component(name: &str) -> String {
    let p = repo()
        .join("examples/components")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/build-modules.sh",
        p.display()
    );
    p.to_str().expect("utf8").to_string()
}

/// The first answer to a watch from `resource_version`, sent with the cluster's admin config.
pub fn first_watch_answer(
    cluster: &Cluster,
    resource_version: u64,
) -> Result<Option<edge_api::wire::Response>, edge_api::wire::WireError> {
    use edge_api::wire::{Client, Request, ALPN_API};
    let config = edge_api::config::ClientConfigFile::load(&cluster.home.path().join("config"))
        .expect("admin config");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let client =
            Client::connect(&config.server, config.quic_config(ALPN_API).expect("tls")).await?;
        let kind = edge_api::Kind::Pod;
        let watch = Request::Watch {
            kind,
            namespace: None,
            selector: None,
            resource_version: Some(resource_version),
        };
        let mut stream = client.stream(&watch).await?;
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or(Ok(None))
    })
}

// ---- Faults and separate agents (node lifecycle and autonomy tests) ----

/// A UDP relay between an agent and a server that drops everything while cut. QUIC runs over
/// UDP, so this severs the agent's link (both ways) without touching either process.
pub struct UdpRelay {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpRelay {
    /// Relays 127.0.0.1:`port` (returned) to 127.0.0.1:`upstream`.
    pub fn start(upstream: u16) -> UdpRelay {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let front = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind relay");
        front
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let port = front.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (cut.clone(), stop.clone());
        let thread = std::thread::spawn(move || relay_loop(front, upstream, c, s));
        UdpRelay {
            port,
            cut,
            stop,
            thread: Some(thread),
        }
    }

    /// Drops all traffic from now on (`true`) or lets it through again (`false`).
    pub fn cut(&self, on: bool) {
        self.cut.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One upstream socket per client address, so the server sees each agent connection apart.
fn relay_loop(
    front: std::net::UdpSocket,
    upstream: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    let mut clients: std::collections::HashMap<std::net::SocketAddr, std::net::UdpSocket> =
        Default::default();
    let mut backs = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !stop.load(SeqCst) {
        let Ok((n, from)) = front.recv_from(&mut buf) else {
            continue;
        };
        if cut.load(SeqCst) {
            continue;
        }
        let up = clients.entry(from).or_insert_with(|| {
            let up = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind upstream");
            up.connect(("127.0.0.1", upstream))
                .expect("connect upstream");
            up.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            let (back, front, cut, stop) = (
                up.try_clone().expect("clone"),
                front.try_clone().expect("clone"),
                cut.clone(),
                stop.clone(),
            );
            backs.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(SeqCst) {
                    if let Ok(n) = back.recv(&mut buf) {
                        if !cut.load(SeqCst) {
                            let _ = front.send_to(&buf[..n], from);
                        }
                    }
                }
            }));
            up
        });
        let _ = up.send(&buf[..n]);
    }
    for b in backs {
        let _ = b.join();
    }
}

impl Cluster {
    /// As `start`, on a chosen UDP port (so that a relay in front of it can exist first).
    pub fn start_at(port: u16, extra: &[&str]) -> Cluster {
        let home = tempfile::tempdir().expect("tempdir");
        let mut c = Cluster {
            home,
            port,
            server: None,
        };
        c.server = Some(c.spawn_server(extra));
        c.wait_ready();
        c
    }

    /// Points this cluster's edgectl at the server's own address only (not the addresses the
    /// server advertises), so the test's view survives a cut between agents and the server.
    pub fn edgectl_direct(&self) {
        let path = self.home.path().join("config");
        let mut cfg = edge_api::config::ClientConfigFile::load(&path).expect("admin config");
        cfg.server = format!("127.0.0.1:{}", self.port);
        cfg.servers.clear();
        cfg.save(&path).expect("save admin config");
    }

    /// Starts `edged agent` as node `name` dialing `server` (host:port), with its own data
    /// directory under the cluster's home; `extra` adds flags.
    pub fn spawn_agent(&self, name: &str, server: &str, extra: &[&str]) -> Daemon {
        let token = std::fs::read_to_string(self.data_dir().join("token")).expect("token file");
        let dir = self.agent_dir(name);
        let mut args = vec![
            "agent",
            "--server",
            server,
            "--token",
            token.trim(),
            "--data-dir",
            dir.to_str().expect("utf8"),
            "--node-name",
            name,
        ];
        args.extend_from_slice(extra);
        let log = format!("agent-{name}.log");
        // A restarted agent appends a numbered log, so each run's output can be read apart.
        let log = (0..)
            .map(|i| {
                if i == 0 {
                    log.clone()
                } else {
                    format!("agent-{name}.{i}.log")
                }
            })
            .find(|l| !self.home.path().join(l).exists())
            .expect("a free log name");
        Daemon::spawn(&args, self.home.path(), &log)
    }

    pub fn agent_dir(&self, name: &str) -> PathBuf {
        self.home.path().join(format!("agent-{name}"))
    }

    /// Every pod (optionally selected by `-l selector`) as JSON objects.
    pub fn pods(&self, selector: Option<&str>) -> Vec<serde_json::Value> {
        let mut args = vec!["get", "pods", "-o", "json"];
        if let Some(s) = selector {
            args.extend_from_slice(&["-l", s]);
        }
        let o = self.edgectl(&args);
        if !o.status.success() {
            return Vec::new();
        }
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        match v.get("items").and_then(|i| i.as_array()) {
            Some(items) => items.clone(),
            None if v.get("metadata").is_some() => vec![v],
            None => Vec::new(),
        }
    }

    pub fn node_json(&self, name: &str) -> Option<serde_json::Value> {
        let o = self.edgectl(&["get", "node", name, "-o", "json"]);
        if !o.status.success() {
            return None;
        }
        serde_json::from_slice(&o.stdout).ok()
    }

    /// The node's Ready condition status ("True", "False", "Unknown"), if reported.
    pub fn node_ready(&self, name: &str) -> Option<String> {
        let n = self.node_json(name)?;
        let conds = n["status"]["conditions"].as_array()?.clone();
        conds
            .iter()
            .find(|c| c["type"] == "Ready")
            .and_then(|c| c["status"].as_str().map(str::to_string))
    }
}

/// The log file an agent keeps for one container of one pod incarnation.
pub fn pod_log_file(agent_dir: &Path, pod: &serde_json::Value, container: &str) -> PathBuf {
    let m = &pod["metadata"];
    let ns = m["namespace"].as_str().unwrap_or("default");
    let (name, uid) = (
        m["name"].as_str().unwrap_or_default(),
        m["uid"].as_str().unwrap_or_default(),
    );
    agent_dir
        .join("logs")
        .join(format!("{ns}_{name}_{uid}"))
        .join(format!("{container}.log"))
}

/// Size of a file, 0 if missing.
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Waits until the file grows past `than` bytes: the process writing it is alive.
pub fn wait_grows(path: &Path, than: u64, what: &str) -> u64 {
    wait_for(what, Duration::from_secs(30), || {
        let n = file_len(path);
        (n > than).then_some(n)
    })
}

// ---- Workloads (controllers tests): JSON reads and a pod watch that counts as it goes ----

impl Cluster {
    /// `edgectl get ARGS -o json` as JSON, if the command succeeds.
    pub fn json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let o = self.edgectl(&all);
        if !o.status.success() {
            return None;
        }
        serde_json::from_slice(&o.stdout).ok()
    }

    /// The objects a `get` lists (a single object counts as a list of one).
    pub fn items(&self, args: &[&str]) -> Vec<serde_json::Value> {
        match self.json(args) {
            Some(v) => match v.get("items").and_then(|i| i.as_array()) {
                Some(items) => items.clone(),
                None if v.get("metadata").is_some() => vec![v],
                None => Vec::new(),
            },
            None => Vec::new(),
        }
    }
}

/// The status of condition `type_` of an object, with its reason.
pub fn condition_of(obj: &serde_json::Value, type_: &str) -> Option<(String, String)> {
    let conds = obj["status"]["conditions"].as_array()?;
    let c = conds.iter().find(|c| c["type"] == type_)?;
    Some((
        c["status"].as_str().unwrap_or_default().to_string(),
        c["reason"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Counts of pods seen by a watch after every change: the most that were active at once
/// (not being deleted, not finished) and the fewest that were active and Ready.
#[derive(Debug, Clone, Default)]
pub struct PodCounts {
    pub max_active: usize,
    pub min_available: usize,
    /// (active, available) after each change, for failure messages.
    pub timeline: Vec<(usize, usize)>,
}

/// Watches the pods of a namespace matching a selector over the API from a background thread,
/// applying each change to a local copy and counting after each one.
pub struct PodWatch {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<PodCounts>>,
}

fn pod_counts(pods: &std::collections::HashMap<String, edge_api::Pod>) -> (usize, usize) {
    let active: Vec<&edge_api::Pod> = pods
        .values()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !p.status.phase.is_terminal())
        .collect();
    let ready = active
        .iter()
        .filter(|p| {
            edge_api::meta::condition(&p.status.conditions, "Ready").is_some_and(|c| c.is_true())
        })
        .count();
    (active.len(), ready)
}

impl PodWatch {
    /// Starts watching; returns once the current pods are listed and the watch is open.
    pub fn start(cluster: &Cluster, namespace: &str, selector: &str) -> PodWatch {
        use edge_api::wire::{Client, EventType, Request, Response, ALPN_API};
        let config = edge_api::config::ClientConfigFile::load(&cluster.home.path().join("config"))
            .expect("admin config");
        let (namespace, selector) = (namespace.to_string(), selector.to_string());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let client =
                    Client::connect(&config.server, config.quic_config(ALPN_API).expect("tls"))
                        .await
                        .expect("connect");
                let list = Request::List {
                    kind: edge_api::Kind::Pod,
                    namespace: Some(namespace.clone()),
                    selector: Some(selector.clone()),
                };
                let Ok(Response::List {
                    items,
                    resource_version,
                }) = client.call(&list).await
                else {
                    panic!("pod listing failed");
                };
                let mut pods: std::collections::HashMap<String, edge_api::Pod> = items
                    .into_iter()
                    .filter_map(|o| match o {
                        edge_api::Object::Pod(p) => Some((p.metadata.name.clone(), p)),
                        _ => None,
                    })
                    .collect();
                let watch = Request::Watch {
                    kind: edge_api::Kind::Pod,
                    namespace: Some(namespace),
                    selector: Some(selector),
                    resource_version: Some(resource_version),
                };
                let mut stream = client.stream(&watch).await.expect("watch");
                let mut counts = PodCounts::default();
                let (a, r) = pod_counts(&pods);
                counts.max_active = a;
                counts.min_available = r;
                counts.timeline.push((a, r));
                let _ = ready_tx.send(());
                loop {
                    let ev = tokio::select! {
                        ev = stream.next() => ev,
                        _ = &mut stop_rx => return counts,
                    };
                    let Ok(Some(Response::Event(ev))) = ev else {
                        panic!("the pod watch ended: {ev:?}");
                    };
                    let edge_api::Object::Pod(p) = ev.object else {
                        continue;
                    };
                    match ev.event_type {
                        EventType::Deleted => pods.remove(&p.metadata.name),
                        _ => pods.insert(p.metadata.name.clone(), p),
                    };
                    let (a, r) = pod_counts(&pods);
                    counts.max_active = counts.max_active.max(a);
                    counts.min_available = counts.min_available.min(r);
                    counts.timeline.push((a, r));
                }
            })
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the pod watch did not start");
        PodWatch {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Stops watching and returns what was counted.
    pub fn stop(mut self) -> PodCounts {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(counts)) => counts,
            _ => panic!("the pod watch failed"),
        }
    }
}
