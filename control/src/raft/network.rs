//! Raft RPC over QUIC: one bidirectional stream per call, one CBOR frame each way, on a
//! connection per peer that is (re)established lazily and shared by every client openraft makes
//! for that peer.

use super::calls::{CallError, PeerCall, PeerReply};
use super::durable;
use super::types::{Node, NodeId, SnapshotMeta, TypeConfig, Vote};
use super::wal::Wal;
use super::RaftNode;
use edge_api::wire::{read_frame, write_frame, WireError, MAX_FRAME_BYTES};
use futures::future::{BoxFuture, FutureExt, Shared};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;
use tracing::debug;

/// Above this an AppendEntries batch is split (openraft retries with fewer entries), so one
/// RPC does not hold the stream for long and stays far below the receiver's frame limit.
const SOFT_FRAME_BYTES: usize = 8 << 20;

/// One raft request, as sent on a fresh stream.
// Encoded once and dropped: boxing the large variants would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize)]
pub enum RaftRpc {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(SnapshotChunk),
    /// Not raft's own: forwarded writes and reads, membership changes, status, blobs.
    Call(PeerCall),
    /// Open a stream to `node`'s agent, which is connected to the callee, send it `request`
    /// (logs, port-forward), answer `Response::Ok` and then relay bytes both ways; or answer
    /// with the error. Not relayed any further.
    ToAgent {
        node: String,
        request: edge_api::wire::Request,
    },
}

/// A relay request read off a raft stream, for the API server to serve (it holds the agents'
/// connections, which raft does not know).
pub struct AgentRelay {
    pub node: String,
    pub request: edge_api::wire::Request,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
}

/// openraft's `InstallSnapshotRequest` with its bytes as a CBOR byte string (a plain `Vec<u8>`
/// would be encoded as an array, about twice the size).
#[derive(Serialize, Deserialize)]
pub struct SnapshotChunk {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub offset: u64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    pub done: bool,
}

impl From<InstallSnapshotRequest<TypeConfig>> for SnapshotChunk {
    fn from(r: InstallSnapshotRequest<TypeConfig>) -> Self {
        SnapshotChunk {
            vote: r.vote,
            meta: r.meta,
            offset: r.offset,
            data: r.data,
            done: r.done,
        }
    }
}

impl From<SnapshotChunk> for InstallSnapshotRequest<TypeConfig> {
    fn from(c: SnapshotChunk) -> Self {
        InstallSnapshotRequest {
            vote: c.vote,
            meta: c.meta,
            offset: c.offset,
            data: c.data,
            done: c.done,
        }
    }
}

/// The answer to a `RaftRpc`, carrying the remote raft's own error if it refused.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize)]
pub enum RaftRpcReply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Call(Result<PeerReply, CallError>),
    /// To a vote request, from a leader whose membership does not hold the candidate: it was
    /// removed from the cluster.
    Removed,
}

impl RaftRpcReply {
    fn kind(&self) -> &'static str {
        match self {
            RaftRpcReply::AppendEntries(_) => "AppendEntries",
            RaftRpcReply::Vote(_) => "Vote",
            RaftRpcReply::InstallSnapshot(_) => "InstallSnapshot",
            RaftRpcReply::Call(_) => "Call",
            RaftRpcReply::Removed => "Removed",
        }
    }
}

/// Why a call did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No connection: openraft should back off before trying this peer again.
    #[error("raft peer {target} at {addr} is unreachable: {reason}")]
    Unreachable {
        target: NodeId,
        addr: String,
        reason: String,
    },
    /// The connection exists but this call failed: openraft may retry at once.
    #[error("raft {rpc} RPC to peer {target} failed: {reason}")]
    Call {
        target: NodeId,
        rpc: &'static str,
        reason: String,
    },
}

impl TransportError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<NodeId, Node, E> {
        match &self {
            TransportError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&self)),
            TransportError::Call { .. } => RPCError::Network(NetworkError::new(&self)),
        }
    }
}

/// How long one dial may take; it runs in its own task, so an RPC timing out does not abort it.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// After a failed dial, calls fail at once as Unreachable (so openraft backs off) for this long.
const REDIAL_AFTER: Duration = Duration::from_secs(1);

/// A dial in progress, awaited by every call that needs the connection meanwhile.
type Dial = Shared<BoxFuture<'static, Result<quinn::Connection, String>>>;

/// What we know about reaching one peer, shared by all clients for that peer.
#[derive(Default)]
struct PeerState {
    /// The address the rest of the state is about; a peer that moved starts afresh.
    addr: String,
    conn: Option<quinn::Connection>,
    dial: Option<Dial>,
    failed: Option<(Instant, String)>,
}

