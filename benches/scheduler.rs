//! Benchmark: the scheduler's placements per second, committed through raft, and the latency
//! from a pod's creation to its bind, on a real single-server control plane (raft on redb in
//! a temporary directory) with 1,000 and 5,000 simulated nodes (Node objects that register and
//! stay Ready, with no agent behind them); beside it, kube-scheduler's published CI gate.
//! Each size runs twice: with raft, the store and the scheduler alone (what scheduler_perf
//! runs: an API server and the scheduler), and with the whole control plane of `server::start`
//! (controllers, endpoints and node lifecycle watching the same changes).
//!
//! `cargo bench --bench scheduler` (env `NODES`, default `1000,5000`; `INIT_PODS`, default
//! 1000; `PODS`, default 3000; `PACED_PODS`, default 300). Prints Markdown tables.

#[allow(dead_code)] // each benchmark uses part of it
mod common;

use common::{ms, percentile};
use edge_api::object::{Kind, Object};
use edge_api::wire::EventType;
use edge_api::{Node, Pod};
use edge_control::apiserver::objects::{normalize, plan_apply};
use edge_control::context::{ControlPlane, ServerOptions};
use edge_control::pki::ClusterPki;
use edge_control::raft::{QuicNetwork, RaftNode};
use edge_control::scheduler::{default_plugins, schedule_from, Placement, Snapshot};
use edge_control::server::{start, ServerConfig};
use edge_control::store::{Command, CommandResult};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// kube-scheduler's CI thresholds for SchedulingBasic at 5,000 nodes (pods/s, average):
/// 5000Nodes_10000Pods and 5000Nodes_50000Pods in kubernetes/kubernetes
/// test/integration/scheduler_perf/misc/performance-config.yaml.
const GATE_LOW: f64 = 680.0;
const GATE_HIGH: f64 = 810.0;
const ZONES: usize = 10;
/// The kinds of pod in the mix, as `pod(_, i)` makes them for i = 2, 0, 1.
const KINDS: [&str; 3] = ["plain", "nodeSelector", "zone spread"];
/// Set in the child process that runs one configuration (`scheduler:1000`, `full:5000`).
const ONE: &str = "SCHEDULER_BENCH_ONE";
/// Pods per raft entry when the benchmark creates pods in bulk (the creating client's side).
const CREATE_BATCH: usize = 100;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn parse(yaml: &str) -> Object {
    edge_api::manifest::parse_documents(yaml, "benchmark")
        .expect("benchmark manifest")
        .remove(0)
}

/// scheduler_perf's node-default: 4 cpu, 32Gi, 110 pods, Ready; plus zone and hostname labels.
fn node(i: usize) -> Object {
    let name = format!("node-{i:05}");
    let mut n: Node = match parse(&format!(
        "apiVersion: edge.dev/v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/hostname: {name}, topology.kubernetes.io/zone: zone-{}, kubernetes.io/arch: amd64}}\n",
        i % ZONES
    )) {
        Object::Node(n) => n,
        other => panic!("{other:?}"),
    };
    for (k, v) in [("cpu", "4"), ("memory", "32Gi"), ("pods", "110")] {
        n.status.capacity.insert(k.into(), v.into());
        n.status.allocatable.insert(k.into(), v.into());
    }
    n.status.conditions.push(edge_api::meta::Condition::new(
        "Ready",
        true,
        "Simulated",
        "",
    ));
    Object::Node(n)
}

/// scheduler_perf's pod-default (100m cpu, 500Mi); of every ten pods two carry a nodeSelector
/// on a zone and two a DoNotSchedule spread over zones, so those filters and scores run too.
fn pod(prefix: &str, i: usize) -> Object {
    let name = format!("{prefix}-{i:06}");
    let resources =
        "resources: {requests: {cpu: 100m, memory: 500Mi}, limits: {cpu: 100m, memory: 500Mi}}";
    let extra = match i % 10 {
        0 | 5 => format!("  nodeSelector: {{topology.kubernetes.io/zone: zone-{}}}\n", i % ZONES),
        1 | 6 => format!(
            "  topologySpreadConstraints:\n  - {{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {{matchLabels: {{app: spread-{}}}}}}}\n",
            i % 7
        ),
        _ => String::new(),
    };
    // Only the spread pods carry their group's label, so each group's skew can be checked.
    let app = match i % 10 {
        1 | 6 => format!("spread-{}", i % 7),
        _ => "basic".into(),
    };
    parse(&format!(
        "apiVersion: edge.dev/v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {app}}}\nspec:\n  containers:\n  - {{name: main, image: 'sha256:{}', {resources}}}\n{extra}",
        "0".repeat(64)
    ))
}

