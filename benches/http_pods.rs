//! Benchmark: HTTP components as pods. Time from `edgectl apply` to Ready, the agent's and the
//! control plane's resident memory (separate processes) with 0, 100 and 1,000 idle HTTP pods, and requests/s with p50/p99
//! latency of one pod served by the agent beside `wasmtime serve` on the same component (wrk).
//!
//! `cargo bench --bench http_pods` (env `PODS`, default 1000). Prints Markdown tables.

#[path = "../tests/e2e/support.rs"]
#[allow(dead_code)]
mod support;

use edge_api::object::{Kind, Object};
use edge_api::wire::{Client, Request, Response};
use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len().max(1) as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// First moment each pod is seen Ready, from a watch in this process.
fn watch_ready(config: edge_api::config::ClientConfigFile) -> Arc<Mutex<HashMap<String, Instant>>> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let out = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
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
                    let ready = edge_api::meta::condition(&p.status.conditions, "Ready")
                        .is_some_and(|c| c.is_true());
                    if ready {
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

fn wasmtime_bin() -> Option<std::path::PathBuf> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from)?;
    let candidates = [
        home.join(".cargo/bin/wasmtime"),
        "/usr/local/bin/wasmtime".into(),
        "/usr/bin/wasmtime".into(),
    ];
    candidates.into_iter().find(|p| p.exists())
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
    let seen = watch_ready(config);
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
        ms(pct(&latencies, 0.5))
    );
    println!(
        "| `edgectl apply` -> Ready, p99 (first 50 pods) | {} |",
        ms(pct(&latencies, 0.99))
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
