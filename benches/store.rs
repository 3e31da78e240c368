//! Benchmark: the replicated store. A three-server edge control plane and a three-member etcd
//! (Debian `etcd-server`, the peer) on loopback, measured one after the other in the same run
//! with the same value size: writes/s and p50/p99 latency with one client and with many
//! concurrent clients, and leader failover (SIGKILL the leader; time until a write succeeds
//! again). etcd runs twice: plaintext, and with mutual TLS on client and peer links like edge
//! (`store/etcd.rs`). Prints a Markdown table with edge / etcd ratios.
//!
//! `cargo bench --bench store` (env `CLIENTS` default 128, `CONNS` default 16, `SECONDS`
//! default 10, `FAILOVERS` default 3; `EDGE_BENCH_LOG` is the edge servers' `RUST_LOG`, `warn`
//! unless set; `ETCD` `plain`, `mtls` or `none` for one etcd run or none instead of both).
//! Each failover round starts once every member has caught up.
//!
//! An edge write is an `Apply` of a ConfigMap holding the value: the server decides on its own
//! applied state and commits a compare-and-swap through raft (decided again after a
//! linearizable read only if the swap is refused), as Kubernetes' API server does on etcd. An
//! etcd write is a plain `Put` over gRPC. Both
//! clusters run with about the same raft timing: election timeout 1-2 s, heartbeat 250 ms
//! (edge) and 200 ms (etcd, which requires the timeout to be at least five heartbeats).

#[path = "../tests/e2e/support.rs"]
#[allow(dead_code)]
mod support;

#[allow(dead_code)] // each benchmark uses part of it
mod common;

#[path = "store/etcd.rs"]
mod etcd;

use bytes::Bytes;
use common::{ms, percentile};
use edge_api::config::ClientConfigFile;
use edge_api::wire::{Client, MemberRole, Request, Response, ALPN_API};
use edge_api::{ConfigMap, Object};
use etcd::EtcdCluster;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{free_port, wait_for, EDGED};

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
            Conn::Etcd(h) => etcd::put(h.clone(), key, &value(n)).await,
        }
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

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

/// The figures of one system as table rows: label, value, and whether it is a duration (ms).
fn rows(f: &Figures, clients: usize) -> Vec<(String, f64, bool)> {
    let secs = |d: Duration| d.as_secs_f64();
    let mut rows = vec![("writes/s, 1 client".to_string(), f.one.0, false)];
    for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
        rows.push((
            format!("{name} latency, 1 client"),
            secs(percentile(&f.one.1, q)),
            true,
        ));
    }
    rows.push((format!("writes/s, {clients} clients"), f.many.0, false));
    for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
        rows.push((
            format!("{name} latency, {clients} clients"),
            secs(percentile(&f.many.1, q)),
            true,
        ));
    }
    rows.push((
        format!(
            "leader failover, median of {} (SIGKILL -> next write)",
            f.failovers.len()
        ),
        secs(percentile(&f.failovers, 0.5)),
        true,
    ));
    rows
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
    let mut peers = Vec::new();
    // `ETCD=plain` or `ETCD=mtls` runs one of the two, `ETCD=none` neither.
    let which = std::env::var("ETCD").unwrap_or_default();
    let runs: Vec<bool> = match which.as_str() {
        "none" => vec![],
        "plain" => vec![false],
        "mtls" => vec![true],
        _ => vec![false, true],
    };
    if etcd::etcd_bin().is_some() {
        for mutual_tls in runs {
            let mut etcd = EtcdCluster::start(mutual_tls);
            let name = etcd.name();
            peers.push((name, measure(&mut etcd, &rt)));
        }
    } else {
        eprintln!(
            "etcd is not installed (apt-get install etcd-server etcd-client): edge figures only"
        );
    }
    let mut header = "| figure | edge |".to_string();
    for (name, _) in &peers {
        header += &format!(" {name} (peer) | edge / {name} |");
    }
    println!("{header}");
    println!("|---|---|{}", "---|---|".repeat(peers.len()));
    let peer_rows: Vec<_> = peers.iter().map(|(_, f)| rows(f, clients)).collect();
    for (i, (label, value, is_time)) in rows(&e, clients).into_iter().enumerate() {
        let show = |v: f64| {
            if is_time {
                format!("{:.1} ms", v * 1000.0)
            } else {
                format!("{v:.0}")
            }
        };
        let mut line = format!("| {label} | {} |", show(value));
        for r in &peer_rows {
            line += &format!(" {} | {} |", show(r[i].1), ratio(value, r[i].1));
        }
        println!("{line}");
    }
    let mut errors = format!("| failed writes under load | {} |", e.many.2);
    for (_, f) in &peers {
        errors += &format!(" {} | - |", f.many.2);
    }
    println!("{errors}");
    let failovers = |f: &Figures| f.failovers.iter().map(|d| ms(*d)).collect::<Vec<_>>();
    println!("\nfailovers: edge {:?}", failovers(&e));
    for (name, f) in &peers {
        println!("failovers: {name} {:?}", failovers(f));
    }
}
