//! `http-relay`: a wasi:http handler that says who it is and who called it, and calls other
//! services (the service-routing test fixture and example).
//!
//! Routes:
//! - `GET /`: `pod=<POD_NAME>` and the client-address headers it received (`x-forwarded-for`,
//!   `forwarded`) and `host`.
//! - `GET /call?url=http://web/path`: makes an outgoing request and answers with the upstream
//!   status and body (502 with the host's error code when it fails).
//! - `GET /call-env?service=WEB&path=/`: the same to `http://$WEB_SERVICE_HOST:$WEB_SERVICE_PORT`.
//! - `GET /healthz`: 200; `GET /unready`: 503 (a readiness probe that never passes).

use std::io::{Read as _, Write as _};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

struct Relay;

wasip2::http::proxy::export!(Relay);

impl wasip2::exports::http::incoming_handler::Guest for Relay {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (path, query) = match path_with_query.split_once('?') {
            Some((path, query)) => (path.to_string(), query.to_string()),
            None => (path_with_query, String::new()),
        };
        match (request.method(), path.as_str()) {
            (Method::Get, "/") => whoami(&request, out),
            (Method::Get, "/call") => match param(&query, "url") {
                Some(url) => call(&url, out),
                None => respond(out, 400, b"missing ?url=\n"),
            },
            (Method::Get, "/call-env") => call_env(&query, out),
            (Method::Get, "/healthz") => respond(out, 200, b"ok\n"),
            (Method::Get, "/unready") => respond(out, 503, b"not ready\n"),
            _ => respond(out, 404, b"not found\n"),
        }
    }
}

fn whoami(request: &IncomingRequest, out: ResponseOutparam) {
    let pod = std::env::var("POD_NAME").unwrap_or_else(|_| "unknown".into());
    let mut body = format!("pod={pod}\n");
    let headers = request.headers();
    for name in ["x-forwarded-for", "forwarded", "host"] {
        for value in headers.get(name) {
            body.push_str(&format!("{name}={}\n", String::from_utf8_lossy(&value)));
        }
    }
    respond(out, 200, body.as_bytes());
}

fn call_env(query: &str, out: ResponseOutparam) {
    let Some(service) = param(query, "service") else {
        respond(out, 400, b"missing ?service=\n");
        return;
    };
    let path = param(query, "path").unwrap_or_else(|| "/".into());
    let (host, port) = (
        std::env::var(format!("{service}_SERVICE_HOST")),
        std::env::var(format!("{service}_SERVICE_PORT")),
    );
    match (host, port) {
        (Ok(host), Ok(port)) => call(&format!("http://{host}:{port}{path}"), out),
        _ => respond(
            out,
            500,
            format!("{service}_SERVICE_HOST/_PORT are not set\n").as_bytes(),
        ),
    }
}

fn call(url: &str, out: ResponseOutparam) {
    match fetch(url) {
        Ok((status, body)) => {
            let mut text = format!("upstream status: {status}\n").into_bytes();
            text.extend_from_slice(&body);
            respond(out, 200, &text);
        }
        Err(e) => respond(out, 502, format!("error: {e}\n").as_bytes()),
    }
}

/// GET `url`: its status and body.
fn fetch(url: &str) -> Result<(u16, Vec<u8>), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("url must be scheme://authority/path")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let scheme = if scheme == "https" {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let request = OutgoingRequest::new(Fields::new());
    let ok = request.set_scheme(Some(&scheme)).is_ok()
        && request.set_authority(Some(authority)).is_ok()
        && request.set_path_with_query(Some(path)).is_ok();
    if !ok {
        return Err("invalid url parts".into());
    }
    let future = outgoing_handler::handle(request, None).map_err(|c| format!("{c:?}"))?;
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(format!("{code:?}")),
        Some(Err(())) | None => return Err("response future failed".into()),
    };
    let status = response.status();
    let mut body = Vec::new();
    if let Ok(incoming) = response.consume() {
        if let Ok(mut stream) = incoming.stream() {
            stream
                .read_to_end(&mut body)
                .map_err(|e| format!("reading the body: {e}"))?;
        }
    }
    Ok((status, body))
}

/// The value of `key` in a query string, `%XX`-decoded.
fn param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
        .map(percent_decode)
}

fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
    let _ = headers.set("content-length", &[body.len().to_string().into_bytes()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(mut stream) = outgoing.write() {
        let _ = stream.write_all(body);
        let _ = stream.flush();
        // The stream is a child of the body: it must be dropped before `finish`.
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
