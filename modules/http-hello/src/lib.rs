//! `http-hello`: a wasi:http incoming handler (runtime test fixture and benchmark workload).
//!
//! Routes:
//! - `GET /`: 200 "hello from edge http", plus the GREETING env var and the
//!   x-forwarded-for header when present.
//! - `GET|POST /echo`: echoes the request body.
//! - `GET /spin`: loops forever without host calls (the host's deadline must stop it).
//! - `GET /oom`: allocates until the host refuses memory.
//! - `GET /count`: bumps a counter in linear memory and answers with it; every request gets a
//!   fresh instance, so the answer is always 1 (the isolation tests check it).
//! - `GET /fetch?url=http://host:port/path`: makes an outgoing wasi:http request and answers
//!   with its status, or with the error code the host returned (for the grant tests).

use std::hint::black_box;
use std::io::{Read as _, Write as _};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

struct Hello;

wasip2::http::proxy::export!(Hello);

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (path, query) = match path_with_query.split_once('?') {
            Some((path, query)) => (path.to_string(), query.to_string()),
            None => (path_with_query, String::new()),
        };
        match (request.method(), path.as_str()) {
            (Method::Get, "/") => hello(&request, out),
            (Method::Get | Method::Post | Method::Put, "/echo") => echo(request, out),
            (Method::Get, "/spin") => spin(),
            (Method::Get, "/oom") => oom(),
            (Method::Get, "/fetch") => fetch(&query, out),
            (Method::Get, "/count") => count(out),
            _ => respond(out, 404, b"not found\n"),
        }
    }
}

fn hello(request: &IncomingRequest, out: ResponseOutparam) {
    let mut body = String::from("hello from edge http\n");
    if let Ok(greeting) = std::env::var("GREETING") {
        body.push_str(&format!("GREETING={greeting}\n"));
    }
    for value in request.headers().get("x-forwarded-for") {
        body.push_str(&format!(
            "x-forwarded-for: {}\n",
            String::from_utf8_lossy(&value)
        ));
    }
    respond(out, 200, body.as_bytes());
}

static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn count(out: ResponseOutparam) {
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    respond(out, 200, format!("{n}\n").as_bytes());
}

fn echo(request: IncomingRequest, out: ResponseOutparam) {
    let mut data = Vec::new();
    if let Ok(body) = request.consume() {
        if let Ok(mut stream) = body.stream() {
            if let Err(e) = stream.read_to_end(&mut data) {
                respond(out, 400, format!("cannot read body: {e}\n").as_bytes());
                return;
            }
        }
    }
    respond(out, 200, &data);
}

fn spin() {
    // No host calls inside the loop: only the host's epoch deadline can stop it.
    let mut x: u64 = 1;
    loop {
        x = black_box(
            x.wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407),
        );
    }
}

fn oom() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Non-zero fill so the pages are really written; the allocator aborts (a trap) once
        // the host refuses to grow memory.
        hoard.push(vec![0xA5; 1024 * 1024]);
        black_box(&hoard);
    }
}

fn fetch(query: &str, out: ResponseOutparam) {
    let Some(url) = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("url="))
        .map(percent_decode)
    else {
        respond(out, 400, b"missing ?url=\n");
        return;
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        respond(out, 400, b"url must be scheme://authority/path\n");
        return;
    };
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
        respond(out, 400, b"invalid url parts\n");
        return;
    }
    let future = match outgoing_handler::handle(request, None) {
        Ok(future) => future,
        Err(code) => {
            respond(out, 502, format!("error: {code:?}\n").as_bytes());
            return;
        }
    };
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => {
            let status = response.status();
            respond(out, 200, format!("status: {status}\n").as_bytes());
        }
        Some(Ok(Err(code))) => respond(out, 502, format!("error: {code:?}\n").as_bytes()),
        Some(Err(())) | None => respond(out, 502, b"error: response future failed\n"),
    }
}

/// Decodes `%XX` escapes (and `+` as space) in a query value; malformed escapes stay as is.
fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
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