/// Stores `objects` as `create` would (defaults, validation, uid, timestamps), several per raft
/// entry, as a fast client's writes would be batched.
async fn create_all(cp: &ControlPlane, objects: Vec<Object>) {
    for chunk in objects.chunks(CREATE_BATCH) {
        let commands: Vec<Command> = chunk
            .iter()
            .map(|o| {
                let obj = normalize(o.clone()).expect("valid object");
                let (write, _) = plan_apply(None, obj).expect("create");
                let (object, precondition) = write.expect("a create writes");
                Command::Put {
                    object,
                    precondition,
                }
            })
            .collect();
        match cp.propose(Command::Batch(commands)).await {
            Ok(CommandResult::Batch(results)) => {
                for r in results {
                    assert!(matches!(r, CommandResult::Stored(_)), "create: {r:?}");
                }
            }
            other => panic!("create batch: {other:?}"),
        }
    }
}

/// When each pod was created and bound, as the watch hub published it (read on a thread of
/// its own, so the timestamps do not wait for the async runtime).
#[derive(Default)]
struct Timeline {
    created: HashMap<String, Instant>,
    bound: HashMap<String, Instant>,
}

fn follow(cp: &ControlPlane) -> Arc<Mutex<Timeline>> {
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let out = timeline.clone();
    let mut live = cp
        .raft
        .store
        .watch_hub()
        .subscribe_from(u64::MAX)
        .expect("subscribe")
        .live;
    std::thread::spawn(move || loop {
        let ev = match live.blocking_recv() {
            Ok(ev) => ev,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            Err(e) => panic!("the benchmark's watch fell behind: {e}"),
        };
        let now = Instant::now();
        let Object::Pod(p) = &ev.object else {
            continue;
        };
        let mut t = out.lock().expect("timeline");
        match (ev.event_type, &p.spec.node_name) {
            (EventType::Added, None) => {
                t.created.insert(p.metadata.name.clone(), now);
            }
            (EventType::Modified, Some(_)) => {
                t.bound.entry(p.metadata.name.clone()).or_insert(now);
            }
            _ => {}
        }
    });
    timeline
}

async fn wait_bound(timeline: &Mutex<Timeline>, names: &[String], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let missing = {
            let t = timeline.lock().expect("timeline");
            names.iter().filter(|n| !t.bound.contains_key(*n)).count()
        };
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} pods not bound after {limit:?}",
            names.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// CPU time this process has used (user + system), from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Duration::from_millis(ticks * 10)
}

struct Figures {
    plane: Plane,
    nodes: usize,
    pods: usize,
    rate: f64,
    created_rate: f64,
    p50: Duration,
    p99: Duration,
    cores: f64,
    paced_rate: f64,
    paced_p50: Duration,
    paced_p99: Duration,
    /// What one `schedule_from` costs on the final cluster, for each of `KINDS`.
    decisions: Vec<Duration>,
}

impl Figures {
    /// One line for the parent process.
    fn to_line(&self) -> String {
        let us = |d: Duration| d.as_micros().to_string();
        let mut fields = vec![
            "figures".to_string(),
            self.plane.tag().into(),
            self.nodes.to_string(),
            self.pods.to_string(),
            self.rate.to_string(),
            self.created_rate.to_string(),
            us(self.p50),
            us(self.p99),
            self.cores.to_string(),
            self.paced_rate.to_string(),
            us(self.paced_p50),
            us(self.paced_p99),
        ];
        fields.extend(self.decisions.iter().map(|d| us(*d)));
        fields.join(" ")
    }

