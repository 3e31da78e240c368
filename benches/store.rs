//! Benchmark: the replicated store. A three-server edge control plane and a three-member etcd
//! (Debian `etcd-server`, the peer) on loopback, measured one after the other in the same run
//! with the same value size: writes/s and p50/p99 latency with one client and with many
//! concurrent clients, and leader failover (SIGKILL the leader; time until a write succeeds
//! again). Prints a Markdown table with edge / etcd ratios.
//!
//! `cargo bench --bench store` (env `CLIENTS` default 128, `CONNS` default 16, `SECONDS`
//! default 10, `FAILOVERS` default 3; `EDGE_BENCH_LOG` is the edge servers' `RUST_LOG`, `warn`
//! unless set). Each failover round starts once every member has caught up.
//!
//! An edge write is an `Apply` of a ConfigMap holding the value: the server decides on its own
//! applied state and commits a compare-and-swap through raft (decided again after a
//! linearizable read only if the swap is refused), as Kubernetes' API server does on etcd. An etcd write is a plain `Put` over gRPC. Both
//! clusters run with about the same raft timing: election timeout 1-2 s, heartbeat 250 ms
//! (edge) and 200 ms (etcd, which requires the timeout to be at least five heartbeats).

#[path = "../tests/e2e/support.rs"]
#[allow(dead_code)]
mod support;

#[allow(dead_code)] // each benchmark uses part of it
mod common;

use bytes::Bytes;
use common::{ms, percentile};
use edge_api::config::ClientConfigFile;
use edge_api::wire::{Client, MemberRole, Request, Response, ALPN_API};
use edge_api::{ConfigMap, Object};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{free_port, free_tcp_port, wait_for, EDGED};

const VALUE_BYTES: usize = 256;
/// One write attempt while measuring failover; a stuck attempt is abandoned and retried.
const ATTEMPT: Duration = Duration::from_millis(300);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn value(n: u64) -> String {
    let mut v = format!("{n}-");
    while v.len() < VALUE_BYTES {
        v.push('x');
    }
    v
}

/// A connection to one server of either system.
#[derive(Clone)]
enum Conn {
    Edge(Client),
    Etcd(h2::client::SendRequest<Bytes>),
}

impl Conn {
    async fn put(&self, key: &str, n: u64) -> Result<(), String> {
        match self {
            Conn::Edge(c) => {
                let mut cm = ConfigMap::default();
                cm.metadata.name = key.to_string();
                cm.data.insert("v".into(), value(n));
                let req = Request::Apply {
                    object: Object::ConfigMap(cm),
                    dry_run: false,
                };
                match c.call(&req).await {
                    Ok(Response::Applied { .. }) => Ok(()),
                    Ok(_) => Err("unexpected answer".into()),
                    Err(e) => Err(e.to_string()),
                }
            }
            Conn::Etcd(h) => etcd_put(h.clone(), key, &value(n)).await,
        }
    }
}

