//! Benchmark: time from `edgectl apply` to the pod Running (component cached), and the
//! all-in-one server's resident memory idle and with the pods running; beside it, the same
//! component started by `wasmtime run` (the peer) measured in the same run.
//!
//! `cargo bench --bench startup` (env `PODS`, default 50). Prints a Markdown table.

#[path = "../tests/e2e/support.rs"]
#[allow(dead_code)]
mod support;

#[allow(dead_code)] // each benchmark uses part of it
mod common;

use common::*;
use std::io::BufRead;
use std::time::{Duration, Instant};
use support::*;

fn manifest(dir: &std::path::Path, name: &str, wasm: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join(format!("{name}.yaml"));
    let text = format!(
        "apiVersion: edge.dev/v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - name: ticker\n    image: {}\n    resources: {{limits: {{memory: 16Mi}}}}\n",
        wasm.display()
    );
    std::fs::write(&p, text).expect("write manifest");
    p
}

fn edge_figures(pods: usize) -> (Vec<Duration>, u64, u64) {
    let c = Cluster::start(&[]);
    c.wait_node_ready("node-1");
    let pid = c.server.as_ref().expect("server").child.id();
    let wasm = repo().join("examples/components/ticker.wasm");
    assert!(wasm.exists(), "run scripts/build-modules.sh first");
    let config =
        edge_api::config::ClientConfigFile::load(&c.home.path().join("config")).expect("config");
    let seen = watch_pods(config, |p| p.status.phase == edge_api::PodPhase::Running);

    // Warm-up: the component is uploaded, fetched by the agent and compiled once.
    let warm = manifest(c.home.path(), "warm", &wasm);
    c.ok(&["apply", "-f", warm.to_str().expect("utf8")]);
    c.wait_phase("warm", "Running");
    c.ok(&["delete", "pod", "warm"]);
    c.wait_gone("warm");
    std::thread::sleep(Duration::from_secs(3));
    let idle = rss_kib(pid);

    let mut samples = Vec::new();
    for i in 0..pods {
        let name = format!("bench-{i}");
        let file = manifest(c.home.path(), &name, &wasm);
        let t0 = Instant::now();
        c.ok(&["apply", "-f", file.to_str().expect("utf8")]);
        let at = wait_for(&format!("{name} Running"), Duration::from_secs(60), || {
            seen.lock().expect("lock").get(&name).copied()
        });
        samples.push(at.saturating_duration_since(t0));
    }
    std::thread::sleep(Duration::from_secs(3));
    let loaded = rss_kib(pid);
    samples.sort();
    (samples, idle, loaded)
}

/// `wasmtime run` of the same component: spawn to its first line of output.
fn wasmtime_figures(runs: usize) -> Option<(Vec<Duration>, u64)> {
    let bin = wasmtime_bin()?;
    let wasm = repo().join("examples/components/ticker.wasm");
    let mut samples = Vec::new();
    let mut rss = 0;
    for i in 0..=runs {
        let t0 = Instant::now();
        let mut child = std::process::Command::new(&bin)
            .arg("run")
            .arg(&wasm)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take()?)
            .read_line(&mut line)
            .ok()?;
        let took = t0.elapsed();
        rss = rss.max(rss_kib(child.id()));
        let _ = child.kill();
        let _ = child.wait();
        if i > 0 {
            samples.push(took); // run 0 only warms wasmtime's compilation cache
        }
    }
    samples.sort();
    Some((samples, rss))
}

fn main() {
    let pods: usize = std::env::var("PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let (edge, idle, loaded) = edge_figures(pods);
    let peer = wasmtime_figures(20);
    println!("\n### Start latency and memory ({pods} pods, component cached)\n");
    println!("| figure | edge | wasmtime run (peer) | edge / peer |");
    println!("|---|---|---|---|");
    for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
        let e = percentile(&edge, p);
        let (w, ratio) = match &peer {
            Some((w, _)) => {
                let w = percentile(w, p);
                (
                    ms(w),
                    format!("{:.2}", e.as_secs_f64() / w.as_secs_f64().max(1e-9)),
                )
            }
            None => ("not installed".into(), "-".into()),
        };
        println!("| start {label}: `edgectl apply` -> Running (edge) / spawn -> first output (peer) | {} | {w} | {ratio} |", ms(e));
    }
    let peer_rss = peer
        .as_ref()
        .map(|(_, r)| format!("{} MiB (one component)", r / 1024))
        .unwrap_or_else(|| "-".into());
    println!(
        "| resident memory, idle (server + agent) | {} MiB | {peer_rss} | - |",
        idle / 1024
    );
    println!(
        "| resident memory, {pods} pods running | {} MiB | - | - |",
        loaded / 1024
    );
    println!(
        "| added memory per running pod | {} KiB | - | - |",
        loaded.saturating_sub(idle) / pods.max(1) as u64
    );
}
