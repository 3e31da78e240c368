//! HTTP/1 through the proxy, one request at a time so that each is balanced on its own: the
//! client's address is added (`X-Forwarded-For`, `Forwarded`), a backend that is a wasi:http
//! pod on this node gets the request straight from memory (no TCP hop), others over pooled
//! connections. A request that was not sent (connect failed, pooled connection closed) goes to
//! the next endpoint; an idempotent request without a body is also sent again when a backend
//! dies before answering (a pod killed mid-request).

use super::table::RouteKey;
use super::Proxy;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tracing::debug;

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Bodies sent to backends and to clients, whatever their source.
pub(super) type ReqBody = UnsyncBoxBody<Bytes, BoxError>;
pub(super) type RespBody = UnsyncBoxBody<Bytes, BoxError>;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Serves the client's connection; closes it gracefully when the service goes away.
pub(super) async fn serve(proxy: Proxy, key: RouteKey, stream: TcpStream, peer: SocketAddr) {
    let mut table = proxy.subscribe();
    let (p, k) = (proxy.clone(), key.clone());
    let service = hyper::service::service_fn(move |req| {
        let (proxy, key) = (p.clone(), k.clone());
        async move { Ok::<_, Infallible>(handle(&proxy, &key, peer, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // A client may end its side after the request and still wait for the answer.
        .half_close(true)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut watching = true;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(route = %key, %peer, error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            changed = table.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                } else if table.borrow_and_update().get(&key).is_none() {
                    conn.as_mut().graceful_shutdown();
                    watching = false;
                }
            }
        }
    }
}

async fn handle(
    proxy: &Proxy,
    key: &RouteKey,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<RespBody> {
    let Some(route) = proxy.table().get(key).cloned() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("service {key} is gone\n"),
        );
    };
    strip_hop_by_hop(req.headers_mut());
    add_forwarded(req.headers_mut(), peer);
    let replay = Replay::of(&req);
    let mut pending = Pending::Original(req);
    let mut last_error = String::from("it has no ready endpoints");
    for i in proxy.order(&route, peer.ip()) {
        let backend = &route.backends[i];
        if backend.local {
            if let Some(handler) = proxy.local_handler(backend.addr.port()) {
                if let Pending::Original(req) = pending {
                    // The pod runs in this process: hand the request over, no socket involved.
                    let resp = handler.handle(req).await;
                    return response(resp.map(|b| b.map_err(BoxError::from).boxed_unsync()));
                }
            }
        }
        let req = match pending.take(&replay) {
            Some(r) => r,
            None => break,
        };
        match send(proxy, backend.addr, req).await {
            Ok(resp) => {
                return response(resp.map(|b| b.map_err(BoxError::from).boxed_unsync()));
            }
            Err(Failed::NotSent(req, why)) => {
                debug!(route = %key, backend = %backend.addr, pod = %backend.pod, %why, "request not sent; trying the next endpoint");
                last_error = why;
                pending = Pending::Boxed(*req);
            }
            Err(Failed::Sent(why)) => {
                debug!(route = %key, backend = %backend.addr, pod = %backend.pod, %why, "backend failed mid-request");
                last_error = why;
                pending = Pending::Consumed;
            }
        }
    }
    text(
        StatusCode::BAD_GATEWAY,
        &format!("no endpoint of service {key} answered: {last_error}\n"),
    )
}

/// The request as it is between attempts.
enum Pending {
    /// Not tried yet: still the client's own request (a local handler takes only that).
    Original(Request<Incoming>),
    /// Returned unsent by a backend.
    Boxed(Request<ReqBody>),
    /// Sent and lost with its body; only a replay can go again.
    Consumed,
}

impl Pending {
    fn take(&mut self, replay: &Option<Replay>) -> Option<Request<ReqBody>> {
        match std::mem::replace(self, Pending::Consumed) {
            Pending::Original(r) => Some(r.map(|b| b.map_err(BoxError::from).boxed_unsync())),
            Pending::Boxed(r) => Some(r),
            Pending::Consumed => replay.as_ref().map(Replay::build),
        }
    }
}

/// What it takes to send a request again: kept only for idempotent requests without a body.
struct Replay {
    method: Method,
    uri: hyper::Uri,
    version: hyper::Version,
    headers: HeaderMap,
}

impl Replay {
    fn of(req: &Request<Incoming>) -> Option<Replay> {
        let idempotent = matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        let h = req.headers();
        let bodyless = !h.contains_key(hyper::header::TRANSFER_ENCODING)
            && h.get(hyper::header::CONTENT_LENGTH)
                .is_none_or(|v| v.as_bytes() == b"0");
        (idempotent && bodyless).then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
        })
    }

    fn build(&self) -> Request<ReqBody> {
        let mut req = Request::new(Empty::<Bytes>::new().map_err(BoxError::from).boxed_unsync());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

enum Failed {
    NotSent(Box<Request<ReqBody>>, String),
    Sent(String),
}

async fn send(
    proxy: &Proxy,
    addr: SocketAddr,
    req: Request<ReqBody>,
) -> Result<Response<Incoming>, Failed> {
    let mut sender = match proxy.inner.pool.take(addr) {
        Some(s) => s,
        None => match connect(addr).await {
            Ok(s) => {
                proxy.note_success(addr);
                s
            }
            Err(why) => {
                proxy.note_failure(addr);
                return Err(Failed::NotSent(Box::new(req), why));
            }
        },
    };
    match sender.try_send_request(req).await {
        Ok(resp) => {
            let proxy = proxy.clone();
            tokio::spawn(async move {
                // Ready again once this response has been read to the end.
                if sender.ready().await.is_ok() {
                    proxy.inner.pool.put(addr, sender);
                }
            });
            Ok(resp)
        }
        Err(mut e) => match e.take_message() {
            Some(req) => Err(Failed::NotSent(Box::new(req), e.into_error().to_string())),
            None => Err(Failed::Sent(e.into_error().to_string())),
        },
    }
}

async fn connect(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<ReqBody>, String> {
    let stream = tokio::time::timeout(super::tcp::CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect to {addr} timed out"))?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!(backend = %addr, error = %e, "backend connection ended with an error");
        }
    });
    Ok(sender)
}

