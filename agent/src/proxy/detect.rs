//! Protocol detection on a new connection, as linkerd does: HTTP/1 requests start with a method
//! and a space; anything else (TLS, HTTP/2 with prior knowledge, binary protocols) is opaque.

use std::time::Duration;
use tokio::net::TcpStream;

/// How long a client may stay silent before its connection is treated as opaque (protocols
/// where the server speaks first; name such ports `tcp` or `tcp-*` to skip the wait).
pub const DETECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    Http1,
    Opaque,
}

const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"TRACE ",
    b"CONNECT ",
];

/// The verdict on the first bytes, or `None` when they are too few to tell.
pub fn classify(prefix: &[u8]) -> Option<Detected> {
    if prefix.is_empty() {
        return None;
    }
    let mut undecided = false;
    for m in METHODS {
        if prefix.starts_with(m) {
            return Some(Detected::Http1);
        }
        if m.starts_with(prefix) {
            undecided = true;
        }
    }
    if undecided {
        None
    } else {
        Some(Detected::Opaque)
    }
}

/// Peeks (without consuming) until the first bytes decide, the client goes quiet for
/// [`DETECT_TIMEOUT`], or it closes.
pub async fn sniff(stream: &TcpStream) -> Detected {
    let mut buf = [0u8; 8];
    let deadline = tokio::time::Instant::now() + DETECT_TIMEOUT;
    let mut seen = 0;
    loop {
        let peeked = tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await;
        let n = match peeked {
            Ok(Ok(n)) if n > 0 => n,
            _ => return Detected::Opaque,
        };
        if let Some(d) = classify(&buf[..n]) {
            return d;
        }
        if n == seen {
            // The same partial prefix again: wait for more bytes instead of spinning.
            tokio::time::sleep(Duration::from_millis(2)).await;
            if tokio::time::Instant::now() >= deadline {
                return Detected::Opaque;
            }
        }
        seen = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_decide() {
        let cases: [(&[u8], Option<Detected>); 9] = [
            (b"GET / HTTP/1.1\r\n", Some(Detected::Http1)),
            (b"POST /x", Some(Detected::Http1)),
            (b"OPTIONS ", Some(Detected::Http1)),
            (b"GE", None),
            (b"", None),
            (b"PRI * HTTP/2.0", Some(Detected::Opaque)),
            (b"\x16\x03\x01\x02\x00", Some(Detected::Opaque)),
            (b"GETX", Some(Detected::Opaque)),
            (b"get / HTTP/1.1", Some(Detected::Opaque)),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                classify(bytes),
                want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
