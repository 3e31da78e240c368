//! Shared helpers for the runtime tests: fixtures from examples/components, an output collector, a minimal HTTP client.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use edge_runtime::{
    AllocatorPreference, CommandSpec, HttpHandler, LoadedComponent, OutputSink, OutputStream,
    Runtime, RuntimeConfig,
};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};

/// Reads a fixture, failing loudly (not skipping) when the components were not built.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/components")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; build the guest components first with scripts/build-modules.sh",
            path.display()
        )
    })
}

pub fn digest_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Collects guest output per stream.
#[derive(Default)]
pub struct Captured {
    stdout: Mutex<Vec<u8>>,
    stderr: Mutex<Vec<u8>>,
}

impl Captured {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
    pub fn stdout_len(&self) -> usize {
        self.stdout.lock().unwrap().len()
    }
}

impl OutputSink for Captured {
    fn write(&self, stream: OutputStream, bytes: &[u8]) {
        let buf = match stream {
            OutputStream::Stdout => &self.stdout,
            OutputStream::Stderr => &self.stderr,
        };
        buf.lock().unwrap().extend_from_slice(bytes);
    }
}

pub fn runtime(dir: &tempfile::TempDir) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: dir.path().join("cache"),
    })
    .expect("runtime")
}

pub fn runtime_with(dir: &tempfile::TempDir, preference: AllocatorPreference) -> Runtime {
    Runtime::with_allocator(
        RuntimeConfig {
            cache_dir: dir.path().join("cache"),
        },
        preference,
    )
    .expect("runtime")
}

pub async fn load(rt: &Runtime, name: &str) -> LoadedComponent {
    let wasm = fixture(name);
    rt.load(&digest_of(&wasm), &wasm)
        .await
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

pub fn spec(args: &[&str]) -> CommandSpec {
    CommandSpec {
        args: args.iter().map(|s| s.to_string()).collect(),
        ..CommandSpec::default()
    }
}

/// Serves `handler` on a fresh loopback port; the server stops when the task is aborted.
pub async fn serve(handler: &HttpHandler) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = handler.clone();
    let task = tokio::spawn(async move { handler.serve(listener).await });
    (addr, task)
}

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// One HTTP/1.1 request on a new connection with hyper's client.
pub async fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    let response = match body {
        Some(body) => {
            let req = builder
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap();
            sender.send_request(req).await
        }
        None => {
            let req = builder.body(Full::new(Bytes::new())).unwrap();
            sender.send_request(req).await
        }
    }
    .expect("response");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Reply {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, None).await
}

/// A free loopback port (bound and released; fine for tests).
pub async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Waits for a value from a broadcast receiver, with a timeout.
pub async fn next<T: Clone>(rx: &mut tokio::sync::broadcast::Receiver<T>, wait: Duration) -> T {
    tokio::time::timeout(wait, rx.recv())
        .await
        .expect("timed out waiting for a failure report")
        .expect("failure channel closed")
}
