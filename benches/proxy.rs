//! Benchmark: what one proxy hop adds. The same backend (an echo server and a sink in this
//! process) is reached directly on loopback, through HAProxy in TCP mode (the Debian package),
//! and through edge's agent proxy (the real all-in-one `edged`, a selector-less NodePort Service
//! with hand-written Endpoints pointing at the backend), all in one run on the same machine.
//!
//! Figures: round-trip time of a 64-byte message on an open connection (p50, p99), a whole
//! short connection (connect, 64 bytes there and back, close; p50, p99), and bulk throughput
//! (`BULK_MIB` MiB sent to the sink). Added latency is the proxy's figure minus direct.
//!
//! `cargo bench --bench proxy` (env `ROUNDS` default 30000, `CONNS` 3000, `BULK_MIB` 3072,
//! `INTERLEAVE` 30; needs `haproxy` on PATH: `apt-get install -y haproxy`). Prints Markdown.

#[path = "../tests/e2e/support.rs"]
#[allow(dead_code)]
mod support;

#[allow(dead_code)] // each benchmark uses part of it
mod common;

use common::percentile;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const MESSAGE: usize = 64;
const CHUNK: usize = 256 << 10;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Echo server: every connection gets back what it sends.
fn echo_backend() -> SocketAddr {
    serve(|mut s| {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// Sink: reads to the end, then answers with the byte count (8 bytes, big-endian).
fn sink_backend() -> SocketAddr {
    serve(|mut s| {
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(_) => return,
            }
        }
        let _ = s.write_all(&total.to_be_bytes());
    })
}

/// Answers every read with one byte, its tag (which backend a connection reached).
fn tagged_backend(tag: u8) -> SocketAddr {
    serve(move |mut s| {
        let mut buf = [0u8; 64];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&[tag]).is_err() {
                return;
            }
        }
    })
}

fn serve(handle: impl Fn(TcpStream) + Send + Copy + 'static) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let _ = s.set_nodelay(true);
            std::thread::spawn(move || handle(s));
        }
    });
    addr
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_nodelay(true).expect("nodelay");
    s
}

fn ping(s: &mut TcpStream, msg: &[u8], back: &mut [u8]) -> std::io::Result<()> {
    s.write_all(msg)?;
    s.read_exact(back)
}

/// Results for one way of reaching the backend.
struct Figures {
    rtt: Vec<Duration>,
    conn: Vec<Duration>,
    mib_per_s: f64,
    /// Per interleaved round: (RTT p50, RTT p99, connection p50, connection p99), so that a
    /// proxy is compared with the direct path measured just before it.
    rounds: Vec<[Duration; 4]>,
}

fn measure(
    echo: SocketAddr,
    sink: SocketAddr,
    pings: usize,
    conns: usize,
    bulk_mib: usize,
) -> Figures {
    let msg = [7u8; MESSAGE];
    let mut back = [0u8; MESSAGE];
    let mut s = connect(echo);
    for _ in 0..200 {
        ping(&mut s, &msg, &mut back).expect("warm-up");
    }
    let mut rtt = Vec::with_capacity(pings);
    for _ in 0..pings {
        let t = Instant::now();
        ping(&mut s, &msg, &mut back).expect("ping");
        rtt.push(t.elapsed());
    }
    drop(s);
    let mut conn = Vec::with_capacity(conns);
    for _ in 0..conns {
        let t = Instant::now();
        let mut s = connect(echo);
        ping(&mut s, &msg, &mut back).expect("ping on a new connection");
        drop(s);
        conn.push(t.elapsed());
    }
    let chunk = vec![1u8; CHUNK];
    let total = (bulk_mib as u64) << 20;
    let t = Instant::now();
    let mut s = connect(sink);
    let mut sent = 0u64;
    while sent < total {
        s.write_all(&chunk).expect("bulk write");
        sent += CHUNK as u64;
    }
    s.shutdown(Shutdown::Write).expect("half-close");
    let mut count = [0u8; 8];
    s.read_exact(&mut count).expect("sink count");
    let took = t.elapsed();
    assert_eq!(u64::from_be_bytes(count), sent, "every byte arrived");
    rtt.sort();
    conn.sort();
    let round = [
        percentile(&rtt, 0.5),
        percentile(&rtt, 0.99),
        percentile(&conn, 0.5),
        percentile(&conn, 0.99),
    ];
    Figures {
        rtt,
        conn,
        mib_per_s: sent as f64 / (1 << 20) as f64 / took.as_secs_f64(),
        rounds: vec![round],
    }
}

fn wait_echo(addr: SocketAddr, what: &str) {
    wait_for(what, Duration::from_secs(60), || {
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut back = [0u8; 4];
        ping(&mut s, b"ping", &mut back).ok()?;
        (&back == b"ping").then_some(())
    });
}

