//! Calls between control-plane servers beyond raft's own RPCs, carried on the same QUIC
//! connections: a server forwards writes, read-index requests and membership changes to the
//! leader, asks members for their status, and pushes or fetches blobs.

use super::types::NodeId;
use super::{ProposeError, RaftNode};
use crate::store::{Command, CommandResult};
use edge_api::wire::Member;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One call, answered by one `PeerReply` or a `CallError`.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Clone, Debug)]
pub enum PeerCall {
    /// Propose a command (leader only).
    Write(Command),
    /// Confirm leadership with a quorum and return the index reads must wait for (leader only).
    ReadIndex,
    /// Add a server at `address` as a learner and return its new node id (leader only).
    AddLearner { address: String },
    /// Make learner `id` a voter once it has caught up (leader only).
    Promote { id: NodeId },
    /// Take server `id` out of the group (leader only).
    Remove { id: NodeId },
    /// The callee's own raft state.
    Status,
    /// Keep this blob durably (any member).
    PutBlob {
        digest: String,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The blob's bytes, if this member has them.
    GetBlob { digest: String },
    /// `node`'s agent was heard from by the calling server (leader only).
    Heartbeat { node: String },
}

impl PeerCall {
    /// How long the caller waits for the answer.
    pub fn timeout(&self) -> Duration {
        match self {
            // The leader waits for the learner to catch up first.
            PeerCall::Promote { .. } => Duration::from_secs(90),
            // Up to 48 MB over a slow link.
            PeerCall::PutBlob { .. } | PeerCall::GetBlob { .. } => Duration::from_secs(120),
            PeerCall::Status => Duration::from_secs(2),
            _ => Duration::from_secs(5),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            PeerCall::Write(_) => "write",
            PeerCall::ReadIndex => "read index",
            PeerCall::AddLearner { .. } => "add learner",
            PeerCall::Promote { .. } => "promote",
            PeerCall::Remove { .. } => "remove member",
            PeerCall::Status => "status",
            PeerCall::PutBlob { .. } => "put blob",
            PeerCall::GetBlob { .. } => "get blob",
            PeerCall::Heartbeat { .. } => "heartbeat",
        }
    }
}

// A reply is built once and sent at once: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Debug)]
pub enum PeerReply {
    Written(CommandResult),
    ReadIndex(Option<u64>),
    Added(NodeId),
    Done,
    Status(Member),
    Blob(Option<serde_bytes::ByteBuf>),
}

impl PeerReply {
    /// The variant's name, for messages (never the contents: a blob could be megabytes).
    pub fn variant(&self) -> &'static str {
        match self {
            PeerReply::Written(_) => "Written",
            PeerReply::ReadIndex(_) => "ReadIndex",
            PeerReply::Added(_) => "Added",
            PeerReply::Done => "Done",
            PeerReply::Status(_) => "Status",
            PeerReply::Blob(_) => "Blob",
        }
    }
}

/// Why the callee refused; travels over the wire, so it is plain data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The callee is not the leader (nothing was done); `leader` is its best guess.
    #[error("server is not the raft leader")]
    NotLeader { leader: Option<(NodeId, String)> },
    #[error("the raft leader cannot reach a quorum of voters: {0}")]
    NoQuorum(String),
    #[error("{0}")]
    Refused(String),
    #[error("the raft node has stopped: {0}")]
    Stopped(String),
    #[error("storage: {0}")]
    Storage(String),
}

impl From<CallError> for ProposeError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::NotLeader { leader } => ProposeError::NotLeader { leader },
            CallError::NoQuorum(m) => ProposeError::NoQuorum(m),
            CallError::Refused(m) => ProposeError::Refused(m),
            CallError::Stopped(m) | CallError::Storage(m) => ProposeError::Unavailable(m),
        }
    }
}

impl From<ProposeError> for CallError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::NotLeader { leader } => CallError::NotLeader { leader },
            ProposeError::NoQuorum(m) => CallError::NoQuorum(m),
            ProposeError::Refused(m) => CallError::Refused(m),
            other => CallError::Stopped(other.to_string()),
        }
    }
}

/// Serves a call from another server.
pub(crate) async fn handle(node: &RaftNode, call: PeerCall) -> Result<PeerReply, CallError> {
    let name = call.name();
    let reply = match call {
        PeerCall::Write(cmd) => PeerReply::Written(node.write_here(cmd).await?),
        PeerCall::ReadIndex => PeerReply::ReadIndex(node.read_index_here().await?),
        PeerCall::AddLearner { address } => PeerReply::Added(node.add_learner_here(address).await?),
        PeerCall::Promote { id } => {
            node.promote_here(id).await?;
            PeerReply::Done
        }
        PeerCall::Remove { id } => {
            node.remove_here(id).await?;
            PeerReply::Done
        }
        PeerCall::Status => PeerReply::Status(node.own_status()),
        PeerCall::Heartbeat { node: name } => {
            node.ensure_leader()?;
            node.liveness
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name, std::time::Instant::now());
            PeerReply::Done
        }
        PeerCall::PutBlob { digest, data } => {
            node.blobs
                .write(digest, data)
                .await
                .map_err(|e| CallError::Storage(e.to_string()))?;
            PeerReply::Done
        }
        PeerCall::GetBlob { digest } => PeerReply::Blob(
            node.blobs
                .read(digest)
                .await
                .map_err(|e| CallError::Storage(e.to_string()))?
                .map(serde_bytes::ByteBuf::from),
        ),
    };
    tracing::trace!(call = name, "served a peer call");
    Ok(reply)
}
