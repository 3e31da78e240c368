//! Opaque TCP through the proxy: connect to a backend (local first, round robin, the next one
//! when a connect fails), optionally announce the client with a PROXY v2 header, then copy both
//! ways. When the backend leaves the service, the connection drains instead of being cut: no
//! more bytes from the client, the backend sees end of input and may finish its answer, which
//! still reaches the client (for a bounded time), then both sides get a clean close.

use super::table::{Route, RouteKey};
use super::{proxyproto, Proxy};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, warn};

/// A backend that does not accept within this time is skipped for the next one.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a removed backend may keep answering on an open connection.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Copy buffers start small (many idle connections on a small box) and grow while reads fill
/// them (a bulk transfer), up to the largest.
const BUFFER_FIRST: usize = 16 << 10;
const BUFFER_MAX: usize = 256 << 10;

/// The buffer size after a read of `n` bytes into `len`: doubled when the read filled it.
fn next_buffer_len(len: usize, n: usize) -> usize {
    if n == len {
        (len * 2).min(BUFFER_MAX)
    } else {
        len
    }
}

pub(super) async fn forward(
    proxy: &Proxy,
    route: Arc<Route>,
    client: TcpStream,
    peer: SocketAddr,
    proxy_protocol: bool,
) {
    let Some((mut backend, addr)) = connect(proxy, &route, peer).await else {
        warn!(route = %route.key, %peer, backends = route.backends.len(), "no endpoint accepted the connection");
        return;
    };
    if proxy_protocol {
        let local = client.local_addr().unwrap_or(peer);
        if backend
            .write_all(&proxyproto::header(peer, local))
            .await
            .is_err()
        {
            return;
        }
    }
    splice(proxy, &route.key, client, backend, addr).await;
}

/// Connects to the first backend that accepts, in the balancer's order.
pub(super) async fn connect(
    proxy: &Proxy,
    route: &Route,
    peer: SocketAddr,
) -> Option<(TcpStream, SocketAddr)> {
    for i in proxy.order(route, peer.ip()) {
        let b = &route.backends[i];
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(b.addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                proxy.note_success(b.addr);
                return Some((stream, b.addr));
            }
            Ok(Err(e)) => {
                debug!(route = %route.key, backend = %b.addr, pod = %b.pod, error = %e, "connect failed; trying the next endpoint")
            }
            Err(_) => {
                debug!(route = %route.key, backend = %b.addr, pod = %b.pod, "connect timed out; trying the next endpoint")
            }
        }
        proxy.note_failure(b.addr);
    }
    None
}

async fn splice(
    proxy: &Proxy,
    key: &RouteKey,
    client: TcpStream,
    backend: TcpStream,
    addr: SocketAddr,
) {
    let (client_read, client_write) = client.into_split();
    let (backend_read, backend_write) = backend.into_split();
    let (draining_tx, draining) = watch::channel(false);
    let table = proxy.subscribe();
    let up = upstream(client_read, backend_write, table, key, addr, draining_tx);
    let down = downstream(backend_read, client_write, draining);
    tokio::join!(up, down);
}

/// Client to backend, until the client ends its side or the backend is removed.
async fn upstream(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut table: watch::Receiver<Arc<super::table::RoutingTable>>,
    key: &RouteKey,
    addr: SocketAddr,
    draining: watch::Sender<bool>,
) {
    let mut buf = vec![0u8; BUFFER_FIRST];
    // Armed once, not per read: the copy loop stays a plain read/write.
    let removed = backend_removed(&mut table, key, addr);
    tokio::pin!(removed);
    loop {
        tokio::select! {
            biased;
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    buf.resize(next_buffer_len(buf.len(), n), 0);
                }
            },
            () = &mut removed => {
                debug!(route = %key, backend = %addr, "endpoint removed; draining its connection");
                let _ = draining.send(true);
                break;
            }
        }
    }
    let _ = to.shutdown().await;
}

/// Resolves when `addr` is no longer a backend of `key` (never once the proxy is gone).
async fn backend_removed(
    table: &mut watch::Receiver<Arc<super::table::RoutingTable>>,
    key: &RouteKey,
    addr: SocketAddr,
) {
    loop {
        if table.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        if !table.borrow_and_update().has_backend(key, addr) {
            return;
        }
    }
}

/// Backend to client, until the backend ends its side (or the drain time runs out).
async fn downstream(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut draining: watch::Receiver<bool>,
) {
    let copy = async {
        let mut buf = vec![0u8; BUFFER_FIRST];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    buf.resize(next_buffer_len(buf.len(), n), 0);
                }
            }
        }
    };
    let deadline = async {
        if draining.wait_for(|d| *d).await.is_err() {
            // The client ended normally: the backend may take its time to answer.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        () = copy => {}
        () = deadline => {}
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_grow_only_while_reads_fill_them() {
        assert_eq!(next_buffer_len(BUFFER_FIRST, 100), BUFFER_FIRST);
        assert_eq!(
            next_buffer_len(BUFFER_FIRST, BUFFER_FIRST),
            2 * BUFFER_FIRST
        );
        assert_eq!(next_buffer_len(BUFFER_MAX, BUFFER_MAX), BUFFER_MAX);
    }
}