    fn from_line(line: &str) -> Option<Figures> {
        let f: Vec<&str> = line.strip_prefix("figures ")?.split(' ').collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
        let us = |i: usize| num(i).map(|v| Duration::from_micros(v as u64));
        Some(Figures {
            plane: Plane::from_tag(f.first()?),
            nodes: num(1)? as usize,
            pods: num(2)? as usize,
            rate: num(3)?,
            created_rate: num(4)?,
            p50: us(5)?,
            p99: us(6)?,
            cores: num(7)?,
            paced_rate: num(8)?,
            paced_p50: us(9)?,
            paced_p99: us(10)?,
            decisions: (11..11 + KINDS.len()).map(us).collect::<Option<_>>()?,
        })
    }
}

/// Runs one configuration in a child process and reads its figures.
fn run_child(plane: Plane, nodes: usize) -> Figures {
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let out = std::process::Command::new(exe)
        .env(ONE, format!("{}:{nodes}", plane.tag()))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run a configuration");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(Figures::from_line)
        .unwrap_or_else(|| panic!("{}:{nodes} failed ({}): {stdout}", plane.tag(), out.status))
}

fn latencies(timeline: &Timeline, names: &[String]) -> (Vec<Duration>, Instant, Instant) {
    let mut lat = Vec::new();
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    for n in names {
        let c = timeline.created[n];
        let b = timeline.bound[n];
        lat.push(b.saturating_duration_since(c));
        first = Some(first.map_or(c, |f| f.min(c)));
        last = Some(last.map_or(b, |l| l.max(b)));
    }
    lat.sort();
    (lat, first.expect("pods"), last.expect("pods"))
}

/// Checks what was placed: every nodeSelector honoured, each spread group within maxSkew 1 over
/// the zones, no node over its memory (65 pods of 500Mi in 32Gi).
async fn verify(cp: &ControlPlane) {
    let snap = cp.current().await.expect("read");
    let pods: Vec<Pod> = snap
        .list(Kind::Pod, None)
        .expect("list")
        .into_iter()
        .filter_map(|o| match o {
            Object::Pod(p) => Some(p),
            _ => None,
        })
        .collect();
    let zone = |node: &str| {
        let i: usize = node.trim_start_matches("node-").parse().expect("node name");
        i % ZONES
    };
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    let mut spread: BTreeMap<&str, [usize; ZONES]> = BTreeMap::new();
    for p in &pods {
        let node = p.spec.node_name.as_deref().expect("every pod is bound");
        *per_node.entry(node).or_default() += 1;
        if let Some(z) = p.spec.node_selector.get("topology.kubernetes.io/zone") {
            assert_eq!(
                *z,
                format!("zone-{}", zone(node)),
                "{} ignored its nodeSelector",
                p.metadata.name
            );
        }
        if let Some(app) = p
            .metadata
            .labels
            .get("app")
            .filter(|a| a.starts_with("spread-"))
        {
            spread.entry(app).or_default()[zone(node)] += 1;
        }
    }
    assert!(
        per_node.values().all(|&n| n <= 65),
        "a node is overcommitted"
    );
    for (app, counts) in spread {
        let (min, max) = (counts.iter().min(), counts.iter().max());
        assert!(
            max.zip(min).is_some_and(|(a, b)| a - b <= 1),
            "{app} is skewed: {counts:?}"
        );
    }
}

/// The pure decision alone, timed over a snapshot of the final cluster, for each kind of pod
/// in the mix: where a placement's CPU goes before raft.
async fn decision_costs(cp: &ControlPlane) -> Vec<Duration> {
    let snap = cp.current().await.expect("read");
    let objects = |kind| snap.list(kind, None).expect("list");
    let nodes: Vec<Node> = objects(Kind::Node)
        .into_iter()
        .filter_map(|o| match o {
            Object::Node(n) => Some(n),
            _ => None,
        })
        .collect();
    let pods: Vec<Pod> = objects(Kind::Pod)
        .into_iter()
        .filter_map(|o| match o {
            Object::Pod(p) => Some(p),
            _ => None,
        })
        .collect();
    let view = Snapshot::new(&nodes, &pods);
    let plugins = default_plugins();
    let mut out = Vec::new();
    for (kind, i) in KINDS.into_iter().zip([2, 0, 1]) {
        let probe = match normalize(pod("probe", i)).expect("valid") {
            Object::Pod(p) => p,
            other => panic!("{other:?}"),
        };
        let rounds = 200;
        let mut start = 0;
        let t = Instant::now();
        for _ in 0..rounds {
            let d = schedule_from(&probe, &view, &plugins, start);
            assert!(matches!(d.placement, Placement::Node(_)), "{kind}: {d:?}");
            start = (start + d.examined) % nodes.len();
        }
        out.push(t.elapsed() / rounds);
    }
    out
}

