//! A QUIC client of the control plane: one connection, one bidirectional stream per request.

use super::frame::{read_frame, write_frame, WireError};
use super::protocol::{Request, Response, MAX_FRAME_BYTES};
use std::net::SocketAddr;
use std::time::Duration;

/// How long a dial may take before we report the server unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Client {
    connection: quinn::Connection,
    // Keeps the UDP socket alive for as long as any clone of the client lives.
    _endpoint: Option<quinn::Endpoint>,
}

impl Client {
    /// Dials `addr` (`host:port`) with the given QUIC client configuration (which carries the ALPN).
    pub async fn connect(addr: &str, config: quinn::ClientConfig) -> Result<Client, WireError> {
        let connect_err = |message: String| WireError::Connect {
            addr: addr.to_string(),
            message,
        };
        let target: SocketAddr = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| connect_err(format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| connect_err("name resolves to no address".into()))?;
        let bind: SocketAddr = if target.is_ipv6() {
            "[::]:0".parse().expect("literal address")
        } else {
            "0.0.0.0:0".parse().expect("literal address")
        };
        let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| connect_err(e.to_string()))?;
        endpoint.set_default_client_config(config);
        let connecting = endpoint
            .connect(target, crate::SERVER_NAME)
            .map_err(|e| connect_err(e.to_string()))?;
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| {
                connect_err(format!(
                    "no answer within {CONNECT_TIMEOUT:?}; is `edged server` running there?"
                ))
            })?
            .map_err(|e| connect_err(e.to_string()))?;
        Ok(Client {
            connection,
            _endpoint: Some(endpoint),
        })
    }

    /// Wraps an established connection (e.g. one the server accepted from an agent).
    pub fn from_connection(connection: quinn::Connection) -> Client {
        Client {
            connection,
            _endpoint: None,
        }
    }

    pub fn connection(&self) -> &quinn::Connection {
        &self.connection
    }

    /// Sends one request and waits for its single response; `Response::Error` becomes `Err`.
    pub async fn call(&self, request: &Request) -> Result<Response, WireError> {
        let mut stream = self.stream(request).await?;
        match stream.next().await? {
            Some(r) => Ok(r),
            None => Err(WireError::NoResponse),
        }
    }

    /// Sends one request and returns the stream of responses (watches, followed logs).
    pub async fn stream(&self, request: &Request) -> Result<ResponseStream, WireError> {
        let (mut send, recv) = self.connection.open_bi().await?;
        write_frame(&mut send, request).await?;
        // Finishing tells the server the request is complete; an error here only means the
        // server already went away, which the read will report.
        let _ = send.finish();
        Ok(ResponseStream { recv, _send: send })
    }
}

pub struct ResponseStream {
    recv: quinn::RecvStream,
    _send: quinn::SendStream,
}

impl ResponseStream {
    /// The next response, `None` when the server finished the stream.
    pub async fn next(&mut self) -> Result<Option<Response>, WireError> {
        match read_frame::<_, Response>(&mut self.recv, MAX_FRAME_BYTES).await? {
            Some(Response::Error(e)) => Err(WireError::Api(e)),
            other => Ok(other),
        }
    }
}
