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
