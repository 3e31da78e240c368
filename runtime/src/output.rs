//! Guest stdout/stderr: wasmtime-wasi stream implementations that forward each write to an [`OutputSink`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

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
