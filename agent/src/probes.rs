//! Health probes as the kubelet runs them: startup gates liveness and readiness; liveness past
//! its failure threshold restarts the container; readiness decides `ready`. The decisions are a
//! small pure state machine ([`ProbeSet`]); the checks (HTTP GET, TCP connect) and their
//! schedule are the I/O around it ([`watch`]).

use edge_api::pod::Probe;
use edge_api::Container;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    fn label(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// Consecutive-result counting for one probe.
#[derive(Clone, Debug)]
struct Threshold {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    /// The settled result; `None` until a threshold is first reached.
    passing: Option<bool>,
}

impl Threshold {
    fn new(p: &Probe) -> Threshold {
        Threshold {
            success_threshold: p.success_threshold.max(1),
            failure_threshold: p.failure_threshold.max(1),
            successes: 0,
            failures: 0,
            passing: None,
        }
    }

    /// Counts one result; returns the settled result when it changes.
    fn record(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
        }
        let settled = if self.successes >= self.success_threshold {
            Some(true)
        } else if self.failures >= self.failure_threshold {
            Some(false)
        } else {
            None
        };
        match settled {
            Some(s) if self.passing != Some(s) => {
                self.passing = Some(s);
                Some(s)
            }
            _ => None,
        }
    }
}

/// What the container's runner must do after a probe result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The startup probe succeeded: liveness and readiness probes begin.
    Started,
    /// The container's readiness changed; `message` says why when not ready.
    Ready { ready: bool, message: String },
    /// Kill and restart the container (a restart under the restart policy and back-off).
    Restart { message: String },
}

/// The probe state of one container run; a restarted container gets a new one.
#[derive(Clone, Debug)]
pub struct ProbeSet {
    startup: Option<Threshold>,
    liveness: Option<Threshold>,
    readiness: Option<Threshold>,
    started: bool,
}

impl ProbeSet {
    pub fn new(c: &Container) -> ProbeSet {
        ProbeSet {
            startup: c.startup_probe.as_ref().map(Threshold::new),
            liveness: c.liveness_probe.as_ref().map(Threshold::new),
            readiness: c.readiness_probe.as_ref().map(Threshold::new),
            started: c.startup_probe.is_none(),
        }
    }

    /// Ready as soon as it runs: no startup probe to wait for and no readiness probe.
    pub fn ready_when_running(&self) -> bool {
        self.started && self.readiness.is_none()
    }

    /// Whether probes of `kind` run now: startup until it succeeds, the others after.
    pub fn active(&self, kind: ProbeKind) -> bool {
        match kind {
            ProbeKind::Startup => self.startup.is_some() && !self.started,
            ProbeKind::Liveness => self.liveness.is_some() && self.started,
            ProbeKind::Readiness => self.readiness.is_some() && self.started,
        }
    }

    /// Feeds one probe result (`Err` carries why it failed) and returns what to do.
    pub fn record(&mut self, kind: ProbeKind, result: &Result<(), String>) -> Vec<Action> {
        if !self.active(kind) {
            return Vec::new();
        }
        let failed = |why: &str| format!("{} probe failed: {why}", kind.label());
        let ok = result.is_ok();
        let why = result.as_ref().err().map(String::as_str).unwrap_or("");
        let threshold = match kind {
            ProbeKind::Startup => self.startup.as_mut(),
            ProbeKind::Liveness => self.liveness.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
        };
        let Some(change) = threshold.and_then(|t| t.record(ok)) else {
            return Vec::new();
        };
        match (kind, change) {
            (ProbeKind::Startup, true) => {
                self.started = true;
                let mut out = vec![Action::Started];
                if self.readiness.is_none() {
                    out.push(Action::Ready {
                        ready: true,
                        message: String::new(),
                    });
                }
                out
            }
            (ProbeKind::Startup | ProbeKind::Liveness, false) => vec![Action::Restart {
                message: failed(why),
            }],
            (ProbeKind::Liveness, true) => Vec::new(),
            (ProbeKind::Readiness, ready) => vec![Action::Ready {
                ready,
                message: if ready { String::new() } else { failed(why) },
            }],
        }
    }
}

