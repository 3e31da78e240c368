//! The openraft type configuration for edge's control-plane store: commands and results from
//! `store`, u64 node ids, nodes addressed by their QUIC `host:port`, in-memory snapshot bytes.

use crate::store::{Command, CommandResult};
use std::sync::Arc;

openraft::declare_raft_types!(
    /// Type configuration of the control-plane raft group.
    pub TypeConfig:
        // Shared, because the log hands out a copy of each entry for every follower it is sent
        // to and for the state machine: copying a batch of objects deeply each time was a
        // tenth of a server's CPU under write load.
        D = Arc<Command>,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        // A snapshot is the CBOR of every state-machine table; small enough to hold in memory
        // for a control plane, and the chunked InstallSnapshot RPC of openraft 0.9 needs
        // AsyncRead + AsyncWrite + AsyncSeek, which a Cursor provides.
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type Node = openraft::BasicNode;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Raft = openraft::Raft<TypeConfig>;