type PeerSlot = Arc<Mutex<PeerState>>;

/// Poisoning only means another task panicked while holding the lock; every update below is a
/// plain field assignment, so the state is still coherent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// openraft's network factory: dials peers at `BasicNode.addr` with the cluster's mTLS client
/// configuration (ALPN `edge-raft/1`), presenting `edge_api::SERVER_NAME` as the server name.
#[derive(Clone)]
pub struct QuicNetwork {
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    peers: Arc<Mutex<HashMap<NodeId, PeerSlot>>>,
    /// Set when a leader answered this server's vote request with `Removed`.
    pub(super) removed: Arc<tokio::sync::watch::Sender<bool>>,
    /// This server's raft log, whose durability bounds the commit index told to followers
    /// (`durable::commit_to_tell`); set by `RaftNode::start_with`.
    pub(super) log: Option<Wal>,
}

/// A peer that stops answering is given up after this long, so the next call dials afresh:
/// a restarted server comes back at the same address, but the old connection's packets are
/// silently dropped there. Keep-alives every `PEER_KEEPALIVE` keep a healthy idle link open.
const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(3);
const PEER_KEEPALIVE: Duration = Duration::from_millis(500);

impl QuicNetwork {
    pub fn new(endpoint: quinn::Endpoint, mut client_config: quinn::ClientConfig) -> QuicNetwork {
        let mut transport = edge_api::tls::transport_config();
        transport.keep_alive_interval(Some(PEER_KEEPALIVE));
        if let Ok(idle) = quinn::IdleTimeout::try_from(PEER_IDLE_TIMEOUT) {
            transport.max_idle_timeout(Some(idle));
        }
        client_config.transport_config(Arc::new(transport));
        QuicNetwork {
            endpoint,
            client_config,
            peers: Arc::default(),
            removed: Arc::new(tokio::sync::watch::channel(false).0),
            log: None,
        }
    }
}

/// Why a `QuicNetwork::call` got no answer.
#[derive(Debug)]
pub enum CallFailure {
    /// Nothing reached the peer (no connection): the call may be retried elsewhere.
    NotSent(String),
    /// The request may have reached the peer and had its effect; only the answer is missing.
    Lost(String),
}

impl QuicNetwork {
    pub(super) fn peer(&self, target: NodeId, addr: &str) -> QuicPeer {
        let slot = lock(&self.peers).entry(target).or_default().clone();
        QuicPeer {
            target,
            addr: addr.to_string(),
            slot,
            endpoint: self.endpoint.clone(),
            client_config: self.client_config.clone(),
            removed: self.removed.clone(),
            log: self.log.clone(),
        }
    }

