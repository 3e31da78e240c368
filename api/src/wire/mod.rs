//! The QUIC wire protocol: ALPN names, length-prefixed CBOR frames, request/response enums, client.
//!
//! One request per bidirectional stream. The client writes one `Request` frame and finishes its
//! side; the server answers with one `Response` frame, or a sequence of them for watches and
//! followed logs, and finishes. Errors travel as `Response::Error`, never as a reset stream.

pub mod client;
pub mod frame;
pub mod members;
pub mod protocol;

pub use client::{Client, ResponseStream};
pub use frame::{encode_frame, read_frame, write_frame, WireError};
pub use members::{Member, MemberRole, ServerJoin};
pub use protocol::*;