/// What runs beside raft and the store.
#[derive(Clone, Copy, PartialEq)]
enum Plane {
    /// `server::start`: the API endpoint, scheduler, node lifecycle, controllers, endpoints.
    Full,
    /// Raft on redb, the store and the scheduler loop alone: what scheduler_perf runs
    /// (an API server and the scheduler, no controllers).
    SchedulerOnly,
}

impl Plane {
    fn tag(self) -> &'static str {
        match self {
            Plane::Full => "full",
            Plane::SchedulerOnly => "scheduler",
        }
    }

    fn from_tag(tag: &str) -> Plane {
        if tag == "full" {
            Plane::Full
        } else {
            Plane::SchedulerOnly
        }
    }

    fn name(self) -> &'static str {
        match self {
            Plane::Full => "whole control plane",
            Plane::SchedulerOnly => "raft + store + scheduler",
        }
    }
}

fn options() -> ServerOptions {
    ServerOptions {
        // No agents: the benchmark heartbeats for them as well, below.
        node_grace_period: Duration::from_secs(3600),
        ..Default::default()
    }
}

/// Starts a single-server control plane in `dir`. (Each configuration runs in a process of
/// its own, so nothing of one run lingers into the next.)
async fn start_plane(plane: Plane, dir: &std::path::Path) -> Arc<ControlPlane> {
    if plane == Plane::Full {
        let server = start(ServerConfig {
            data_dir: dir.to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            options: options(),
        })
        .await
        .expect("control plane starts");
        return server.control.clone();
    }
    let pki = Arc::new(ClusterPki::load_or_create(&dir.join("pki")).expect("pki"));
    let endpoint = quinn::Endpoint::server(
        pki.server_config().expect("tls"),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .expect("endpoint");
    let addr = endpoint.local_addr().expect("addr").to_string();
    let network = QuicNetwork::new(endpoint, pki.peer_client_config().expect("tls"));
    let raft = RaftNode::start(1, addr, &dir.join("control.redb"), network)
        .await
        .expect("raft");
    raft.initialize_single().await.expect("initialize");
    raft.wait_leader(Duration::from_secs(30))
        .await
        .expect("leader");
    let cp = ControlPlane::new(Arc::new(raft), pki, options());
    cp.ensure_builtin_namespaces().await.expect("namespaces");
    tokio::spawn(edge_control::scheduler::run::run(cp.clone()));
    cp
}

async fn run(plane: Plane, nodes: usize, init: usize, pods: usize, paced: usize) -> Figures {
    let dir = tempfile::tempdir().expect("tempdir");
    let cp = start_plane(plane, dir.path()).await;
    let timeline = follow(&cp);

    let node_objects: Vec<Object> = (0..nodes).map(node).collect();
    let names: Vec<String> = node_objects.iter().map(|o| o.meta().name.clone()).collect();
    let beat = cp.clone();
    tokio::spawn(async move {
        loop {
            for n in &names {
                beat.heard_from(n);
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    create_all(&cp, node_objects).await;

    // Warm-up, as scheduler_perf's initPods: placed, not measured.
    let warm: Vec<Object> = (0..init).map(|i| pod("init", i)).collect();
    let warm_names: Vec<String> = warm.iter().map(|o| o.meta().name.clone()).collect();
    create_all(&cp, warm).await;
    wait_bound(&timeline, &warm_names, Duration::from_secs(300)).await;

    // The burst: every pod created as fast as raft takes the writes while the scheduler runs.
    let burst: Vec<Object> = (0..pods).map(|i| pod("pod", i)).collect();
    let burst_names: Vec<String> = burst.iter().map(|o| o.meta().name.clone()).collect();
    let (cpu0, t0) = (cpu_time(), Instant::now());
    create_all(&cp, burst).await;
    let created_in = t0.elapsed();
    wait_bound(&timeline, &burst_names, Duration::from_secs(600)).await;
    let (cpu, wall) = (cpu_time() - cpu0, t0.elapsed());
    let (lat, first, last) = latencies(&timeline.lock().expect("timeline"), &burst_names);
    let window = last.saturating_duration_since(first).as_secs_f64();

    // Paced: one pod at a time through the API's create path, as `edgectl apply` would.
    let paced_objects: Vec<Object> = (0..paced).map(|i| pod("paced", i)).collect();
    let paced_names: Vec<String> = paced_objects
        .iter()
        .map(|o| o.meta().name.clone())
        .collect();
    let t1 = Instant::now();
    for o in paced_objects {
        cp.create(o).await.expect("create");
    }
    wait_bound(&timeline, &paced_names, Duration::from_secs(300)).await;
    let paced_rate = paced as f64 / t1.elapsed().as_secs_f64();
    let (paced_lat, _, _) = latencies(&timeline.lock().expect("timeline"), &paced_names);

    verify(&cp).await;
    let decisions = decision_costs(&cp).await;
    cp.raft.shutdown().await;
    Figures {
        plane,
        nodes,
        pods,
        rate: pods as f64 / window,
        created_rate: pods as f64 / created_in.as_secs_f64(),
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        cores: cpu.as_secs_f64() / wall.as_secs_f64(),
        paced_rate,
        paced_p50: percentile(&paced_lat, 0.50),
        paced_p99: percentile(&paced_lat, 0.99),
        decisions,
    }
}

fn main() {
    // RUST_LOG=edge_control::scheduler=debug shows each batch the scheduler proposes.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let (init, pods, paced) = (
        env_usize("INIT_PODS", 1000),
        env_usize("PODS", 3000),
        env_usize("PACED_PODS", 300),
    );
    if let Ok(one) = std::env::var(ONE) {
        let (tag, n) = one.split_once(':').expect("plane:nodes");
        let nodes = n.parse().expect("a node count");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let figures = rt.block_on(run(Plane::from_tag(tag), nodes, init, pods, paced));
        println!("{}", figures.to_line());
        return;
    }
    let nodes: Vec<usize> = std::env::var("NODES")
        .unwrap_or_else(|_| "1000,5000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut all = Vec::new();
    for plane in [Plane::SchedulerOnly, Plane::Full] {
        for &n in &nodes {
            eprintln!(
                "{}, {n} nodes: {init} initial pods, {pods} measured, {paced} paced ...",
                plane.name()
            );
            all.push(run_child(plane, n));
        }
    }
    println!(
        "\n| control plane | nodes | measured pods | edge placements/s | kube-scheduler CI gate (5,000 nodes) | edge / gate | p50 created -> bound | p99 created -> bound | CPU cores used |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for f in &all {
        println!(
            "| {} | {} | {} | {:.0} | {GATE_LOW:.0}-{GATE_HIGH:.0} | {:.2}-{:.2} | {} | {} | {:.2} |",
            f.plane.name(),
            f.nodes,
            f.pods,
            f.rate,
            f.rate / GATE_HIGH,
            f.rate / GATE_LOW,
            ms(f.p50),
            ms(f.p99),
            f.cores
        );
    }
    println!("\n| control plane | nodes | pods created per second (burst, {CREATE_BATCH} per raft entry) | paced: pods/s through `create` | paced p50 | paced p99 |");
    println!("|---|---|---|---|---|---|");
    for f in &all {
        println!(
            "| {} | {} | {:.0} | {:.0} | {} | {} |",
            f.plane.name(),
            f.nodes,
            f.created_rate,
            f.paced_rate,
            ms(f.paced_p50),
            ms(f.paced_p99)
        );
    }
    println!("\n| nodes | one decision (`schedule_from`), by kind of pod |");
    println!("|---|---|");
    for f in all.iter().filter(|f| f.plane == Plane::SchedulerOnly) {
        let kinds: Vec<String> = KINDS
            .iter()
            .zip(&f.decisions)
            .map(|(k, d)| format!("{k} {:.0} µs", d.as_secs_f64() * 1e6))
            .collect();
        println!("| {} | {} |", f.nodes, kinds.join(", "));
    }
}
