//! An HTTP/1.1 server for one handler on a TCP listener (hyper), adding `x-forwarded-for`; it stops all connections when dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::HttpHandler;

/// A client that does not finish sending its request head in this time is disconnected
/// (slowloris); the handler's own deadline starts once the head is in.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

impl HttpHandler {
    /// Accepts connections on `listener` and serves their requests until this future is
    /// dropped (or its task aborted), which also closes every connection it accepted.
    pub async fn serve(&self, listener: TcpListener) {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(serve_connection(self.clone(), stream, peer));
                    }
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "accepting an HTTP connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                // Reap finished connections so the set does not grow without bound.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }
}

async fn serve_connection(handler: HttpHandler, stream: TcpStream, peer: SocketAddr) {
    // Small responses go out at once instead of waiting for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    // Formatted once per connection, not per request.
    let client = client_address(peer);
    let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        add_forwarded_for(request.headers_mut(), client.as_ref());
        async move { Ok::<_, Infallible>(handler.handle(request).await) }
    });
    let result = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// The client's address as an `x-forwarded-for` value.
fn client_address(peer: SocketAddr) -> Option<HeaderValue> {
    HeaderValue::from_str(&peer.ip().to_string()).ok()
}

/// Records the client's address unless a proxy in front of us already did.
fn add_forwarded_for(headers: &mut hyper::HeaderMap, client: Option<&HeaderValue>) {
    if let Some(client) = client {
        if !headers.contains_key(&X_FORWARDED_FOR) {
            headers.insert(X_FORWARDED_FOR, client.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_added_once() {
        let client = client_address("192.0.2.7:5000".parse().unwrap());
        let mut headers = hyper::HeaderMap::new();
        add_forwarded_for(&mut headers, client.as_ref());
        assert_eq!(headers[&X_FORWARDED_FOR], "192.0.2.7");
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.1"));
        add_forwarded_for(&mut headers, client.as_ref());
        assert_eq!(headers[&X_FORWARDED_FOR], "203.0.113.1");
        let v6 = client_address("[2001:db8::1]:443".parse().unwrap());
        assert_eq!(
            v6.as_ref().map(|v| v.to_str().unwrap()),
            Some("2001:db8::1")
        );
    }
}
