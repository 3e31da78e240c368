//! The control plane's raft node: openraft with the log and the state machine in one redb file
//! (`storage`), RPC over QUIC (`network`), and the small API the rest of the control plane
//! uses: propose a command, wait for a linearizable read point, find the leader.

pub mod network;
pub mod state_machine;
pub mod storage;
pub mod types;

pub use network::{serve_raft_stream, QuicNetwork, RaftRpc, RaftRpcReply};
pub use storage::{OpenError, RedbStore};
pub use types::TypeConfig;

use crate::store::{Command, CommandResult};
use openraft::error::{
    CheckIsLeaderError, ClientWriteError, Fatal, ForwardToLeader, InitializeError, RaftError,
};
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long `shutdown` waits for openraft's tasks to release the store.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RaftStartError {
    #[error(transparent)]
    Store(#[from] OpenError),
    #[error("invalid raft configuration: {0}")]
    Config(#[from] Box<openraft::ConfigError>),
    #[error("cannot start raft node {node_id}: {source}")]
    Raft { node_id: u64, source: Fatal<u64> },
}

/// Why a proposal, read barrier or leadership wait did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader takes writes and serves linearizable reads; `leader` is where to go,
    /// if known.
    #[error("{}", not_leader_message(.leader))]
    NotLeader { leader: Option<(u64, String)> },
    #[error("the raft leader cannot reach a quorum of voters: {0}")]
    NoQuorum(String),
    #[error("raft refused the request: {0}")]
    Refused(String),
    #[error("no raft leader after {0:?}")]
    Timeout(Duration),
    #[error("the raft node has stopped: {0}")]
    Fatal(#[from] Fatal<u64>),
}

fn not_leader_message(leader: &Option<(u64, String)>) -> String {
    match leader {
        Some((id, addr)) => format!("this server is not the raft leader; the leader is node {id} at {addr}"),
        None => "this server is not the raft leader and no leader is known (an election may be in progress)".into(),
    }
}

fn not_leader(f: ForwardToLeader<u64, BasicNode>) -> ProposeError {
    let leader = f
        .leader_id
        .map(|id| (id, f.leader_node.map(|n| n.addr).unwrap_or_default()));
    ProposeError::NotLeader { leader }
}

/// A running raft member of the control plane.
pub struct RaftNode {
    pub raft: Raft<TypeConfig>,
    pub store: RedbStore,
    pub node_id: u64,
    /// This node's raft address (`host:port` of its QUIC endpoint), as peers dial it.
    pub addr: String,
    /// Held by every storage handle given to openraft; see `shutdown`.
    lease: Arc<()>,
}

/// Timings suit a LAN or a decent WAN link: heartbeats are cheap (not raft writes), elections
/// only after a second of silence.
fn config() -> Result<Config, Box<openraft::ConfigError>> {
    Config {
        cluster_name: "edge".into(),
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        // Each chunk must arrive within the timeout; smaller chunks tolerate slower links.
        snapshot_max_chunk_size: 1 << 20,
        install_snapshot_timeout: 5000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(10_000),
        max_in_snapshot_log_to_keep: 1000,
        purge_batch_size: 256,
        ..Default::default()
    }
    .validate()
    .map_err(Box::new)
}

impl RaftNode {
    /// Opens the store at `db_path` and starts raft. A store that already holds a vote or log
    /// resumes where it stopped; a new one waits for `initialize_single` or a leader's contact.
    pub async fn start(
        node_id: u64,
        addr: String,
        db_path: &Path,
        network: QuicNetwork,
    ) -> Result<RaftNode, RaftStartError> {
        let store = RedbStore::open(db_path)?;
        let config = Arc::new(config()?);
        let lease = Arc::new(());
        let (log_store, state_machine) = store.raft_handles(&lease);
        let raft = Raft::new(node_id, config, network, log_store, state_machine)
            .await
            .map_err(|source| RaftStartError::Raft { node_id, source })?;
        Ok(RaftNode {
            raft,
            store,
            node_id,
            addr,
            lease,
        })
    }

    /// Makes this node the single voter of a new cluster, unless the store was initialized
    /// before (a restart must resume, never start a second history).
    pub async fn initialize_single(&self) -> Result<(), ProposeError> {
        if self.raft.is_initialized().await? {
            return Ok(());
        }
        let members = BTreeMap::from([(self.node_id, BasicNode::new(self.addr.clone()))]);
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Lost a race with a leader that contacted us first: initialized either way.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(e)) => Err(ProposeError::Refused(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(f.into()),
        }
    }

    /// Commits `cmd` through raft and returns what applying it produced (possibly a rejection
    /// from a failed precondition, which is not an error here).
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult, ProposeError> {
        match self.raft.client_write(cmd).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(not_leader(f)),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(ProposeError::Refused(e.to_string()))
            }
            Err(RaftError::Fatal(f)) => Err(f.into()),
        }
    }

    /// Returns once this node's state machine reflects every write committed before the call
    /// (raft ReadIndex): reads made afterwards are linearizable. Only the leader can do this.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(not_leader(f)),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                Err(ProposeError::NoQuorum(e.to_string()))
            }
            Err(RaftError::Fatal(f)) => Err(f.into()),
        }
    }

    /// Waits until some node is known as leader and returns its id.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<u64, ProposeError> {
        let metrics = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => ProposeError::Timeout(timeout),
                openraft::metrics::WaitError::ShuttingDown => ProposeError::Fatal(Fatal::Stopped),
            })?;
        metrics.current_leader.ok_or(ProposeError::Timeout(timeout))
    }

    /// Whether this node believes it is the leader (from metrics, without asking a quorum):
    /// right for "should I run the leader-only loops", not for linearizable reads.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.node_id)
    }

    /// The current leader's id and address, if known.
    pub fn leader(&self) -> Option<(u64, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone());
        Some((id, addr.unwrap_or_default()))
    }

    /// Stops raft and waits (up to a few seconds) until openraft's background tasks have
    /// dropped their storage handles, so that the file can be reopened once this `RaftNode`
    /// and any `store.database()` clones are dropped.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(node = self.node_id, error = %e, "raft did not shut down cleanly");
        }
        // The state machine worker and replication tasks end after the core, on their own.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while Arc::strong_count(&self.lease) > 1 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    node = self.node_id,
                    "raft tasks still hold the store after shutdown"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
