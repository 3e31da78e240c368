//! Control-plane membership on the wire: what `edgectl member list` shows, and what a new
//! server receives when it joins (`edged server --join`).

use serde::{Deserialize, Serialize};

/// A server's part in the raft group.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Leader,
    /// A voter that is not the leader (or whose state is unknown because it did not answer).
    Follower,
    /// Receives the log but does not vote yet (a server still catching up after joining).
    Learner,
}

impl std::fmt::Display for MemberRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemberRole::Leader => "leader",
            MemberRole::Follower => "follower",
            MemberRole::Learner => "learner",
        })
    }
}

/// One control-plane server as the answering server sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub id: u64,
    /// `host:port` of its QUIC endpoint (API, agents and raft).
    pub address: String,
    pub role: MemberRole,
    /// Whether it answered the status query; the indexes are unknown when it did not.
    pub reachable: bool,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
}

/// What a joining server receives: its raft node id and the cluster's PKI, so that it can
/// serve clients, agents and raft peers, and issue certificates to nodes that join through it.
#[derive(Serialize, Deserialize, Clone)]
pub struct ServerJoin {
    pub node_id: u64,
    pub ca_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Never prints the keys.
impl std::fmt::Debug for ServerJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerJoin")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}
