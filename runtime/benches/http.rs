//! Benchmark: http-hello served by edge-runtime's HttpHandler next to `wasmtime serve`, both driven by wrk; plus the memory cost of 1,000 idle handlers.
//!
//! Run with `cargo bench -p edge-runtime --bench http` after `scripts/build-modules.sh`.
//! Needs `wrk` (Debian: `apt-get install wrk`); `wasmtime serve` is measured when the CLI
//! is found (`$WASMTIME`, `~/.cargo/bin/wasmtime`, or on `PATH`; install it with
//! `cargo install wasmtime-cli@48.0.8`). Prints Markdown tables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_runtime::{HttpHandler, HttpSpec, OutputSink, OutputStream, Runtime, RuntimeConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DURATION: &str = "10s";
const THREADS: &str = "2";
const CONNECTIONS: &str = "32";
const IDLE_HANDLERS: usize = 1000;

struct Discard;
impl OutputSink for Discard {
    fn write(&self, _: OutputStream, _: &[u8]) {}
}

/// What wrk reported.
struct Load {
    requests_per_sec: f64,
    p50: String,
    p99: String,
}

fn component_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/components/http-hello.wasm")
}

fn find_wasmtime() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WASMTIME") {
        return Some(PathBuf::from(path));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let path = Path::new(&home).join(".cargo/bin/wasmtime");
        if path.is_file() {
            return Some(path);
        }
    }
    let found = Command::new("sh")
        .args(["-c", "command -v wasmtime"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

fn have_wrk() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Runs wrk against `addr` (blocking: wrk is a separate process).
fn wrk(addr: SocketAddr) -> Result<Load, String> {
    let output = Command::new("wrk")
        .args([
            "-t",
            THREADS,
            "-c",
            CONNECTIONS,
            "-d",
            DURATION,
            "--latency",
        ])
        .arg(format!("http://{addr}/"))
        .output()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_string())
    };
    let requests_per_sec = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("cannot parse wrk output:\n{text}"))?;
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("wrk reported errors:\n{text}");
    }
    Ok(Load {
        requests_per_sec,
        p50: field("50%").unwrap_or_else(|| "?".into()),
        p99: field("99%").unwrap_or_else(|| "?".into()),
    })
}

/// One `GET /` on a fresh connection; returns the status line.
async fn get_once(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    Ok(text.lines().next().unwrap_or_default().to_string())
}

async fn wait_until_serving(addr: SocketAddr, within: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if let Ok(status) = get_once(addr).await {
            if status.contains(" 200 ") {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn serve(handler: &HttpHandler) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let handler = handler.clone();
    (
        addr,
        tokio::spawn(async move { handler.serve(listener).await }),
    )
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn bench_wasmtime(wasm: &Path) -> Result<Load, String> {
    let Some(cli) = find_wasmtime() else {
        return Err("not installed".into());
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // `-Scli`: the component reads its environment (wasi:cli), like under edge.
    let child = Command::new(&cli)
        .args(["serve", "-Scli", "--addr"])
        .arg(addr.to_string())
        .arg(wasm)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cli.display()))?;
    let _child = KillOnDrop(child);
    if !wait_until_serving(addr, Duration::from_secs(60)).await {
        return Err("did not start serving".into());
    }
    tokio::task::spawn_blocking(move || wrk(addr))
        .await
        .map_err(|e| e.to_string())?
}

#[tokio::main]
async fn main() {
    let wasm_path = component_path();
    let wasm = std::fs::read(&wasm_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/build-modules.sh first",
            wasm_path.display()
        )
    });
    let digest = hex::encode(Sha256::digest(&wasm));
    let cache = tempfile::tempdir().expect("tempdir");
    let rt = Runtime::new(RuntimeConfig {
        cache_dir: cache.path().to_path_buf(),
    })
    .expect("runtime");
    let component = rt.load(&digest, &wasm).await.expect("load http-hello");
    println!("allocator: {:?}", rt.allocator());

    // Idle cost: many handlers of the same component, each having served one request.
    let before = vm_rss_kib();
    let started = Instant::now();
    let mut servers = Vec::with_capacity(IDLE_HANDLERS);
    for _ in 0..IDLE_HANDLERS {
        let handler = rt
            .http_handler(&component, HttpSpec::default(), Arc::new(Discard))
            .expect("handler");
        servers.push(serve(&handler).await);
    }
    let created = vm_rss_kib();
    for (addr, _) in &servers {
        let status = get_once(*addr).await.expect("request");
        assert!(status.contains(" 200 "), "{status}");
    }
    let served = vm_rss_kib();
    let took = started.elapsed();
    for (_, task) in servers {
        task.abort();
    }
    println!();
    println!("| {IDLE_HANDLERS} idle HTTP handlers | RSS |");
    println!("|---|---|");
    println!("| before | {} MiB |", before / 1024);
    println!(
        "| created (each listening) | +{} KiB ({} KiB per handler) |",
        created.saturating_sub(before),
        created.saturating_sub(before) / IDLE_HANDLERS as u64
    );
    println!(
        "| after one request each | +{} KiB ({} KiB per handler); {took:.1?} for all |",
        served.saturating_sub(before),
        served.saturating_sub(before) / IDLE_HANDLERS as u64
    );

    if !have_wrk() {
        println!("\nwrk is not installed: `apt-get install wrk` (Debian) to run the load test.");
        return;
    }

    let handler = rt
        .http_handler(&component, HttpSpec::default(), Arc::new(Discard))
        .expect("handler");
    let (addr, server) = serve(&handler).await;
    assert!(wait_until_serving(addr, Duration::from_secs(10)).await);
    let edge = tokio::task::spawn_blocking(move || wrk(addr))
        .await
        .expect("wrk task");
    server.abort();
    let stats = handler.instantiation_stats();
    let wasmtime = bench_wasmtime(&wasm_path).await;

    println!();
    println!(
        "wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION} --latency, GET / of http-hello, \
         127.0.0.1, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!("| server | requests/s | p50 | p99 |");
    println!("|---|---|---|---|");
    let row = |name: &str, load: &Result<Load, String>| match load {
        Ok(l) => println!(
            "| {name} | {:.0} | {} | {} |",
            l.requests_per_sec, l.p50, l.p99
        ),
        Err(e) => println!("| {name} | {e} | | |"),
    };
    row("edge HttpHandler::serve", &edge);
    row("wasmtime serve 48", &wasmtime);
    if let (Ok(e), Ok(w)) = (&edge, &wasmtime) {
        println!(
            "| ratio edge / wasmtime | {:.2} | | |",
            e.requests_per_sec / w.requests_per_sec
        );
    }
    println!();
    println!(
        "edge per-request instantiation (request head accepted -> instance ready to enter \
         the guest handler), last {} requests: p50 {:?}, p99 {:?}",
        stats.samples, stats.p50, stats.p99
    );
}