/// etcd's `KV/Put` over gRPC: a protobuf `PutRequest { key = 1, value = 2 }` in a gRPC frame.
async fn etcd_put(h: h2::client::SendRequest<Bytes>, key: &str, value: &str) -> Result<(), String> {
    let mut msg = Vec::with_capacity(key.len() + value.len() + 8);
    for (tag, field) in [(0x0a, key.as_bytes()), (0x12, value.as_bytes())] {
        msg.push(tag);
        let mut len = field.len();
        while len >= 0x80 {
            msg.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        msg.push(len as u8);
        msg.extend_from_slice(field);
    }
    let mut body = vec![0u8];
    body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    body.extend_from_slice(&msg);
    let req = http::Request::builder()
        .method("POST")
        .uri("http://etcd/etcdserverpb.KV/Put")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .map_err(|e| e.to_string())?;
    let mut h = h.ready().await.map_err(|e| e.to_string())?;
    let (resp, mut stream) = h.send_request(req, false).map_err(|e| e.to_string())?;
    stream
        .send_data(Bytes::from(body), true)
        .map_err(|e| e.to_string())?;
    let resp = resp.await.map_err(|e| e.to_string())?;
    let status = resp.headers().get("grpc-status").cloned();
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.map_err(|e| e.to_string())?;
    let status = status.or_else(|| trailers.and_then(|t| t.get("grpc-status").cloned()));
    match status.as_ref().map(|s| s.as_bytes()) {
        Some(b"0") => Ok(()),
        other => Err(format!("grpc-status {other:?}")),
    }
}

/// `clients` tasks writing back to back for `secs` over `conns`; returns writes/s and the
/// sorted latencies of the successful writes.
async fn load(conns: &[Conn], clients: usize, secs: u64) -> (f64, Vec<Duration>, usize) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let conn = conns[i % conns.len()].clone();
            tokio::spawn(async move {
                let key = format!("bench-{i}");
                let (mut lat, mut errors) = (Vec::new(), 0usize);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let t = Instant::now();
                    match conn.put(&key, n).await {
                        Ok(()) => lat.push(t.elapsed()),
                        Err(_) => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        if let Ok((lat, e)) = t.await {
            all.extend(lat);
            errors += e;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    (all.len() as f64 / elapsed, all, errors)
}

/// Writes until one succeeds that was sent after `since`; returns when it did.
async fn first_write_after(conn: &Conn, since: Instant) -> Instant {
    let mut n = 1_000_000u64;
    loop {
        n += 1;
        let attempt = Instant::now();
        if let Ok(Ok(())) = tokio::time::timeout(ATTEMPT, conn.put("failover", n)).await {
            if attempt >= since {
                return Instant::now();
            }
        }
        if attempt.elapsed() < Duration::from_millis(20) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What each system provides to the measurements.
trait System {
    fn name(&self) -> &'static str;
    fn connect(&self, rt: &tokio::runtime::Runtime, member: usize) -> Conn;
    fn leader(&self, rt: &tokio::runtime::Runtime) -> usize;
    fn kill(&mut self, member: usize);
    fn restart(&mut self, member: usize);
    fn wait_healthy(&self, rt: &tokio::runtime::Runtime);
}

struct Figures {
    one: (f64, Vec<Duration>),
    many: (f64, Vec<Duration>, usize),
    failovers: Vec<Duration>,
}

fn measure(sys: &mut dyn System, rt: &tokio::runtime::Runtime) -> Figures {
    let (clients, conns_n, secs) = (
        env_or("CLIENTS", 128),
        env_or("CONNS", 16),
        env_or("SECONDS", 10) as u64,
    );
    sys.wait_healthy(rt);
    let conns: Vec<Conn> = (0..conns_n).map(|i| sys.connect(rt, i % 3)).collect();
    // Warm-up: connections, caches, the first election's leftovers.
    rt.block_on(load(&conns, 8, 2));
    let (tput1, lat1, _) = rt.block_on(load(&conns[..1], 1, secs / 2 + 1));
    eprintln!("{}: 1 client: {tput1:.0} writes/s", sys.name());
    let many = rt.block_on(load(&conns, clients, secs));
    eprintln!(
        "{}: {clients} clients: {:.0} writes/s, {} errors",
        sys.name(),
        many.0,
        many.2
    );
    let mut failovers = Vec::new();
    for _ in 0..env_or("FAILOVERS", 3) {
        sys.wait_healthy(rt);
        let leader = sys.leader(rt);
        let survivor = sys.connect(rt, (leader + 1) % 3);
        rt.block_on(survivor.put("failover", 0))
            .expect("write before the kill");
        let killed = Instant::now();
        sys.kill(leader);
        let back = rt.block_on(first_write_after(&survivor, killed));
        failovers.push(back - killed);
        eprintln!("{}: failover {:?}", sys.name(), back - killed);
        sys.restart(leader);
    }
    failovers.sort();
    Figures {
        one: (tput1, lat1),
        many,
        failovers,
    }
}

// ---------------------------------------------------------------------------------------------
// edge

struct EdgeCluster {
    home: tempfile::TempDir,
    ports: Vec<u16>,
    daemons: Vec<Option<Child>>,
    token: String,
    starts: usize,
}

impl EdgeCluster {
    fn start() -> EdgeCluster {
        let home = tempfile::tempdir().expect("tempdir");
        let mut c = EdgeCluster {
            home,
            ports: (0..3).map(|_| free_port()).collect(),
            daemons: vec![None, None, None],
            token: String::new(),
            starts: 0,
        };
        c.restart(0);
        let token = c.data(0).join("token");
        c.token = wait_for("edge's token", Duration::from_secs(60), || {
            std::fs::read_to_string(&token)
                .ok()
                .map(|t| t.trim().to_string())
        });
        c.restart(1);
        c.restart(2);
        c
    }

    fn data(&self, i: usize) -> PathBuf {
        self.home.path().join(format!("s{i}"))
    }

    fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    fn config(&self) -> ClientConfigFile {
        ClientConfigFile::load(&self.data(0).join("admin.conf")).expect("admin.conf")
    }

    fn members(
        &self,
        rt: &tokio::runtime::Runtime,
        i: usize,
    ) -> Option<Vec<edge_api::wire::Member>> {
        // The first server writes its token before its admin config.
        let config = ClientConfigFile::load(&self.data(0).join("admin.conf")).ok()?;
        let quic = config.quic_config(ALPN_API).ok()?;
        let addr = self.addr(i);
        rt.block_on(async move {
            let c = Client::connect(&addr, quic).await.ok()?;
            match tokio::time::timeout(Duration::from_secs(5), c.call(&Request::Members)).await {
                Ok(Ok(Response::Members { members })) => Some(members),
                _ => None,
            }
        })
    }
}

impl Drop for EdgeCluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
    }
}

impl System for EdgeCluster {
    fn name(&self) -> &'static str {
        "edge"
    }

    fn connect(&self, rt: &tokio::runtime::Runtime, member: usize) -> Conn {
        let quic = self.config().quic_config(ALPN_API).expect("tls");
        let addr = self.addr(member);
        Conn::Edge(
            rt.block_on(Client::connect(&addr, quic))
                .expect("connect to edge"),
        )
    }

    fn leader(&self, rt: &tokio::runtime::Runtime) -> usize {
        // The server that says it leads, by its own account: a member restarted a moment ago
        // may still name the leader of an older term.
        wait_for("an edge leader", Duration::from_secs(30), || {
            (0..3).find(|&i| {
                self.members(rt, i).is_some_and(|ms| {
                    ms.iter().any(|m| {
                        m.role == MemberRole::Leader && m.reachable && m.address == self.addr(i)
                    })
                })
            })
        })
    }

    fn kill(&mut self, member: usize) {
        if let Some(mut d) = self.daemons[member].take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    fn restart(&mut self, i: usize) {
        self.starts += 1;
        let (data, listen) = (self.data(i), self.addr(i));
        let first = self.addr(0);
        let mut args = vec![
            "server".to_string(),
            "--data-dir".into(),
            data.to_str().expect("utf8").into(),
            "--listen".into(),
            listen,
            "--no-agent".into(),
        ];
        if i > 0 {
            args.extend(["--join".into(), first, "--token".into(), self.token.clone()]);
        }
        let log = std::fs::File::create(self.home.path().join(format!("s{i}-{}.log", self.starts)))
            .expect("log");
        let child = Command::new(EDGED)
            .args(&args)
            .env("HOME", self.home.path())
            .env("EDGECONFIG", self.home.path().join("config"))
            // Warnings only unless asked: per-request logging would cost edge throughput.
            .env(
                "RUST_LOG",
                std::env::var("EDGE_BENCH_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn edged");
        self.daemons[i] = Some(child);
    }

    /// Three voters, a leader, and every member caught up: a failover round measured while a
    /// restarted member still lags tests a different thing (it cannot win the election).
    fn wait_healthy(&self, rt: &tokio::runtime::Runtime) {
        wait_for(
            "three caught-up edge voters",
            Duration::from_secs(60),
            || {
                let ms = (0..3).find_map(|i| self.members(rt, i))?;
                let applied: Vec<Option<u64>> = ms.iter().map(|m| m.applied_index).collect();
                let ok = ms.len() == 3
                    && ms
                        .iter()
                        .all(|m| m.reachable && m.role != MemberRole::Learner)
                    && ms.iter().any(|m| m.role == MemberRole::Leader)
                    && applied[0].is_some()
                    && applied.iter().all(|a| *a == applied[0]);
                ok.then_some(())
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------
// etcd

struct EtcdCluster {
    dir: tempfile::TempDir,
    client_ports: Vec<u16>,
    peer_ports: Vec<u16>,
    children: Vec<Option<Child>>,
}

fn etcd_bin() -> Option<PathBuf> {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl EtcdCluster {
    fn start() -> EtcdCluster {
        let mut c = EtcdCluster {
            dir: tempfile::tempdir().expect("tempdir"),
            client_ports: (0..3).map(|_| free_tcp_port()).collect(),
            peer_ports: (0..3).map(|_| free_tcp_port()).collect(),
            children: vec![None, None, None],
        };
        for i in 0..3 {
            c.restart(i);
        }
        c
    }

    fn spawn(&self, i: usize, dir: &Path) -> Child {
        let cluster: Vec<String> = (0..3)
            .map(|j| format!("e{j}=http://127.0.0.1:{}", self.peer_ports[j]))
            .collect();
        let client = format!("http://127.0.0.1:{}", self.client_ports[i]);
        let peer = format!("http://127.0.0.1:{}", self.peer_ports[i]);
        let log = std::fs::File::create(dir.join(format!("e{i}.log"))).expect("log");
        Command::new(etcd_bin().expect("etcd"))
            .args(["--name", &format!("e{i}")])
            .args([
                "--data-dir",
                dir.join(format!("e{i}")).to_str().expect("utf8"),
            ])
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &cluster.join(",")])
            .args([
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "bench",
            ])
            // etcd wants the election timeout at least 5 heartbeats: 200 ms / 1 s (edge: 250 ms
            // and 1-2 s; etcd also randomizes up to twice the timeout).
            .args(["--heartbeat-interval", "200", "--election-timeout", "1000"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd")
    }

    /// The leader's id, each member's id and raft index (0 for a member that did not answer).
    fn status(&self) -> Option<(u64, Vec<u64>, Vec<u64>)> {
        let endpoints: Vec<String> = self
            .client_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &endpoints.join(","),
                "endpoint",
                "status",
                "-w",
                "json",
            ])
            .args(["--command-timeout", "2s"])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let arr = v.as_array()?;
        // One entry per endpoint, in --endpoints order; a dead member has none.
        let mut ids = vec![0u64; 3];
        let mut indexes = vec![0u64; 3];
        let mut leader = 0;
        for e in arr {
            let ep = e["Endpoint"].as_str()?;
            let i = endpoints.iter().position(|x| x == ep)?;
            ids[i] = e["Status"]["header"]["member_id"].as_u64()?;
            indexes[i] = e["Status"]["raftIndex"].as_u64()?;
            leader = e["Status"]["leader"].as_u64()?;
        }
        Some((leader, ids, indexes))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
    }
}

impl System for EtcdCluster {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn connect(&self, rt: &tokio::runtime::Runtime, member: usize) -> Conn {
        let addr = format!("127.0.0.1:{}", self.client_ports[member]);
        rt.block_on(async move {
            let tcp = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect to etcd");
            let _ = tcp.set_nodelay(true);
            let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Conn::Etcd(send)
        })
    }

    fn leader(&self, _rt: &tokio::runtime::Runtime) -> usize {
        wait_for("an etcd leader", Duration::from_secs(30), || {
            let (leader, ids, _) = self.status()?;
            ids.iter().position(|&id| id == leader && id != 0)
        })
    }

    fn kill(&mut self, member: usize) {
        if let Some(mut c) = self.children[member].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self, member: usize) {
        let child = self.spawn(member, self.dir.path());
        self.children[member] = Some(child);
    }

    /// Three members, a leader, every member at the same raft index (see edge's).
    fn wait_healthy(&self, _rt: &tokio::runtime::Runtime) {
        wait_for(
            "three caught-up etcd members",
            Duration::from_secs(60),
            || {
                let (leader, ids, indexes) = self.status()?;
                (leader != 0
                    && ids.iter().all(|&i| i != 0)
                    && indexes.iter().all(|&x| x == indexes[0]))
                .then_some(())
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let clients = env_or("CLIENTS", 128);
    let mut edge = EdgeCluster::start();
    let e = measure(&mut edge, &rt);
    drop(edge);
    let Some(_) = etcd_bin() else {
        eprintln!(
            "etcd is not installed (apt-get install etcd-server etcd-client): edge figures only"
        );
        return;
    };
    let mut etcd = EtcdCluster::start();
    let p = measure(&mut etcd, &rt);
    drop(etcd);
    let fo = |f: &Figures| percentile(&f.failovers, 0.5);
    println!("| figure | edge | etcd 3.4 (peer) | edge / etcd |");
    println!("|---|---|---|---|");
    println!(
        "| writes/s, 1 client | {:.0} | {:.0} | {} |",
        e.one.0,
        p.one.0,
        ratio(e.one.0, p.one.0)
    );
    for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
        let (a, b) = (percentile(&e.one.1, q), percentile(&p.one.1, q));
        println!(
            "| {name} latency, 1 client | {} | {} | {} |",
            ms(a),
            ms(b),
            ratio(a.as_secs_f64(), b.as_secs_f64())
        );
    }
    println!(
        "| writes/s, {clients} clients | {:.0} | {:.0} | {} |",
        e.many.0,
        p.many.0,
        ratio(e.many.0, p.many.0)
    );
    for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
        let (a, b) = (percentile(&e.many.1, q), percentile(&p.many.1, q));
        println!(
            "| {name} latency, {clients} clients | {} | {} | {} |",
            ms(a),
            ms(b),
            ratio(a.as_secs_f64(), b.as_secs_f64())
        );
    }
    println!(
        "| failed writes under load | {} | {} | - |",
        e.many.2, p.many.2
    );
    println!(
        "| leader failover, median of {} (SIGKILL -> next write) | {} | {} | {} |",
        e.failovers.len(),
        ms(fo(&e)),
        ms(fo(&p)),
        ratio(fo(&e).as_secs_f64(), fo(&p).as_secs_f64())
    );
    println!(
        "\nfailovers: edge {:?}, etcd {:?}",
        e.failovers.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        p.failovers.iter().map(|d| ms(*d)).collect::<Vec<_>>()
    );
}
