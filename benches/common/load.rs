//! HTTP load for the benchmarks that compare edge with `wasmtime serve`: wrk runs interleaved
//! between the servers over several rounds, medians, server CPU time per request, the machine's
//! load while measuring, and finding (or saying how to install) `wrk` and the `wasmtime` CLI.
//!
//! Shared by `benches/http_pods.rs` (through `benches/common`) and
//! `runtime/benches/http.rs` (by path); it needs nothing but std.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `wasmtime` CLI release the benchmarks compare with (the workspace's wasmtime).
pub const WASMTIME_VERSION: &str = "48.0.8";

const WASMTIME_INSTALL: &str = "cargo install wasmtime-cli --version 48.0.8 --locked";
const WRK_INSTALL: &str = "apt-get install wrk (Debian/Ubuntu) or build github.com/wg/wrk";

/// The wrk settings and the number of rounds, the same for every server.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
    /// Rounds; each round runs wrk once against every server.
    pub rounds: usize,
    /// An unmeasured wrk run per server before the rounds (JIT-free but caches, pools and
    /// connection paths warm up).
    pub warmup: Duration,
}

impl LoadSettings {
    /// `wrk -t2 -c32 -d10s`, 5 rounds, 2 s warm-up; `ROUNDS`, `WRK_DURATION` (seconds),
    /// `WRK_CONNECTIONS` and `WRK_THREADS` override.
    pub fn from_env() -> LoadSettings {
        let get = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        LoadSettings {
            threads: get("WRK_THREADS", 2) as u32,
            connections: get("WRK_CONNECTIONS", 32) as u32,
            duration: Duration::from_secs(get("WRK_DURATION", 10)),
            rounds: get("ROUNDS", 5) as usize,
            warmup: Duration::from_secs(2),
        }
    }

    /// The wrk command line without the URL, for the printed tables.
    pub fn describe(&self) -> String {
        format!(
            "wrk -t{} -c{} -d{}s --latency",
            self.threads,
            self.connections,
            self.duration.as_secs()
        )
    }
}

/// One server under load: where it listens and which process does its work (for CPU time).
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub addr: SocketAddr,
    pub pid: u32,
}

/// One wrk run against one server.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Socket errors plus non-2xx/3xx responses.
    pub errors: u64,
    /// The server process's CPU time (user + system) per completed request.
    pub cpu_us_per_request: f64,
}

/// `wrk`, or an error saying how to install it.
pub fn wrk_available() -> Result<(), String> {
    match Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "wrk is not available ({e}); install it: {WRK_INSTALL}"
        )),
    }
}

/// The `wasmtime` CLI: `$WASMTIME`, then `PATH`, then `~/.cargo/bin`; an error says how to
/// install it. A version other than [`WASMTIME_VERSION`] is used with a warning.
pub fn wasmtime_cli() -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("WASMTIME")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("wasmtime")));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/wasmtime"));
    }
    let Some(cli) = candidates.into_iter().find(|p| p.is_file()) else {
        return Err(format!(
            "the wasmtime CLI was not found ($WASMTIME, PATH, ~/.cargo/bin); install it: \
             {WASMTIME_INSTALL}"
        ));
    };
    let version = Command::new(&cli)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .map_err(|e| format!("cannot run {}: {e}", cli.display()))?;
    if !version.contains(WASMTIME_VERSION) {
        eprintln!(
            "warning: {} is `{version}`, not {WASMTIME_VERSION}; for a like-for-like \
             comparison: {WASMTIME_INSTALL}",
            cli.display()
        );
    }
    Ok(cli)
}

/// A `wasmtime serve -Scli` child process, killed when dropped.
pub struct WasmtimeServe {
    child: Child,
    pub addr: SocketAddr,
}

impl WasmtimeServe {
    /// Starts `wasmtime serve -Scli` on a free loopback port and waits until it answers
    /// `GET /` with 200. `-Scli` gives the component wasi:cli (its environment), as edge does.
    pub fn start(component: &Path) -> Result<WasmtimeServe, String> {
        let cli = wasmtime_cli()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("cannot find a free port: {e}"))?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(&cli)
            .args(["serve", "-Scli", "--addr"])
            .arg(addr.to_string())
            .arg(component)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", cli.display()))?;
        let server = WasmtimeServe { child, addr };
        if !wait_until_serving(addr, Duration::from_secs(60)) {
            return Err(format!(
                "wasmtime serve did not answer on {addr} within 60 s"
            ));
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `GET /` until it answers 200 (blocking).
pub fn wait_until_serving(addr: SocketAddr, within: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if get_status(addr).is_some_and(|s| s == 200) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The status of one `GET /` on a fresh connection.
pub fn get_status(addr: SocketAddr) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut response = Vec::new();
    s.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Clock ticks per second of /proc CPU times.
fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User + system CPU time of a process (all its threads) so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may contain spaces: fields are counted after its closing ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After ')': state is field 3 of stat(5), so utime (14) and stime (15) are at 11 and 12.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / clock_ticks_per_sec())
}

/// The machine's load: 1-minute load average and how many compilers run right now.
pub fn machine_load() -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    format!(
        "load average {loadavg}, {} rustc running",
        count_processes("rustc")
    )
}

fn count_processes(comm: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == comm))
        .count()
}

/// Runs wrk once against `target` and measures the server's CPU time meanwhile.
pub fn run_wrk(
    settings: &LoadSettings,
    duration: Duration,
    target: &Target,
) -> Result<Sample, String> {
    let cpu_before = cpu_time(target.pid);
    let output = Command::new("wrk")
        .arg(format!("-t{}", settings.threads))
        .arg(format!("-c{}", settings.connections))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency")
        .arg(format!("http://{}/", target.addr))
        .output()
        .map_err(|e| format!("cannot run wrk ({e}); install it: {WRK_INSTALL}"))?;
    let cpu = cpu_time(target.pid).saturating_sub(cpu_before);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    parse_wrk(&text, cpu).ok_or_else(|| format!("cannot parse wrk's output:\n{text}"))
}

