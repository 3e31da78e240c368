//! Guest stdout/stderr: wasmtime-wasi stream implementations that forward each write to an [`OutputSink`], through a per-instance rate cap.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{self, StreamResult};

/// Which guest stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Receives guest output as it is written (not buffered until exit), so that logs of a
/// long-running pod are visible while it runs.
///
/// `write` is called synchronously from inside the guest's write call, so it must be quick
/// and must not block (append to a buffer or a channel, do not do network I/O).
pub trait OutputSink: Send + Sync + 'static {
    fn write(&self, stream: OutputStream, bytes: &[u8]);
}

/// The output rate cap when the spec does not set one: 1 MiB/s per instance.
pub const DEFAULT_OUTPUT_BYTES_PER_SEC: u64 = 1024 * 1024;

/// While output is being dropped, how often the sink is told how much.
const NOTICE_INTERVAL: Duration = Duration::from_secs(1);

/// A token bucket in front of a sink: an instance may write `rate` bytes per second, with
/// bursts of up to one second's worth. Excess output is dropped (never blocks the guest,
/// which would let a flood hold a pod's other work hostage), and the sink gets a line
/// `[edge: output rate limit exceeded, N bytes dropped]` on stderr about once per second
/// while dropping, and once more when it is dropped (the instance ended).
///
/// Host notices (denied network access) go through [`RateLimitedSink::notice`], outside the
/// budget but themselves limited, so a guest cannot use denials to flood the log.
pub(crate) struct RateLimitedSink {
    sink: Arc<dyn OutputSink>,
    rate: f64,
    state: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Bytes dropped and not yet reported.
    dropped: u64,
    /// When the current unreported episode of dropping began.
    dropping_since: Option<Instant>,
    /// Whether the last byte written to stderr ended a line (notices start on a new line).
    stderr_at_line_start: bool,
    /// Host notices left in the current second.
    notices_left: u32,
    notices_window: Instant,
}

/// Host notices allowed per second; more are counted in the log only.
const NOTICES_PER_SEC: u32 = 5;

