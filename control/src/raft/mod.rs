//! The control plane's raft node: openraft with the log and the state machine in one redb file
//! (`storage`), RPC over QUIC (`network`), and the small API the rest of the control plane
//! uses: propose a command, wait for a linearizable read point, find the leader. Any member
//! can do both: a follower forwards writes to the leader and asks it for the read index
//! (`calls`), so clients and agents may connect to any server.

pub mod blobs;
pub mod calls;
mod durable;
mod forward;
pub mod join;
mod log_store;
mod membership;
pub mod network;
mod readindex;
mod relay;
mod removal;
pub mod state_machine;
pub mod storage;
pub mod types;
pub mod wal;
mod writes;

pub use blobs::{BlobError, BlobStore};
pub use calls::{CallError, PeerCall, PeerReply};
pub use network::{serve_raft_stream, AgentRelay, QuicNetwork, RaftRpc, RaftRpcReply};
pub use storage::{OpenError, RedbStore};
pub use types::TypeConfig;

use crate::store::{Command, CommandResult};
use network::CallFailure;
use openraft::error::{Fatal, InitializeError, RaftError};
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use readindex::ReadBatcher;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long `shutdown` waits for openraft's tasks to release the store.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RaftStartError {
    #[error(transparent)]
    Store(#[from] OpenError),
    #[error(transparent)]
    Blobs(#[from] BlobError),
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
    /// The leader was asked but its answer was lost: the write may or may not have happened.
    #[error("the raft leader did not answer ({0}); the write may or may not have been applied")]
    Unavailable(String),
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

/// How long a write or read waits for a leader (an election, a lost leader) before failing.
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// Pause between attempts while the leader changes.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Entries kept behind a snapshot at most: the live log is held in memory (`wal/`), and an
/// entry may carry a batch of writes.
const KEEP_AFTER_SNAPSHOT: u64 = 200;
/// A snapshot (and compaction) is started when the log holds more than this, whatever its
/// number of entries: the live log is held in memory, and a Pi has 1 GB.
const LOG_BYTES_LIMIT: u64 = 32 << 20;

/// Knobs of the raft group that operators (and tests) may turn.
#[derive(Clone, Debug)]
pub struct RaftTuning {
    /// Build a snapshot and compact the log after this many entries since the last snapshot.
    pub snapshot_logs: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            snapshot_logs: 10_000,
        }
    }
}

/// A running raft member of the control plane.
pub struct RaftNode {
    pub raft: Raft<TypeConfig>,
    pub store: RedbStore,
    pub node_id: u64,
    /// This node's raft address (`host:port` of its QUIC endpoint), as peers dial it.
    pub addr: String,
    /// Uploaded components, replicated apart from the log.
    pub blobs: BlobStore,
    network: QuicNetwork,
    reads: Arc<ReadBatcher>,
    writes: writes::WriteBatcher,
    forward: forward::Combiner,
    /// When each node's agent was last heard from: by this server, and (on the leader) by the
    /// others, which relay heartbeats here. In memory only.
    pub liveness: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
    /// Serializes membership changes made through this leader (node ids must not collide).
    membership_lock: tokio::sync::Mutex<()>,
    /// Held by every storage handle given to openraft; see `shutdown`.
    lease: Arc<()>,
}