/// Runs `c`'s probes on their schedule from the container's start, reporting readiness
/// changes through `on_ready`. Returns only when the container must be restarted, with why.
pub async fn watch(
    c: &Container,
    start: Instant,
    mut on_ready: impl FnMut(bool, String),
) -> String {
    let mut set = ProbeSet::new(c);
    let probes: Vec<(ProbeKind, &Probe)> = [
        (ProbeKind::Startup, c.startup_probe.as_ref()),
        (ProbeKind::Liveness, c.liveness_probe.as_ref()),
        (ProbeKind::Readiness, c.readiness_probe.as_ref()),
    ]
    .into_iter()
    .filter_map(|(k, p)| p.map(|p| (k, p)))
    .collect();
    let first_due = |p: &Probe, now: Instant| {
        (start + Duration::from_secs(p.initial_delay_seconds.into())).max(now)
    };
    let now = Instant::now();
    let mut due: Vec<Option<Instant>> = probes
        .iter()
        .map(|(k, p)| set.active(*k).then(|| first_due(p, now)))
        .collect();
    loop {
        let Some(next) = due.iter().flatten().min().copied() else {
            // Nothing left to probe (startup done, no liveness/readiness): never restart.
            return std::future::pending().await;
        };
        tokio::time::sleep_until(next).await;
        for i in 0..probes.len() {
            let (kind, probe) = probes[i];
            if due[i].is_none_or(|d| d > Instant::now()) {
                continue;
            }
            let result = check(probe).await;
            if let Err(why) = &result {
                tracing::debug!(container = %c.name, ?kind, %why, "probe failed");
            }
            due[i] = Some(Instant::now() + Duration::from_secs(probe.period_seconds.max(1).into()));
            for action in set.record(kind, &result) {
                match action {
                    Action::Restart { message } => return message,
                    Action::Ready { ready, message } => on_ready(ready, message),
                    Action::Started => {
                        let now = Instant::now();
                        for (j, (k, p)) in probes.iter().enumerate() {
                            due[j] = set.active(*k).then(|| first_due(p, now));
                        }
                    }
                }
            }
        }
    }
}

/// Runs one probe within its timeout; `Err` says why it failed, kubelet-style.
pub async fn check(p: &Probe) -> Result<(), String> {
    let timeout = Duration::from_secs(p.timeout_seconds.max(1).into());
    let attempt = async {
        if let Some(h) = &p.http_get {
            http_get(h.host.as_deref().unwrap_or("127.0.0.1"), h.port, &h.path).await
        } else if let Some(t) = &p.tcp_socket {
            let host = t.host.as_deref().unwrap_or("127.0.0.1");
            tokio::net::TcpStream::connect((host, t.port))
                .await
                .map(drop)
                .map_err(|e| format!("dial tcp {host}:{}: {e}", t.port))
        } else {
            Err("the probe has no httpGet or tcpSocket action".to_string())
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("timeout: no answer within {}s", timeout.as_secs())),
    }
}

/// The longest status line read; anything longer is not HTTP.
const MAX_STATUS_LINE: usize = 4096;

