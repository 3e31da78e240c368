//! Request and response messages, ALPN names and size limits of the control-plane protocol.

use crate::object::{Kind, Object, ObjectKey};
use serde::{Deserialize, Serialize};

/// edgectl and other API clients.
pub const ALPN_API: &[u8] = b"edge-api/1";
/// A node agent's long-lived link; the server also opens streams back on it (logs).
pub const ALPN_AGENT: &[u8] = b"edge-agent/1";
/// An agent without a certificate yet, presenting its join token secret.
pub const ALPN_JOIN: &[u8] = b"edge-join/1";
/// Raft RPC between control-plane servers.
pub const ALPN_RAFT: &[u8] = b"edge-raft/1";

/// The largest frame either side accepts (a component upload is the largest message).
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// The largest encoded object the API server stores, as etcd's default request limit.
pub const MAX_OBJECT_BYTES: usize = 1536 << 10;
/// The largest component accepted for upload.
pub const MAX_BLOB_BYTES: usize = 48 << 20;

#[derive(Serialize, Deserialize, Clone, Debug)]
pub enum Request {
    /// Create the object, or update its spec/labels/annotations if it exists.
    Apply {
        object: Object,
        dry_run: bool,
    },
    /// Create only; AlreadyExists if present.
    Create {
        object: Object,
    },
    Get {
        key: ObjectKey,
    },
    List {
        kind: Kind,
        /// `None` lists all namespaces.
        namespace: Option<String>,
        selector: Option<String>,
    },
    /// Deleting a pod bound to a node marks it terminating; its agent stops it and removes it.
    /// `force` removes it at once.
    Delete {
        key: ObjectKey,
        force: bool,
        /// What happens to the objects this one owns (`--cascade`).
        #[serde(default)]
        propagation: Propagation,
    },
    /// Streams `Response::Event`s from `resource_version` (exclusive); `None` means "from now,
    /// after listing the current objects as Added".
    Watch {
        kind: Kind,
        namespace: Option<String>,
        selector: Option<String>,
        resource_version: Option<u64>,
    },
    /// Replace spec, labels and annotations of an existing object, only if its stored
    /// `metadata.resourceVersion` is the one in `object` (Conflict otherwise: read it again and
    /// retry). Answered with `Response::Object`.
    Update {
        object: Object,
    },
    /// Replace the status of an existing object (agents for their pods and node).
    UpdateStatus {
        object: Object,
    },
    PutBlob {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    GetBlob {
        digest: String,
    },
    Logs {
        namespace: String,
        name: String,
        container: Option<String>,
        follow: bool,
        tail_lines: Option<u64>,
    },
    /// A TCP connection to `port` of a pod, relayed through its node's agent link: after a
    /// `Response::Ok` the stream carries the connection's raw bytes both ways.
    PortForward {
        namespace: String,
        name: String,
        port: u16,
    },
    /// Agent liveness; kept in the leader's memory, never written to raft.
    Heartbeat,
    /// Over `ALPN_JOIN` only: exchange the join secret for a node certificate.
    Join {
        secret: String,
        node_name: String,
    },
    WhoAmI,
    /// The control-plane servers (`edgectl member list`); agents learn where to fail over.
    Members,
    /// Take a server out of the control plane (`edgectl member remove`).
    RemoveMember {
        id: u64,
    },
    /// Over `ALPN_JOIN` only: a new control-plane server (`edged server --join`) presents the
    /// join secret and the address other servers reach it at.
    JoinServer {
        secret: String,
        address: String,
    },
}

/// Kubernetes' propagationPolicy: how deleting an owner treats its dependents.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    /// Delete the owner now; the garbage collector removes dependents afterwards.
    #[default]
    Background,
    /// Remove dependents first, then the owner (it stays, Terminating, meanwhile).
    Foreground,
    /// Keep dependents, without their owner reference.
    Orphan,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    Created,
    Configured,
    Unchanged,
}

impl std::fmt::Display for ApplyOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        })
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct WatchEvent {
    pub event_type: EventType,
    pub object: Object,
    pub resource_version: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub enum Response {
    Object(Object),
    Applied {
        object: Object,
        outcome: ApplyOutcome,
    },
    List {
        items: Vec<Object>,
        resource_version: u64,
    },
    Deleted {
        object: Object,
    },
    BlobStored {
        digest: String,
        size: u64,
    },
    Blob {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    Event(WatchEvent),
    LogChunk {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    Joined {
        ca_pem: String,
        cert_pem: String,
        key_pem: String,
    },
    Identity {
        user: String,
        groups: Vec<String>,
    },
    Ok,
    Error(ApiError),
    Members {
        members: Vec<crate::wire::Member>,
    },
    JoinedServer(crate::wire::ServerJoin),
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    Invalid,
    NotFound,
    AlreadyExists,
    Conflict,
    Forbidden,
    Unauthorized,
    TooLarge,
    /// The watch's resourceVersion is older than the retained history: list again.
    Expired,
    Unavailable,
    Internal,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(key: &ObjectKey) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("{key} not found"))
    }
}

/// The digest string (`sha256:<hex>`) of a blob's bytes.
pub fn blob_digest(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}
