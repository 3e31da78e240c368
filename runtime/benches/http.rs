//! Benchmark: http-hello served by edge-runtime's HttpHandler beside `wasmtime serve`, both
//! driven by wrk in interleaved rounds; plus the memory cost of 1,000 idle handlers.
//!
//! Run with `cargo bench -p edge-runtime --bench http` after `scripts/build-modules.sh`, or
//! build with `--no-run` and start the printed binary directly (it does not need cargo).
//! Needs `wrk` (`apt-get install wrk`) and the `wasmtime` CLI (`$WASMTIME`, `PATH` or
//! `~/.cargo/bin`; `cargo install wasmtime-cli --version 48.0.8 --locked`). Env: `ROUNDS`
//! (default 5), `WRK_DURATION` (seconds, default 10), `WRK_CONNECTIONS` (32), `WRK_THREADS` (2).
//! `HTTP_BENCH_SERVE=127.0.0.1:8080` only serves http-hello there until killed (for profiling
//! with perf or callgrind). Prints Markdown tables.

#[path = "../../benches/common/load.rs"]
mod load;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use edge_runtime::{HttpHandler, HttpSpec, OutputSink, OutputStream, Runtime, RuntimeConfig};
use load::{LoadSettings, Target, WasmtimeServe};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const IDLE_HANDLERS: usize = 1000;

struct Discard;
impl OutputSink for Discard {
    fn write(&self, _: OutputStream, _: &[u8]) {}
}

fn component_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/components/http-hello.wasm")
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

/// The resident cost of many handlers of one component, each having served one request.
async fn idle_handlers(rt: &Runtime, component: &edge_runtime::LoadedComponent) {
    let before = vm_rss_kib();
    let started = Instant::now();
    let mut servers = Vec::with_capacity(IDLE_HANDLERS);
    for _ in 0..IDLE_HANDLERS {
        let handler = rt
            .http_handler(component, HttpSpec::default(), Arc::new(Discard))
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

    if let Ok(addr) = std::env::var("HTTP_BENCH_SERVE") {
        let handler = rt
            .http_handler(&component, HttpSpec::default(), Arc::new(Discard))
            .expect("handler");
        let listener = TcpListener::bind(addr.as_str()).await.expect("bind");
        println!("serving http-hello on {addr} until killed");
        handler.serve(listener).await;
        return;
    }

    idle_handlers(&rt, &component).await;

    let settings = LoadSettings::from_env();
    if let Err(e) = load::wrk_available() {
        println!("\nno load test: {e}");
        return;
    }
    let handler = rt
        .http_handler(&component, HttpSpec::default(), Arc::new(Discard))
        .expect("handler");
    let (addr, server) = serve(&handler).await;
    let mut targets = vec![Target {
        name: "edge HttpHandler::serve".into(),
        addr,
        pid: std::process::id(),
    }];
    let peer = tokio::task::spawn_blocking(move || WasmtimeServe::start(&component_path()))
        .await
        .expect("start task");
    match &peer {
        Ok(peer) => targets.push(Target {
            name: format!("wasmtime serve {}", load::WASMTIME_VERSION),
            addr: peer.addr,
            pid: peer.pid(),
        }),
        Err(e) => println!("\nwasmtime serve is not measured: {e}"),
    }
    let measured = {
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || load::interleave(&settings, &targets))
            .await
            .expect("load task")
    };
    server.abort();
    drop(peer);
    let stats = handler.instantiation_stats();
    let pool = rt.pool_usage();
    let rss_after = vm_rss_kib();

    println!();
    println!("GET / of examples/components/http-hello.wasm on 127.0.0.1");
    match measured {
        Ok(measured) => measured.print(&settings),
        Err(e) => println!("load test failed: {e}"),
    }
    println!();
    println!(
        "edge per-request instantiation (request head accepted -> instance ready to enter \
         the guest handler), last {} requests: p50 {:?}, p99 {:?}",
        stats.samples, stats.p50, stats.p99
    );
    if let Some(pool) = pool {
        println!(
            "after the load: the bench process's RSS {} MiB; the instance pool keeps {} KiB \
             resident in free slots for reuse",
            rss_after / 1024,
            pool.idle_resident_bytes / 1024
        );
    }
}