fn parse_wrk(text: &str, cpu: Duration) -> Option<Sample> {
    let line = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    };
    let requests_per_sec = line("Requests/sec:")?.parse::<f64>().ok()?;
    // "123456 requests in 10.00s, 15.07MB read"
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()?;
    let p50_ms = parse_latency_ms(&line("50%")?)?;
    let p99_ms = parse_latency_ms(&line("99%")?)?;
    // "Socket errors: connect 0, read 0, write 0, timeout 0"
    let socket_errors: u64 = line("Socket errors:")
        .map(|l| {
            l.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    let non_2xx: u64 = line("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(Sample {
        requests_per_sec,
        p50_ms,
        p99_ms,
        errors: socket_errors + non_2xx,
        cpu_us_per_request: cpu.as_secs_f64() * 1e6 / requests.max(1) as f64,
    })
}

/// wrk's "2.16ms", "850.00us", "1.02s" as milliseconds.
fn parse_latency_ms(value: &str) -> Option<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        _ => return None,
    };
    Some(number * factor)
}

/// The result of [`interleave`]: every sample of every server, and the load seen.
pub struct Interleaved {
    pub names: Vec<String>,
    /// `samples[server][round]`.
    pub samples: Vec<Vec<Sample>>,
    /// `orders[round]`: the servers' indices in the order they ran that round.
    pub orders: Vec<Vec<usize>>,
    pub load_before: String,
    pub load_after: String,
    pub max_rustc: usize,
}

/// Runs wrk against each target in turn, `settings.rounds` times, reversing the order every
/// other round (A B, B A, A B, ...) so that neither server always runs after the other.
/// Each server first gets an unmeasured warm-up run.
pub fn interleave(settings: &LoadSettings, targets: &[Target]) -> Result<Interleaved, String> {
    wrk_available()?;
    for target in targets {
        run_wrk(settings, settings.warmup, target)?;
    }
    let load_before = machine_load();
    let mut max_rustc = count_processes("rustc");
    let mut samples = vec![Vec::with_capacity(settings.rounds); targets.len()];
    let mut orders = Vec::with_capacity(settings.rounds);
    for round in 0..settings.rounds {
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for &i in &order {
            let sample = run_wrk(settings, settings.duration, &targets[i])?;
            if sample.errors > 0 {
                eprintln!(
                    "warning: {} answered {} requests with errors in round {}",
                    targets[i].name,
                    sample.errors,
                    round + 1
                );
            }
            samples[i].push(sample);
            max_rustc = max_rustc.max(count_processes("rustc"));
        }
        orders.push(order);
    }
    Ok(Interleaved {
        names: targets.iter().map(|t| t.name.clone()).collect(),
        samples,
        orders,
        load_before,
        load_after: machine_load(),
        max_rustc,
    })
}

/// The median (mean of the middle two for an even count).
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

impl Interleaved {
    fn median_of(&self, server: usize, field: fn(&Sample) -> f64) -> f64 {
        median(self.samples[server].iter().map(field))
    }

    /// Median requests/s of server `server`.
    pub fn median_rps(&self, server: usize) -> f64 {
        self.median_of(server, |s| s.requests_per_sec)
    }

    /// Prints the per-round table and the medians, with the ratio of server 0 to each other.
    pub fn print(&self, settings: &LoadSettings) {
        println!(
            "{}, {} rounds interleaved (order reversed every other round) after a {} s \
             warm-up each; {} CPUs; before: {}; after: {}; at most {} rustc seen",
            settings.describe(),
            settings.rounds,
            settings.warmup.as_secs(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            self.load_before,
            self.load_after,
            self.max_rustc
        );
        println!();
        let mut header = String::from("| round |");
        let mut rule = String::from("|---|");
        for name in &self.names {
            header.push_str(&format!(" {name} req/s |"));
            rule.push_str("---|");
        }
        if self.names.len() == 2 {
            header.push_str(" ratio |");
            rule.push_str("---|");
        }
        println!("{header}\n{rule}");
        for (round, order) in self.orders.iter().enumerate() {
            let mut row = format!("| {} |", round + 1);
            for server in 0..self.names.len() {
                let position = order.iter().position(|&i| i == server).unwrap_or(0) + 1;
                row.push_str(&format!(
                    " {:.0} ({position}.) |",
                    self.samples[server][round].requests_per_sec
                ));
            }
            if self.names.len() == 2 {
                row.push_str(&format!(
                    " {:.2} |",
                    self.samples[0][round].requests_per_sec
                        / self.samples[1][round].requests_per_sec
                ));
            }
            println!("{row}");
        }
        println!();
        println!(
            "| server (median of {} rounds) | requests/s | p50 | p99 | server CPU per request |",
            settings.rounds
        );
        println!("|---|---|---|---|---|");
        for (i, name) in self.names.iter().enumerate() {
            println!(
                "| {name} | {:.0} | {:.2} ms | {:.2} ms | {:.1} µs |",
                self.median_rps(i),
                self.median_of(i, |s| s.p50_ms),
                self.median_of(i, |s| s.p99_ms),
                self.median_of(i, |s| s.cpu_us_per_request),
            );
        }
        for i in 1..self.names.len() {
            println!(
                "| {} / {} | {:.2} | | | {:.2} |",
                self.names[0],
                self.names[i],
                self.median_rps(0) / self.median_rps(i),
                self.median_of(0, |s| s.cpu_us_per_request)
                    / self.median_of(i, |s| s.cpu_us_per_request),
            );
        }
    }
}
