//! Benchmark: HTTP components as pods. Time from `edgectl apply` to Ready, the agent's and the
//! control plane's resident memory (separate processes) with 0, 100 and 1,000 idle HTTP pods, and
//! requests/s, p50/p99 latency and server CPU per request of one pod served by the agent beside
//! `wasmtime serve` on the same component, wrk runs interleaved between the two (see
//! `benches/common/load.rs`).
//!
//! `cargo bench --bench http_pods` (env `PODS`, default 1000; `ROUNDS`, default 5;
//! `WRK_DURATION` seconds, default 10), or build with `--no-run` and start the printed binary
//! directly. Needs `wrk` and the `wasmtime` CLI 48.0.8 (`cargo install wasmtime-cli --version
//! 48.0.8 --locked`); without them only the memory and start figures are measured. Prints
//! Markdown tables.

#[path = "../tests/e2e/support.rs"]
#[allow(dead_code)]
mod support;

#[allow(dead_code)] // each benchmark uses part of it
mod common;

use common::*;
use std::time::{Duration, Instant};
use support::*;

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
    let settings = load::LoadSettings::from_env();
    let measured = measure_load(&settings, base_port, pid);
    let agent_after_load = rss_mib(pid);

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
    println!("| agent resident memory after the load below | {agent_after_load:.0} MiB |");
    println!("\n### Serving one HTTP pod of {pods} (GET / of http-hello on 127.0.0.1)\n");
    match measured {
        Ok(measured) => measured.print(&settings),
        Err(e) => println!("load not measured: {e}"),
    }
}

/// wrk against the pod on `port` (served by the agent, process `agent`) and against
/// `wasmtime serve` of the same component, interleaved.
fn measure_load(
    settings: &load::LoadSettings,
    port: u16,
    agent: u32,
) -> Result<load::Interleaved, String> {
    let mut targets = vec![load::Target {
        name: "edge agent (pod on its node port)".into(),
        addr: ([127, 0, 0, 1], port).into(),
        pid: agent,
    }];
    let peer = load::WasmtimeServe::start(std::path::Path::new(&component("http-hello")));
    match &peer {
        Ok(peer) => targets.push(load::Target {
            name: format!("wasmtime serve {} -Scli", load::WASMTIME_VERSION),
            addr: peer.addr,
            pid: peer.pid(),
        }),
        Err(e) => println!("wasmtime serve is not measured: {e}"),
    }
    load::interleave(settings, &targets)
}
