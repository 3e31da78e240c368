//! A server removed from the cluster (`edgectl member remove`) finds out and stops, instead of
//! serving a store that no cluster keeps up to date and campaigning against the members.
//!
//! It finds out in one of two ways: its own log reaches the membership without it, or (when
//! the leader stopped sending it entries first, or it was down when removed) its vote request
//! reaches the leader, which answers `RaftRpcReply::Removed`. Only a leader answers so: every
//! membership that could hold the candidate, committed or not, is in the leader's log, so a
//! candidate it does not know cannot be a member.

use super::membership::holds;
use super::types::NodeId;
use super::RaftNode;
use openraft::raft::VoteRequest;
use openraft::ServerState;

impl RaftNode {
    /// Whether a vote request comes from a server this leader's membership does not hold.
    pub(super) fn is_removed_candidate(&self, request: &VoteRequest<NodeId>) -> bool {
        let Some(candidate) = request.vote.leader_id().voted_for() else {
            return false;
        };
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.state == ServerState::Leader
            && m.current_leader == Some(self.node_id)
            && holds(m.membership_config.membership(), candidate) == Some(false)
    }

    /// Resolves once this server knows it is no longer a member. Watches the server metrics,
    /// which change with the membership, leader or vote only: the full metrics change several
    /// times per write, and each change woke this waiter (on `edged`'s main thread).
    pub async fn removed(&self) {
        let mut told = self.network.removed.subscribe();
        let mut metrics = self.raft.server_metrics();
        loop {
            let gone = holds(
                metrics.borrow_and_update().membership_config.membership(),
                self.node_id,
            ) == Some(false);
            if gone || *told.borrow_and_update() {
                return;
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { std::future::pending::<()>().await },
                changed = told.changed() => if changed.is_err() { std::future::pending::<()>().await },
            }
        }
    }
}