struct Haproxy {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HAProxy in TCP mode in front of both backends: (its process, echo front, sink front).
fn haproxy(
    echo: SocketAddr,
    sink: SocketAddr,
) -> Option<(Haproxy, SocketAddr, SocketAddr, String)> {
    let version = Command::new("haproxy").arg("-v").output().ok()?;
    let version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()?
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let (pe, ps) = (free_tcp_port(), free_tcp_port());
    let cfg = format!(
        "global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
         frontend echo\n  bind 127.0.0.1:{pe}\n  default_backend echo\nbackend echo\n  server s1 {echo}\n\
         frontend sink\n  bind 127.0.0.1:{ps}\n  default_backend sink\nbackend sink\n  server s1 {sink}\n"
    );
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).expect("haproxy config");
    let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("log");
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .ok()?;
    let front = |p| SocketAddr::from(([127, 0, 0, 1], p));
    let mut h = Haproxy { child, _dir: dir };
    std::thread::sleep(Duration::from_millis(300));
    if let Ok(Some(status)) = h.child.try_wait() {
        let log = std::fs::read_to_string(h._dir.path().join("haproxy.log")).unwrap_or_default();
        panic!("haproxy exited ({status}):\n{log}");
    }
    wait_echo(front(pe), "haproxy to forward");
    Some((h, front(pe), front(ps), version))
}

/// A NodePort Service without a selector and its Endpoints written by hand: the backend is
/// not a pod, so the agent's proxy reaches it like an endpoint on another node.
fn edge_service(c: &Cluster, name: &str, port_name: &str, backend: SocketAddr) -> SocketAddr {
    let text = format!(
        "apiVersion: edge.dev/v1
kind: Service
metadata: {{name: {name}}}
spec: {{type: NodePort, ports: [{{name: '{port_name}', port: 9000}}]}}
---
{}",
        endpoints_yaml(name, port_name, backend)
    );
    let file = write_manifest(c.home.path(), &format!("{name}.yaml"), &text);
    c.ok(&["apply", "-f", &file]);
    let out = c.ok(&["get", "svc", name, "-o", "json"]);
    let svc: serde_json::Value = serde_json::from_str(&out).expect("service json");
    let port = svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("node port") as u16;
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn endpoints_yaml(name: &str, port_name: &str, backend: SocketAddr) -> String {
    format!(
        "apiVersion: edge.dev/v1
kind: Endpoints
metadata: {{name: {name}}}
subsets: [{{addresses: [{{ip: '{}'}}], ports: [{{name: '{port_name}', port: {}}}]}}]
",
        backend.ip(),
        backend.port()
    )
}

/// The tag a new connection to `front` reaches, if any.
fn tag_at(front: SocketAddr) -> Option<u8> {
    let mut s = TcpStream::connect(front).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"?").ok()?;
    let mut tag = [0u8; 1];
    s.read_exact(&mut tag).ok()?;
    Some(tag[0])
}

