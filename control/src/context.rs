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
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            node_grace_period: Duration::from_secs(40),
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
    pub liveness: Mutex<HashMap<String, Instant>>,
    /// When this server started; nodes get a grace period from here after a restart or failover.
    pub started: Instant,
}

impl ControlPlane {
    pub fn new(
        raft: Arc<RaftNode>,
        pki: Arc<ClusterPki>,
        options: ServerOptions,
    ) -> Arc<ControlPlane> {
        Arc::new(ControlPlane {
            raft,
            pki,
            options,
            agents: Mutex::new(HashMap::new()),
            liveness: Mutex::new(HashMap::new()),
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

    pub fn heard_from(&self, node: &str) {
        self.liveness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_string(), Instant::now());
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
