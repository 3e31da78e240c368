//! The shared state of one control-plane server: its raft node, PKI, agent links and the
//! in-memory node liveness that heartbeats feed (never written to raft).

use crate::pki::ClusterPki;
use crate::raft::RaftNode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// A node silent for longer than this is marked NotReady.
    pub node_grace_period: Duration,
    /// Eviction pacing and default tolerations (see `nodes`).
    pub lifecycle: crate::nodes::LifecycleOptions,
    /// Membership in a multi-server control plane.
    pub ha: HaOptions,
}

/// How this server takes part in a control plane of several servers.
#[derive(Clone, Debug, Default)]
pub struct HaOptions {
    /// `host:port` at which other servers, agents and clients reach this one; by default the
    /// listen address (loopback for a wildcard, which only suits a single machine).
    pub advertise: Option<String>,
    /// On first start, join this cluster instead of creating a new one.
    pub join: Option<JoinTarget>,
    pub raft: crate::raft::RaftTuning,
}

/// An existing server to join through, and the token that admits us.
#[derive(Clone)]
pub struct JoinTarget {
    pub address: String,
    pub token: edge_api::tls::JoinToken,
}

/// Never prints the token's secret.
impl std::fmt::Debug for JoinTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinTarget")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            node_grace_period: Duration::from_secs(40),
            lifecycle: Default::default(),
            ha: HaOptions::default(),
        }
    }
}

pub struct ControlPlane {
    pub raft: Arc<RaftNode>,
    pub pki: Arc<ClusterPki>,
    pub options: ServerOptions,
    /// The live QUIC connection of each connected agent, by node name.
    pub agents: Mutex<HashMap<String, quinn::Connection>>,
    /// When each node was last heard from.
    /// Shared with the raft node, which records there the heartbeats other servers relay to
    /// the leader for the agents connected to them.
    pub liveness: Arc<Mutex<HashMap<String, Instant>>>,
    /// When this server started; nodes get a grace period from here after a restart or failover.
    pub started: Instant,
}

impl ControlPlane {
    pub fn new(
        raft: Arc<RaftNode>,
        pki: Arc<ClusterPki>,
        options: ServerOptions,
    ) -> Arc<ControlPlane> {
        let liveness = Arc::clone(&raft.liveness);
        Arc::new(ControlPlane {
            raft,
            pki,
            options,
            agents: Mutex::new(HashMap::new()),
            liveness,
            started: Instant::now(),
        })
    }

    pub fn agent_connection(&self, node: &str) -> Option<quinn::Connection> {
        let agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents
            .get(node)
            .filter(|c| c.close_reason().is_none())
            .cloned()
    }

    pub fn register_agent(&self, node: &str, conn: quinn::Connection) {
        self.agents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_string(), conn);
        self.heard_from(node);
    }

    pub fn unregister_agent(&self, node: &str, conn: &quinn::Connection) {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        if agents
            .get(node)
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            agents.remove(node);
        }
    }

    /// Records a heartbeat; on a follower it is also relayed to the leader, which keeps the
    /// liveness that counts (agents may be connected to any server).
    pub fn heard_from(&self, node: &str) {
        self.liveness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_string(), Instant::now());
        if !self.raft.is_leader() {
            self.raft.relay_heartbeat(node);
        }
    }

    /// How long since the node was last heard from, counting from server start if never.
    pub fn silence(&self, node: &str) -> Duration {
        let liveness = self.liveness.lock().unwrap_or_else(|p| p.into_inner());
        liveness
            .get(node)
            .copied()
            .unwrap_or(self.started)
            .elapsed()
    }
}
