//! Benchmark: HTTP components as pods. Time from `edgectl apply` to Ready, the agent's and the
//! control plane's resident memory (separate processes) with 0, 100 and 1,000 idle HTTP pods, and requests/s with p50/p99
//! latency of one pod served by the agent beside `wasmtime serve` on the same component (wrk).
//!
//! `cargo bench --bench http_pods` (env `PODS`, default 1000). Prints Markdown tables.

#[path = "../tests/e2e/support.rs"]
#[allow(dead_code)]
mod support;

#[allow(dead_code)] // each benchmark uses part of it
mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

struct Wrk {
    rps: f64,
    p50: String,
    p99: String,
}

/// 10 s of wrk, 2 threads, 32 connections, against 127.0.0.1:`port`/.
fn wrk(port: u16) -> Option<Wrk> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            "-c32",
            "-d10s",
            "--latency",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    };
    Some(Wrk {
        rps: field("Requests/sec:")?.parse().ok()?,
        p50: field("50%")?,
        p99: field("99%")?,
    })
}

fn pod_manifest(dir: &std::path::Path, name: &str, port: u16) -> String {
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - name: web\n    image: {}\n    ports: [{{containerPort: {port}}}]\n    resources: {{limits: {{memory: 16Mi}}}}\n",
        component("http-hello")
    );
    write_manifest(dir, &format!("{name}.yaml"), &text)
}

fn main() {
    let pods: usize = std::env::var("PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let max = (pods + 10).to_string();
    // The agent runs as its own process so its memory is measured apart from the control plane.
    let c = Cluster::start(&["--no-agent"]);
    let token = std::fs::read_to_string(c.data_dir().join("token")).expect("token");
    let agent_dir = c.home.path().join("agent");
    let agent = Daemon::spawn(
        &[
            "agent",
            "--server",
            &format!("127.0.0.1:{}", c.port),
            "--token",
            token.trim(),
            "--data-dir",
            agent_dir.to_str().expect("utf8"),
            "--node-name",
            "node-1",
            "--max-pods",
            &max,
        ],
        c.home.path(),
        "agent.log",
    );
    c.wait_node_ready("node-1");
    let pid = agent.child.id();
    let server_pid = c.server.as_ref().expect("server").child.id();
    let config =
        edge_api::config::ClientConfigFile::load(&c.home.path().join("config")).expect("config");
    let seen = watch_pods(config, |p| {
        edge_api::meta::condition(&p.status.conditions, "Ready").is_some_and(|c| c.is_true())
    });
    std::thread::sleep(Duration::from_secs(2));
    let mut memory = vec![(0usize, rss_mib(pid), rss_mib(server_pid))];

    let base_port = 20000u16;
    let mut latencies = Vec::new();
    for i in 0..pods {
        let name = format!("web-{i}");
        let file = pod_manifest(c.home.path(), &name, base_port + i as u16);
        let t0 = Instant::now();
        c.ok(&["apply", "-f", &file]);
        if i < 50 {
            let at = wait_for(&format!("{name} Ready"), Duration::from_secs(60), || {
                seen.lock().expect("lock").get(&name).copied()
            });
            latencies.push(at.saturating_duration_since(t0));
        }
        if i + 1 == 100 || i + 1 == pods {
            wait_for("all pods Ready", Duration::from_secs(300), || {
                (seen.lock().expect("lock").len() > i).then_some(())
            });
            std::thread::sleep(Duration::from_secs(3));
            memory.push((i + 1, rss_mib(pid), rss_mib(server_pid)));
        }
    }
    latencies.sort();
    let edge = wrk(base_port);
    let peer = wasmtime_bin().and_then(|bin| {
        let port = free_tcp_port();
        let mut child = Command::new(bin)
            .args([
                "serve",
                "-Scli",
                "--addr",
                &format!("127.0.0.1:{port}"),
                &component("http-hello"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let up = (0..600).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            http_get(port, "/", Duration::from_secs(1)).is_some()
        });
        if !up {
            eprintln!("wasmtime serve did not come up on port {port}");
            let _ = child.kill();
            return None;
        }
        let r = wrk(port);
        let _ = child.kill();
        let _ = child.wait();
        r
    });

    println!("\n### HTTP pods ({pods} pods of examples/components/http-hello.wasm)\n");
    println!("| figure | value |\n|---|---|");
    println!(
        "| `edgectl apply` -> Ready, p50 (first 50 pods) | {} |",
        ms(percentile(&latencies, 0.5))
    );
    println!(
        "| `edgectl apply` -> Ready, p99 (first 50 pods) | {} |",
        ms(percentile(&latencies, 0.99))
    );
    for (n, agent, server) in &memory {
        println!("| resident memory with {n} idle HTTP pods: agent / control plane | {agent:.0} MiB / {server:.0} MiB |");
    }
    println!("\n### Serving one HTTP pod (wrk -t2 -c32 -d10s)\n");
    println!("| server | requests/s | p50 | p99 |\n|---|---|---|---|");
    let row = |name: &str, w: &Option<Wrk>| match w {
        Some(w) => println!("| {name} | {:.0} | {} | {} |", w.rps, w.p50, w.p99),
        None => println!("| {name} | not measured (wrk or the server missing) | - | - |"),
    };
    row("edge agent (pod on the node port)", &edge);
    row("wasmtime serve 48.0.8 (peer)", &peer);
    if let (Some(e), Some(p)) = (&edge, &peer) {
        println!(
            "\nedge / wasmtime serve throughput: {:.2}",
            e.rps / p.rps.max(1.0)
        );
    }
}