fn response(mut resp: Response<RespBody>) -> Response<RespBody> {
    strip_hop_by_hop(resp.headers_mut());
    resp
}

/// Headers about one connection, not the message (RFC 9110 7.6.1), plus those it names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "te",
        "trailer",
    ] {
        headers.remove(n);
    }
}

/// Appends the client to `X-Forwarded-For` and `Forwarded` (RFC 7239), as proxies in a chain do.
pub(super) fn add_forwarded(headers: &mut HeaderMap, peer: SocketAddr) {
    let ip = peer.ip().to_canonical();
    let append = |headers: &mut HeaderMap, name: HeaderName, value: String| {
        let joined = match headers.get(&name).and_then(|v| v.to_str().ok()) {
            Some(old) if !old.is_empty() => format!("{old}, {value}"),
            _ => value,
        };
        if let Ok(v) = HeaderValue::from_str(&joined) {
            headers.insert(name, v);
        }
    };
    append(headers, X_FORWARDED_FOR, ip.to_string());
    let node = if ip.is_ipv6() {
        format!("\"[{ip}]\"")
    } else {
        ip.to_string()
    };
    append(headers, FORWARDED, format!("for={node};proto=http"));
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
}

fn text(status: StatusCode, message: &str) -> Response<RespBody> {
    let body = Full::new(Bytes::from(message.to_string()))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_append_the_client() {
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, "192.0.2.7:5000".parse().unwrap());
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["forwarded"], "for=192.0.2.7;proto=http");
        assert_eq!(h["x-forwarded-proto"], "http");
        add_forwarded(&mut h, "[2001:db8::1]:80".parse().unwrap());
        assert_eq!(h["x-forwarded-for"], "192.0.2.7, 2001:db8::1");
        assert_eq!(
            h["forwarded"],
            "for=192.0.2.7;proto=http, for=\"[2001:db8::1]\";proto=http"
        );
    }

    #[test]
    fn hop_by_hop_headers_do_not_cross_the_proxy() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("content-length", HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["content-length"]);
    }
}