async fn http_get(host: &str, port: u16, path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!("invalid probe path {path:?}"));
    }
    let mut stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("Get \"http://{host}:{port}{path}\": dial tcp: {e}"))?;
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: edge-probe/1.0\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        if buf.len() >= MAX_STATUS_LINE {
            return Err("the answer is not HTTP (no status line)".into());
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let code = parse_status_line(&buf)?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// The status code of `HTTP/1.x NNN reason`.
pub fn parse_status_line(bytes: &[u8]) -> Result<u16, String> {
    let line_end = bytes
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or("the connection closed before an HTTP status line")?;
    let line =
        std::str::from_utf8(&bytes[..line_end]).map_err(|_| "the status line is not text")?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 answer: {line:?}"));
    }
    match code.parse::<u16>() {
        Ok(c) if code.len() == 3 => Ok(c),
        _ => Err(format!("bad HTTP status line {line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_api::workload::TcpSocketAction;

    fn probe(success: u32, failure: u32) -> Probe {
        Probe {
            tcp_socket: Some(TcpSocketAction {
                port: 1,
                host: None,
            }),
            success_threshold: success,
            failure_threshold: failure,
            ..Default::default()
        }
    }

    const OK: Result<(), String> = Ok(());

    fn fail() -> Result<(), String> {
        Err("connection refused".into())
    }

    #[test]
    fn threshold_counts_consecutive_results() {
        let mut t = Threshold::new(&probe(2, 3));
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true));
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None, "a success resets the failure count");
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true));
    }

    #[test]
    fn liveness_restarts_after_the_failure_threshold() {
        let c = Container {
            liveness_probe: Some(probe(1, 3)),
            ..Default::default()
        };
        let mut s = ProbeSet::new(&c);
        assert!(s.ready_when_running());
        assert!(s.record(ProbeKind::Liveness, &OK).is_empty());
        assert!(s.record(ProbeKind::Liveness, &fail()).is_empty());
        assert!(s.record(ProbeKind::Liveness, &fail()).is_empty());
        assert_eq!(
            s.record(ProbeKind::Liveness, &fail()),
            vec![Action::Restart {
                message: "Liveness probe failed: connection refused".into()
            }]
        );
    }

    #[test]
    fn startup_gates_liveness_and_readiness() {
        let c = Container {
            startup_probe: Some(probe(1, 2)),
            liveness_probe: Some(probe(1, 1)),
            readiness_probe: Some(probe(1, 1)),
            ..Default::default()
        };
        let mut s = ProbeSet::new(&c);
        assert!(!s.ready_when_running());
        assert!(s.active(ProbeKind::Startup));
        assert!(!s.active(ProbeKind::Liveness));
        // Before startup succeeds, liveness results do not count.
        assert!(s.record(ProbeKind::Liveness, &fail()).is_empty());
        assert!(s.record(ProbeKind::Startup, &fail()).is_empty());
        assert_eq!(s.record(ProbeKind::Startup, &OK), vec![Action::Started]);
        assert!(!s.active(ProbeKind::Startup));
        assert!(s.active(ProbeKind::Readiness));
        assert_eq!(
            s.record(ProbeKind::Readiness, &OK),
            vec![Action::Ready {
                ready: true,
                message: String::new()
            }]
        );
        assert_eq!(
            s.record(ProbeKind::Readiness, &fail()),
            vec![Action::Ready {
                ready: false,
                message: "Readiness probe failed: connection refused".into()
            }]
        );
        assert!(matches!(
            s.record(ProbeKind::Liveness, &fail()).as_slice(),
            [Action::Restart { .. }]
        ));
    }

    #[test]
    fn startup_failure_restarts_and_success_without_readiness_makes_ready() {
        let c = Container {
            startup_probe: Some(probe(1, 2)),
            ..Default::default()
        };
        let mut s = ProbeSet::new(&c);
        assert!(s.record(ProbeKind::Startup, &fail()).is_empty());
        assert_eq!(
            s.record(ProbeKind::Startup, &fail()),
            vec![Action::Restart {
                message: "Startup probe failed: connection refused".into()
            }]
        );
        let mut s = ProbeSet::new(&c);
        assert_eq!(
            s.record(ProbeKind::Startup, &OK),
            vec![
                Action::Started,
                Action::Ready {
                    ready: true,
                    message: String::new()
                }
            ]
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Ok(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503\r\nx"), Ok(503));
        assert!(parse_status_line(b"HTTP/1.1 200 OK").is_err());
        assert!(parse_status_line(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_status_line(b"HTTP/1.1 20x OK\r\n").is_err());
    }

    #[tokio::test]
    async fn http_and_tcp_checks_against_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for status in ["200 OK", "500 Internal Server Error"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        let mut p = Probe {
            http_get: Some(edge_api::workload::HttpGetAction {
                path: "/healthz".into(),
                port,
                host: None,
            }),
            ..Default::default()
        };
        assert_eq!(check(&p).await, Ok(()));
        assert_eq!(
            check(&p).await,
            Err("HTTP probe failed with statuscode: 500".into())
        );
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = open.local_addr().unwrap().port();
        p.http_get = None;
        p.tcp_socket = Some(TcpSocketAction { port, host: None });
        assert_eq!(check(&p).await, Ok(()));
        drop(open);
        assert!(check(&p).await.unwrap_err().contains("dial tcp"));
    }
}
