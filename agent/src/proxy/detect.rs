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

/// Whether a request head asks to switch protocols (WebSocket and the like): such a
/// connection is spliced as TCP, since the per-request proxy does not carry upgrades.
pub fn asks_upgrade(head: &[u8]) -> bool {
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(head.len());
    head[..end]
        .split(|b| *b == b'\n')
        .skip(1)
        .any(|line| line.len() >= 8 && line[..8].eq_ignore_ascii_case(b"upgrade:"))
}

/// Peeks (without consuming) until the first bytes decide, the client goes quiet for
/// [`DETECT_TIMEOUT`], or it closes. An HTTP/1 request head that asks for an upgrade makes
/// the connection opaque.
pub async fn sniff(stream: &TcpStream) -> Detected {
    match sniff_method(stream).await {
        Detected::Http1 => {
            let mut head = vec![0u8; HEAD_PEEK];
            match stream.peek(&mut head).await {
                Ok(n) if asks_upgrade(&head[..n]) => Detected::Opaque,
                _ => Detected::Http1,
            }
        }
        other => other,
    }
}

/// How much of a request head is looked at for an `Upgrade` header.
const HEAD_PEEK: usize = 8 << 10;

async fn sniff_method(stream: &TcpStream) -> Detected {
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
    fn upgrade_requests_are_noticed_in_the_head_only() {
        assert!(asks_upgrade(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        ));
        assert!(asks_upgrade(b"GET / HTTP/1.1\r\nupgrade: h2c\r\n"));
        assert!(!asks_upgrade(
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nUpgrade: in the body"
        ));
        assert!(!asks_upgrade(b"GET /upgrade: HTTP/1.1\r\n\r\n"));
    }

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