/// From `edgectl apply` of Endpoints naming the other backend to the node port routing new
/// connections there, `switches` times (the CLI start and the raft write are included).
fn endpoint_switches(c: &Cluster, switches: usize) -> Vec<Duration> {
    let backends = [(tagged_backend(b'A'), b'A'), (tagged_backend(b'B'), b'B')];
    let front = edge_service(c, "bench-switch", "tcp", backends[0].0);
    wait_for(
        "the switch service to route",
        Duration::from_secs(60),
        || (tag_at(front) == Some(b'A')).then_some(()),
    );
    let mut samples = Vec::new();
    for i in 0..switches {
        let (to, tag) = backends[(i + 1) % 2];
        let file = write_manifest(
            c.home.path(),
            "switch.yaml",
            &endpoints_yaml("bench-switch", "tcp", to),
        );
        let t0 = Instant::now();
        c.ok(&["apply", "-f", &file]);
        while tag_at(front) != Some(tag) {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the switch never took effect"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        samples.push(t0.elapsed());
    }
    samples.sort();
    samples
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// The median over rounds of (this path's figure - the direct path's figure in the same round),
/// in µs; `which` indexes `Figures::rounds`. Negative when noise outweighs the hop.
fn added(p: &Figures, direct: &Figures, which: usize) -> f64 {
    let mut d: Vec<f64> = p
        .rounds
        .iter()
        .zip(&direct.rounds)
        .map(|(a, b)| (a[which].as_secs_f64() - b[which].as_secs_f64()) * 1e6)
        .collect();
    d.sort_by(|a, b| a.total_cmp(b));
    d.get(d.len() / 2).copied().unwrap_or(0.0)
}

/// Where to reach the backend one way: (echo, sink).
struct Path {
    name: &'static str,
    echo: SocketAddr,
    sink: SocketAddr,
    bulk_mib: usize,
}

/// Measures every path in `rounds` interleaved rounds (direct, HAProxy, edge, ...), so that
/// whatever else the machine does at the time weighs on all of them alike; samples are pooled
/// and the throughput is the median of the rounds.
fn measure_all(paths: &[Path], rounds: usize, pings: usize, conns: usize) -> Vec<Figures> {
    let mut out: Vec<Figures> = paths
        .iter()
        .map(|_| Figures {
            rtt: Vec::new(),
            conn: Vec::new(),
            mib_per_s: 0.0,
            rounds: Vec::new(),
        })
        .collect();
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    for _ in 0..rounds {
        for (i, p) in paths.iter().enumerate() {
            let f = measure(
                p.echo,
                p.sink,
                pings / rounds,
                conns / rounds,
                p.bulk_mib / rounds,
            );
            out[i].rtt.extend(f.rtt);
            out[i].conn.extend(f.conn);
            out[i].rounds.extend(f.rounds);
            rates[i].push(f.mib_per_s);
        }
    }
    for (f, mut r) in out.iter_mut().zip(rates) {
        f.rtt.sort();
        f.conn.sort();
        r.sort_by(|a, b| a.total_cmp(b));
        f.mib_per_s = r[r.len() / 2];
    }
    out
}

fn main() {
    let pings = env("ROUNDS", 30_000);
    let conns = env("CONNS", 3_000);
    let bulk = env("BULK_MIB", 3072);
    let rounds = env("INTERLEAVE", 30).max(1);
    let (echo, sink) = (echo_backend(), sink_backend());

    let c = Cluster::start(&[]);
    c.wait_node_ready("node-1");
    // `tcp` names an opaque port (no protocol detection), like HAProxy's TCP mode.
    let (edge_echo, edge_sink) = (
        edge_service(&c, "bench-echo", "tcp", echo),
        edge_service(&c, "bench-sink", "tcp", sink),
    );
    wait_echo(edge_echo, "the edge proxy to forward");
    // The default: the first bytes are sniffed for HTTP before the stream is spliced.
    let detect_echo = edge_service(&c, "bench-detect", "", echo);
    let detect_sink = edge_service(&c, "bench-detect-sink", "", sink);
    wait_echo(detect_echo, "the edge proxy (detecting) to forward");
    let ha = haproxy(echo, sink);

    let mut paths = vec![Path {
        name: "direct",
        echo,
        sink,
        bulk_mib: bulk,
    }];
    if let Some((_, e, s, _)) = &ha {
        paths.push(Path {
            name: "HAProxy (TCP mode)",
            echo: *e,
            sink: *s,
            bulk_mib: bulk,
        });
    }
    paths.push(Path {
        name: "edge proxy (tcp port)",
        echo: edge_echo,
        sink: edge_sink,
        bulk_mib: bulk,
    });
    paths.push(Path {
        name: "edge proxy (detecting)",
        echo: detect_echo,
        sink: detect_sink,
        bulk_mib: bulk,
    });
    let figures = measure_all(&paths, rounds, pings, conns);
    let direct = &figures[0];
    let switches = endpoint_switches(&c, env("SWITCHES", 20));

    println!("\n### One proxy hop on loopback ({pings} round trips, {conns} connections, {bulk} MiB bulk, {rounds} interleaved rounds)\n");
    if let Some((_, _, _, v)) = &ha {
        println!("HAProxy: {v}\n");
    }
    println!("| path | RTT p50 | RTT p99 | connection p50 | connection p99 | bulk MiB/s |");
    println!("|---|---|---|---|---|---|");
    for (p, f) in paths.iter().zip(&figures) {
        println!(
            "| {} | {} | {} | {} | {} | {:.0} |",
            p.name,
            us(percentile(&f.rtt, 0.5)),
            us(percentile(&f.rtt, 0.99)),
            us(percentile(&f.conn, 0.5)),
            us(percentile(&f.conn, 0.99)),
            f.mib_per_s
        );
    }
    println!("\nAdded by one hop: per round, the path's percentile minus the direct path's in the same round; the median over rounds.\n");
    println!("| added by one hop | RTT p50 | RTT p99 | connection p50 | connection p99 | bulk / direct |");
    println!("|---|---|---|---|---|---|");
    let signed = |v: f64| format!("{v:.1} µs");
    for (p, f) in paths.iter().zip(&figures).skip(1) {
        println!(
            "| {} | {} | {} | {} | {} | {:.2} |",
            p.name,
            signed(added(f, direct, 0)),
            signed(added(f, direct, 1)),
            signed(added(f, direct, 2)),
            signed(added(f, direct, 3)),
            f.mib_per_s / direct.mib_per_s
        );
    }
    if ha.is_some() {
        let (h, e) = (&figures[1], &figures[2]);
        let ratio = |which: usize| {
            let (e, h) = (added(e, direct, which), added(h, direct, which));
            if h > 0.0 {
                format!("{:.2}", e / h)
            } else {
                "n/a".to_string()
            }
        };
        println!(
            "\nedge / HAProxy: added RTT p50 {}, p99 {}; added connection p50 {}, p99 {}; bulk {:.2}",
            ratio(0),
            ratio(1),
            ratio(2),
            ratio(3),
            e.mib_per_s / h.mib_per_s
        );
    } else {
        println!("\nHAProxy is not installed (apt-get install -y haproxy): no peer figures");
    }
    println!(
        "\nEndpoints change -> the node port routes to the new backend ({} switches, `edgectl apply` included): p50 {}, p99 {}",
        switches.len(),
        common::ms(percentile(&switches, 0.5)),
        common::ms(percentile(&switches, 0.99))
    );
}