    /// Makes a `PeerCall` on server `target` at `addr`, sharing raft's connection to it.
    pub(crate) async fn call(
        &self,
        target: NodeId,
        addr: &str,
        call: &PeerCall,
        timeout: Duration,
    ) -> Result<Result<PeerReply, CallError>, CallFailure> {
        let peer = self.peer(target, addr);
        let frame = edge_api::wire::encode_frame(&RaftRpc::Call(call.clone()))
            .map_err(|e| CallFailure::NotSent(e.to_string()))?;
        let conn = tokio::time::timeout(timeout, peer.connection())
            .await
            .map_err(|_| CallFailure::NotSent(format!("no connection within {timeout:?}")))?
            .map_err(|e| CallFailure::NotSent(e.to_string()))?;
        match tokio::time::timeout(timeout, peer.exchange_on(&conn, "Call", &frame)).await {
            Err(_) => Err(CallFailure::Lost(format!(
                "server {target} at {addr} did not answer within {timeout:?}"
            ))),
            Ok(Err(e)) => Err(CallFailure::Lost(e.to_string())),
            Ok(Ok(RaftRpcReply::Call(r))) => Ok(r),
            Ok(Ok(other)) => Err(CallFailure::Lost(peer.mismatch("Call", &other).to_string())),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for QuicNetwork {
    type Network = QuicPeer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> QuicPeer {
        self.peer(target, &node.addr)
    }
}

/// A client for one peer.
pub struct QuicPeer {
    target: NodeId,
    addr: String,
    slot: PeerSlot,
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    removed: Arc<tokio::sync::watch::Sender<bool>>,
    log: Option<Wal>,
}

impl QuicPeer {
    fn unreachable(&self, reason: impl std::fmt::Display) -> TransportError {
        TransportError::Unreachable {
            target: self.target,
            addr: self.addr.clone(),
            reason: reason.to_string(),
        }
    }

    /// The live connection to the peer, dialing if there is none, it died, or the peer moved.
    pub(super) async fn connection(&self) -> Result<quinn::Connection, TransportError> {
        let dial = {
            let mut st = lock(&self.slot);
            if st.addr != self.addr {
                *st = PeerState {
                    addr: self.addr.clone(),
                    ..PeerState::default()
                };
            }
            if let Some(conn) = &st.conn {
                if conn.close_reason().is_none() {
                    return Ok(conn.clone());
                }
                st.conn = None;
            }
            if let Some((at, reason)) = &st.failed {
                if at.elapsed() < REDIAL_AFTER {
                    return Err(self.unreachable(reason));
                }
            }
            match &st.dial {
                Some(d) => d.clone(),
                None => {
                    let d = self.spawn_dial();
                    st.dial = Some(d.clone());
                    d
                }
            }
        };
        let result = dial.clone().await;
        let mut st = lock(&self.slot);
        if st.dial.as_ref().is_some_and(|d| d.ptr_eq(&dial)) {
            st.dial = None;
            match &result {
                Ok(conn) => {
                    st.conn = Some(conn.clone());
                    st.failed = None;
                }
                Err(reason) => st.failed = Some((Instant::now(), reason.clone())),
            }
        }
        result.map_err(|reason| self.unreachable(reason))
    }

    /// Starts dialing in a task of its own: openraft drops an RPC after its short timeout
    /// (the heartbeat interval), which must not abort a handshake that is nearly done.
    fn spawn_dial(&self) -> Dial {
        let endpoint = self.endpoint.clone();
        let config = self.client_config.clone();
        let addr = self.addr.clone();
        let task = tokio::spawn(async move {
            let dial = async {
                let sock = tokio::net::lookup_host(addr.as_str())
                    .await
                    .map_err(|e| format!("cannot resolve: {e}"))?
                    .next()
                    .ok_or_else(|| "the address resolves to nothing".to_string())?;
                endpoint
                    .connect_with(config, sock, edge_api::SERVER_NAME)
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())
            };
            tokio::time::timeout(DIAL_TIMEOUT, dial)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {DIAL_TIMEOUT:?}")))
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(format!("dial task failed: {e}")))
        }
        .boxed()
        .shared()
    }

    /// Forgets `conn` if it is still the cached one, so the next call dials again.
    fn forget(&self, conn: &quinn::Connection) {
        let mut st = lock(&self.slot);
        if st
            .conn
            .as_ref()
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            st.conn = None;
        }
    }

    /// Sends one encoded request on a new stream and reads the reply.
    async fn exchange(
        &self,
        rpc: &'static str,
        frame: &[u8],
    ) -> Result<RaftRpcReply, TransportError> {
        let conn = self.connection().await?;
        self.exchange_on(&conn, rpc, frame).await
    }

    /// `exchange` on a connection obtained already.
    async fn exchange_on(
        &self,
        conn: &quinn::Connection,
        rpc: &'static str,
        frame: &[u8],
    ) -> Result<RaftRpcReply, TransportError> {
        let conn = conn.clone();
        let call_err = |reason: String| TransportError::Call {
            target: self.target,
            rpc,
            reason,
        };
        let (mut send, mut recv) = match conn.open_bi().await {
            Ok(s) => s,
            Err(e) => {
                self.forget(&conn);
                return Err(self.unreachable(e));
            }
        };
        // `frame` is header and body in one buffer (see `encode`), so it leaves in one packet.
        let written = async {
            send.write_all(frame).await?;
            send.finish()?;
            Ok::<_, std::io::Error>(())
        }
        .await;
        if let Err(e) = written {
            if conn.close_reason().is_some() {
                self.forget(&conn);
                return Err(self.unreachable(e));
            }
            return Err(call_err(format!("sending: {e}")));
        }
        match read_frame::<_, RaftRpcReply>(&mut recv, MAX_FRAME_BYTES).await {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(call_err(
                "the peer closed the stream without answering".into(),
            )),
            Err(e) => {
                if conn.close_reason().is_some() {
                    self.forget(&conn);
                    return Err(self.unreachable(e));
                }
                Err(call_err(format!("reading the answer: {e}")))
            }
        }
    }

    /// The request as one frame (header included); the caller sees its size before sending,
    /// which decides whether to split a batch.
    fn encode(&self, rpc: &'static str, req: &RaftRpc) -> Result<Vec<u8>, TransportError> {
        edge_api::wire::encode_frame(req).map_err(|e| TransportError::Call {
            target: self.target,
            rpc,
            reason: e.to_string(),
        })
    }

    fn mismatch(&self, rpc: &'static str, reply: &RaftRpcReply) -> TransportError {
        TransportError::Call {
            target: self.target,
            rpc,
            reason: format!("the peer answered {}", reply.kind()),
        }
    }
}

impl RaftNetwork<TypeConfig> for QuicPeer {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        if let Some(log) = &self.log {
            rpc.leader_commit = durable::commit_to_tell(log, &rpc)
                .await
                .map_err(|e| RPCError::Network(NetworkError::new(&std::io::Error::other(e))))?;
        }
        let entries = rpc.entries.len() as u64;
        let body = self
            .encode("AppendEntries", &RaftRpc::AppendEntries(rpc))
            .map_err(TransportError::into_rpc)?;
        if body.len() > SOFT_FRAME_BYTES && entries > 1 {
            // Ask openraft for a batch that should fit (at least one entry).
            let hint =
                (entries * SOFT_FRAME_BYTES as u64 / body.len() as u64).clamp(1, entries - 1);
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        match self
            .exchange("AppendEntries", &body)
            .await
            .map_err(TransportError::into_rpc)?
        {
            RaftRpcReply::AppendEntries(Ok(r)) => Ok(r),
            RaftRpcReply::AppendEntries(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.mismatch("AppendEntries", &other).into_rpc()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let body = self
            .encode("InstallSnapshot", &RaftRpc::InstallSnapshot(rpc.into()))
            .map_err(TransportError::into_rpc)?;
        match self
            .exchange("InstallSnapshot", &body)
            .await
            .map_err(TransportError::into_rpc)?
        {
            RaftRpcReply::InstallSnapshot(Ok(r)) => Ok(r),
            RaftRpcReply::InstallSnapshot(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.mismatch("InstallSnapshot", &other).into_rpc()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let body = self
            .encode("Vote", &RaftRpc::Vote(rpc))
            .map_err(TransportError::into_rpc)?;
        match self
            .exchange("Vote", &body)
            .await
            .map_err(TransportError::into_rpc)?
        {
            RaftRpcReply::Vote(Ok(r)) => Ok(r),
            RaftRpcReply::Vote(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            RaftRpcReply::Removed => {
                self.removed.send_replace(true);
                Err(self
                    .unreachable("it says this server was removed")
                    .into_rpc())
            }
            other => Err(self.mismatch("Vote", &other).into_rpc()),
        }
    }
}

/// Serves one raft RPC stream accepted on an `edge-raft/1` connection: reads one request,
/// hands it to the local raft, writes the reply. Errors are logged: the caller just retries.
/// A request to relay to an agent is handed back instead.
pub async fn serve_raft_stream(
    node: &RaftNode,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Option<AgentRelay> {
    let rpc = match read_frame::<_, RaftRpc>(&mut recv, MAX_FRAME_BYTES).await {
        Ok(Some(RaftRpc::ToAgent { node, request })) => {
            return Some(AgentRelay {
                node,
                request,
                send,
                recv,
            })
        }
        Ok(Some(rpc)) => rpc,
        Ok(None) => return None,
        Err(e) => {
            debug!(error = %e, "unreadable raft RPC");
            let _ = send.reset(quinn::VarInt::from_u32(1));
            return None;
        }
    };
    if let Err(e) = serve(node, rpc, &mut send).await {
        debug!(error = %e, "raft RPC stream failed");
        // Tell the caller at once instead of letting it wait for its timeout.
        let _ = send.reset(quinn::VarInt::from_u32(1));
    }
    None
}

async fn serve(
    node: &RaftNode,
    rpc: RaftRpc,
    send: &mut quinn::SendStream,
) -> Result<(), WireError> {
    let raft = &node.raft;
    let reply = match rpc {
        RaftRpc::AppendEntries(r) => {
            let acknowledges = durable::Acknowledges::sent_in(&r);
            let reply = raft.append_entries(r).await;
            acknowledges
                .durable(node.store.log(), &reply)
                .await
                .map_err(|e| WireError::Io(std::io::Error::other(e)))?;
            RaftRpcReply::AppendEntries(reply)
        }
        RaftRpc::Vote(r) if node.is_removed_candidate(&r) => RaftRpcReply::Removed,
        RaftRpc::Vote(r) => RaftRpcReply::Vote(raft.vote(r).await),
        RaftRpc::InstallSnapshot(c) => {
            RaftRpcReply::InstallSnapshot(raft.install_snapshot(c.into()).await)
        }
        RaftRpc::Call(call) => RaftRpcReply::Call(super::calls::handle(node, call).await),
        RaftRpc::ToAgent { .. } => {
            return Err(WireError::Io(std::io::Error::other(
                "agent relays are served by the API server",
            )))
        }
    };
    write_frame(send, &reply).await?;
    send.finish().map_err(|e| WireError::Io(e.into()))?;
    Ok(())
}
