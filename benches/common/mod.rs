//! What the benchmarks share: process memory, percentiles, a watch that timestamps pods, and
//! finding the `wasmtime` CLI used as the peer; `load` drives wrk against edge and its peer.

pub mod load;

use edge_api::object::{Kind, Object};
use edge_api::wire::{Client, Request, Response};
use edge_api::Pod;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Resident memory of a process, in KiB (0 if it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn rss_mib(pid: u32) -> f64 {
    rss_kib(pid) as f64 / 1024.0
}

/// The `p` quantile of sorted samples (nearest rank).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len().max(1) as f64 - 1.0) * p).round() as usize;
    sorted
        .get(i.min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub type Seen = Arc<Mutex<HashMap<String, Instant>>>;

/// Records, from a watch in this process, the first moment each pod satisfies `reached`.
pub fn watch_pods(config: edge_api::config::ClientConfigFile, reached: fn(&Pod) -> bool) -> Seen {
    let seen: Seen = Arc::default();
    let out = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let quic = config.quic_config(edge_api::wire::ALPN_API).expect("tls");
            let client = Client::connect(&config.server, quic)
                .await
                .expect("connect");
            let req = Request::Watch {
                kind: Kind::Pod,
                namespace: None,
                selector: None,
                resource_version: None,
            };
            let mut stream = client.stream(&req).await.expect("watch");
            while let Ok(Some(Response::Event(ev))) = stream.next().await {
                if let Object::Pod(p) = ev.object {
                    if reached(&p) {
                        out.lock()
                            .expect("lock")
                            .entry(p.metadata.name.clone())
                            .or_insert_with(Instant::now);
                    }
                }
            }
        });
    });
    seen
}

/// The `wasmtime` CLI (the peer): `$WASMTIME`, on PATH or in ~/.cargo/bin; says how to
/// install it when missing.
pub fn wasmtime_bin() -> Option<PathBuf> {
    load::wasmtime_cli().map_err(|e| eprintln!("{e}")).ok()
}