/// Timings suit a LAN or a decent WAN link: heartbeats are cheap (not raft writes), elections
/// only after about a second of silence, as etcd's defaults. An openraft follower that had a
/// leader waits the leader lease (the maximum election timeout) plus an election timeout
/// before it stands, so the silence before an election is 1.05-1.2 s with these numbers (more
/// than four heartbeats missed). openraft also uses the heartbeat interval as the
/// AppendEntries timeout, so it must cover a follower's fsync.
fn config(tuning: &RaftTuning) -> Result<Config, Box<openraft::ConfigError>> {
    Config {
        cluster_name: "edge".into(),
        heartbeat_interval: 250,
        election_timeout_min: 450,
        election_timeout_max: 600,
        // Each chunk must arrive within the timeout; smaller chunks tolerate slower links.
        snapshot_max_chunk_size: 1 << 20,
        install_snapshot_timeout: 5000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(tuning.snapshot_logs.max(1)),
        // Keep some log behind the snapshot, so a follower that was briefly away catches up
        // from the log instead of a full snapshot.
        max_in_snapshot_log_to_keep: (tuning.snapshot_logs / 10).min(KEEP_AFTER_SNAPSHOT),
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
        Self::start_with(node_id, addr, db_path, network, &RaftTuning::default()).await
    }

    /// `start` with explicit tuning. Blobs live in `blobs/` beside the store file.
    pub async fn start_with(
        node_id: u64,
        addr: String,
        db_path: &Path,
        mut network: QuicNetwork,
        tuning: &RaftTuning,
    ) -> Result<RaftNode, RaftStartError> {
        let store = RedbStore::open(db_path)?;
        network.log = Some(store.log().clone());
        let blobs = BlobStore::open(&db_path.with_file_name("blobs"))?;
        let config = Arc::new(config(tuning)?);
        let lease = Arc::new(());
        let (log_store, state_machine) = store.raft_handles(&lease, Some(node_id));
        let raft = Raft::new(node_id, config, network.clone(), log_store, state_machine)
            .await
            .map_err(|source| RaftStartError::Raft { node_id, source })?;
        tokio::spawn(compact_when_large(raft.clone(), store.log_size_probe()));
        Ok(RaftNode {
            writes: writes::WriteBatcher::start(raft.clone()),
            forward: forward::Combiner::default(),
            raft,
            store,
            node_id,
            addr,
            blobs,
            network,
            reads: Arc::default(),
            liveness: Arc::default(),
            membership_lock: tokio::sync::Mutex::new(()),
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

    /// Returns once this node's state machine reflects every write committed before the call
    /// (raft ReadIndex, asked of the leader when this node is a follower): reads made
    /// afterwards are linearizable.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        let deadline = Instant::now() + LEADER_WAIT;
        let index = match self.on_leader(PeerCall::ReadIndex, true).await? {
            PeerReply::ReadIndex(i) => i,
            other => return Err(unexpected(other)),
        };
        let Some(index) = index else { return Ok(()) };
        let wait = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(wait.max(Duration::from_secs(1))))
            .applied_index_at_least(Some(index), "read index applied")
            .await
            .map(|_| ())
            .map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => ProposeError::Timeout(wait),
                openraft::metrics::WaitError::ShuttingDown => ProposeError::Fatal(Fatal::Stopped),
            })
    }

    /// Makes `call` on the current leader (here if this node leads), waiting for a leader and
    /// retrying when the leader changed before the call did anything. A call whose answer was
    /// lost is retried only if `idempotent`.
    pub async fn on_leader(
        &self,
        call: PeerCall,
        idempotent: bool,
    ) -> Result<PeerReply, ProposeError> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let (id, addr) = self.leader_by(deadline).await?;
            let result = if id == self.node_id {
                calls::handle(self, call.clone()).await
            } else {
                let sent = self.network.call(id, &addr, &call, call.timeout());
                let outcome = tokio::select! {
                    outcome = sent => outcome,
                    // A call to a leader that died waits out its timeout; once another leader
                    // is known, the answer is not worth waiting for (and, for a write, unknown).
                    () = self.other_leader_than(id) => Err(CallFailure::Lost(format!(
                        "the leader changed from server {id} while the call was in flight"
                    ))),
                };
                match outcome {
                    Ok(r) => r,
                    Err(CallFailure::NotSent(m)) => Err(CallError::NotLeader {
                        leader: Some((id, m)),
                    }),
                    Err(CallFailure::Lost(m)) if idempotent => Err(CallError::NotLeader {
                        leader: Some((id, m)),
                    }),
                    Err(CallFailure::Lost(m)) => return Err(ProposeError::Unavailable(m)),
                }
            };
            match result {
                Ok(reply) => return Ok(reply),
                Err(CallError::NotLeader { leader }) => {
                    if Instant::now() >= deadline {
                        return Err(ProposeError::NotLeader { leader });
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                // A slow heartbeat round (a busy follower) fails a read index; try again.
                Err(CallError::NoQuorum(m)) if idempotent && Instant::now() < deadline => {
                    tracing::debug!(error = %m, "no quorum for a read yet; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Resolves once this node knows a leader other than `id`. Watches the server metrics,
    /// which change only with the leader, vote or membership: every call in flight waits
    /// here, and the full metrics change several times per write.
    async fn other_leader_than(&self, id: u64) {
        let mut metrics = self.raft.server_metrics();
        let changed = metrics
            .wait_for(|m| m.current_leader.is_some_and(|l| l != id))
            .await
            .is_ok();
        if !changed {
            // Raft stopped: nothing will change; let the call finish or time out.
            std::future::pending::<()>().await;
        }
    }

    /// The leader's id and address, waiting (until `deadline`) while none is known.
    async fn leader_by(&self, deadline: Instant) -> Result<(u64, String), ProposeError> {
        if let Some(l) = self.leader() {
            return Ok(l);
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        self.wait_leader(wait).await?;
        self.leader().ok_or(ProposeError::Timeout(wait))
    }

    /// Proposes on this node, which must be the leader; concurrent writes share raft entries
    /// (`writes.rs`).
    pub(crate) async fn write_here(&self, cmd: Command) -> Result<CommandResult, CallError> {
        self.writes.write(cmd).await
    }

    /// The read index, confirmed with a quorum; this node must be the leader.
    pub(crate) async fn read_index_here(&self) -> Result<Option<u64>, CallError> {
        self.reads.read_index(&self.raft).await
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

    /// Tells the leader, in the background, that `node`'s agent was just heard from here.
    pub fn relay_heartbeat(self: &Arc<Self>, node: &str) {
        let (me, node) = (self.clone(), node.to_string());
        tokio::spawn(async move {
            if let Err(e) = me.on_leader(PeerCall::Heartbeat { node }, true).await {
                tracing::debug!(error = %e, "could not relay a heartbeat to the leader");
            }
        });
    }

    /// Stores an uploaded blob here and on the other members, returning once a majority of
    /// voters has it on disk (the rest get it in the background).
    pub async fn put_blob(&self, digest: String, data: Vec<u8>) -> Result<(), ProposeError> {
        membership::replicate_blob(self, digest, data).await
    }

    /// A blob's bytes from this server, or fetched from another member (and kept) if this one
    /// does not have them.
    pub async fn get_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, ProposeError> {
        membership::fetch_blob(self, digest).await
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
    /// and any `store.database()` or `store.state()` clones are dropped.
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
        // Applies held in memory would be applied again from the log at the next start; written
        // now, that start has less to do.
        let state = self.store.state();
        if let Err(e) = storage::blocking(move || Ok(state.flush(true)?)).await {
            tracing::warn!(node = self.node_id, error = %e, "could not write the last applies to the store");
        }
    }
}

/// Starts a snapshot whenever the log holds more than `LOG_BYTES_LIMIT` (openraft's own policy
/// counts entries only); openraft then purges the log behind it. Ends when raft stops, letting
/// go of the store (a restart in the same process reopens it).
async fn compact_when_large(raft: Raft<TypeConfig>, log_bytes: impl Fn() -> Option<u64>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_trigger: Option<Instant> = None;
    loop {
        tick.tick().await;
        if raft.metrics().borrow().running_state.is_err() {
            return;
        }
        let Some(bytes) = log_bytes() else {
            return;
        };
        let recent = last_trigger.is_some_and(|t| t.elapsed() < Duration::from_secs(10));
        if bytes <= LOG_BYTES_LIMIT || recent {
            continue;
        }
        tracing::info!(
            bytes,
            "the raft log is large; taking a snapshot to compact it"
        );
        last_trigger = Some(Instant::now());
        if raft.trigger().snapshot().await.is_err() {
            return; // raft stopped
        }
    }
}

fn unexpected(reply: PeerReply) -> ProposeError {
    ProposeError::Refused(format!("a server answered with {}", reply.variant()))
}