impl RateLimitedSink {
    /// `bytes_per_sec`: `None` for [`DEFAULT_OUTPUT_BYTES_PER_SEC`].
    pub(crate) fn new(sink: Arc<dyn OutputSink>, bytes_per_sec: Option<u64>) -> Arc<Self> {
        let rate = bytes_per_sec.unwrap_or(DEFAULT_OUTPUT_BYTES_PER_SEC) as f64;
        let now = Instant::now();
        Arc::new(RateLimitedSink {
            sink,
            rate,
            state: Mutex::new(Bucket {
                tokens: rate,
                refilled: now,
                dropped: 0,
                dropping_since: None,
                stderr_at_line_start: true,
                notices_left: NOTICES_PER_SEC,
                notices_window: now,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        // A panic in a sink while holding the lock leaves only counters behind: keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes a host line (e.g. a denied connection) to the guest's stderr; returns false
    /// when this second's notice budget is spent and the line was skipped.
    pub(crate) fn notice(&self, line: &str) -> bool {
        let mut bucket = self.lock();
        let now = Instant::now();
        if now.duration_since(bucket.notices_window) >= NOTICE_INTERVAL {
            bucket.notices_window = now;
            bucket.notices_left = NOTICES_PER_SEC;
        }
        if bucket.notices_left == 0 {
            return false;
        }
        bucket.notices_left -= 1;
        self.write_line(&mut bucket, line);
        true
    }

    fn write_line(&self, bucket: &mut Bucket, line: &str) {
        let mut text = String::with_capacity(line.len() + 2);
        if !bucket.stderr_at_line_start {
            text.push('\n');
        }
        text.push_str(line);
        text.push('\n');
        self.sink.write(OutputStream::Stderr, text.as_bytes());
        bucket.stderr_at_line_start = true;
    }

    fn report_dropped(&self, bucket: &mut Bucket) {
        if bucket.dropped == 0 {
            return;
        }
        let line = format!(
            "[edge: output rate limit exceeded, {} bytes dropped]",
            bucket.dropped
        );
        bucket.dropped = 0;
        bucket.dropping_since = None;
        self.write_line(bucket, &line);
    }
}

impl Drop for RateLimitedSink {
    /// The instance is gone (run finished, future dropped, handler dropped): report what
    /// was dropped since the last notice.
    fn drop(&mut self) {
        let mut bucket = self.lock();
        self.report_dropped(&mut bucket);
    }
}

impl OutputSink for RateLimitedSink {
    fn write(&self, stream: OutputStream, bytes: &[u8]) {
        let mut bucket = self.lock();
        let now = Instant::now();
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.rate);
        bucket.refilled = now;

        if bucket
            .dropping_since
            .is_some_and(|since| now.duration_since(since) >= NOTICE_INTERVAL)
        {
            self.report_dropped(&mut bucket);
        }

        // Pass what the budget allows (a prefix: a write larger than the whole budget would
        // otherwise never get through), drop the rest.
        let allowed = (bucket.tokens.max(0.0) as usize).min(bytes.len());
        if allowed > 0 {
            let passed = &bytes[..allowed];
            self.sink.write(stream, passed);
            bucket.tokens -= allowed as f64;
            if stream == OutputStream::Stderr {
                bucket.stderr_at_line_start = passed.last() == Some(&b'\n');
            }
        }
        let dropped = (bytes.len() - allowed) as u64;
        if dropped > 0 {
            bucket.dropped += dropped;
            bucket.dropping_since.get_or_insert(now);
        }
    }
}

/// How much the guest may write in one go; the sink takes everything immediately, so
/// this only bounds the size of a single host call.
const WRITE_BUDGET: usize = 64 * 1024;

/// A WASI stdout/stderr that forwards to a sink. Each guest handle gets its own
/// [`SinkWriter`], all of them pointing at the same sink.
#[derive(Clone)]
pub(crate) struct SinkStdio {
    sink: Arc<dyn OutputSink>,
    stream: OutputStream,
}

impl SinkStdio {
    pub(crate) fn new(sink: Arc<dyn OutputSink>, stream: OutputStream) -> Self {
        SinkStdio { sink, stream }
    }

    fn writer(&self) -> SinkWriter {
        SinkWriter {
            sink: Arc::clone(&self.sink),
            stream: self.stream,
        }
    }
}

impl IsTerminal for SinkStdio {
    fn is_terminal(&self) -> bool {
        // Pod logs are never a terminal; guests should not emit colour codes.
        false
    }
}

impl StdoutStream for SinkStdio {
    fn p2_stream(&self) -> Box<dyn p2::OutputStream> {
        Box::new(self.writer())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }
}

/// One guest-visible handle on a sink.
struct SinkWriter {
    sink: Arc<dyn OutputSink>,
    stream: OutputStream,
}

impl p2::OutputStream for SinkWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if !bytes.is_empty() {
            self.sink.write(self.stream, &bytes);
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Nothing is buffered here: every write already reached the sink.
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[async_trait::async_trait]
impl p2::Pollable for SinkWriter {
    async fn ready(&mut self) {
        // Always ready: the sink never applies backpressure.
    }
}

impl AsyncWrite for SinkWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !buf.is_empty() {
            self.sink.write(self.stream, buf);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<(OutputStream, Vec<u8>)>>);

    impl OutputSink for Collect {
        fn write(&self, stream: OutputStream, bytes: &[u8]) {
            self.0.lock().unwrap().push((stream, bytes.to_vec()));
        }
    }

    impl Collect {
        fn bytes(&self, stream: OutputStream) -> Vec<u8> {
            let chunks = self.0.lock().unwrap();
            chunks
                .iter()
                .filter(|(s, _)| *s == stream)
                .flat_map(|(_, b)| b.clone())
                .collect()
        }
    }

    #[test]
    fn excess_is_dropped_and_reported_once_at_the_end() {
        let sink = Arc::new(Collect::default());
        let limited = RateLimitedSink::new(sink.clone(), Some(1000));
        limited.write(OutputStream::Stderr, b"partial line");
        limited.write(OutputStream::Stdout, &[b'a'; 600]);
        limited.write(OutputStream::Stdout, &[b'b'; 600]);
        drop(limited);
        let stdout = sink.bytes(OutputStream::Stdout);
        // The burst budget is one second's worth, shared by both streams; the rest of the
        // last write is dropped (a tiny refill may slip in between the writes).
        assert!((988..1000).contains(&stdout.len()), "{}", stdout.len());
        let stderr = String::from_utf8(sink.bytes(OutputStream::Stderr)).unwrap();
        // The notice starts on a line of its own.
        assert!(
            stderr.starts_with("partial line\n[edge: output rate limit exceeded, ")
                && stderr.ends_with(" bytes dropped]\n"),
            "{stderr:?}"
        );
    }

    #[test]
    fn under_the_rate_nothing_is_dropped_or_reported() {
        let sink = Arc::new(Collect::default());
        let limited = RateLimitedSink::new(sink.clone(), None);
        for _ in 0..10 {
            limited.write(OutputStream::Stdout, b"hello\n");
        }
        drop(limited);
        assert_eq!(sink.bytes(OutputStream::Stdout).len(), 60);
        assert!(sink.bytes(OutputStream::Stderr).is_empty());
    }

    #[test]
    fn host_notices_are_limited_too() {
        let sink = Arc::new(Collect::default());
        let limited = RateLimitedSink::new(sink.clone(), None);
        for i in 0..100 {
            limited.notice(&format!("[edge: notice {i}]"));
        }
        let stderr = String::from_utf8(sink.bytes(OutputStream::Stderr)).unwrap();
        assert_eq!(stderr.lines().count(), NOTICES_PER_SEC as usize, "{stderr}");
    }
}
