//! Changing and showing who is in the raft group, and moving blobs between members.
//!
//! A new server joins in two steps: the leader adds it as a learner under a fresh node id
//! (`add_server`), then, once it runs and has caught up, makes it a voter (`promote`). Node ids
//! are chosen by the leader as one past both the largest id and the last log index, so they
//! never collide and are never reused after a removal.

use super::calls::{CallError, PeerCall, PeerReply};
use super::network::CallFailure;
use super::readindex::not_leader;
use super::types::NodeId;
use super::{ProposeError, RaftNode};
use edge_api::wire::{Member, MemberRole};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How far (in entries) a learner may trail the leader's log when it is promoted.
const PROMOTE_LAG: u64 = 100;
/// How long the leader waits for a learner to catch up before refusing to promote it.
const CATCH_UP: Duration = Duration::from_secs(60);

fn write_error(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> CallError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            CallError::Refused(e.to_string())
        }
        RaftError::Fatal(f) => CallError::Stopped(f.to_string()),
    }
}

/// The id for a new member: above every id in use and above the last log index (which only
/// grows, and grows with every membership change), so removed ids are never handed out again.
pub fn next_node_id(ids: impl IntoIterator<Item = NodeId>, last_log_index: u64) -> NodeId {
    let max_id = ids.into_iter().max().unwrap_or(0);
    max_id.max(last_log_index) + 1
}

impl RaftNode {
    pub(crate) fn ensure_leader(&self) -> Result<(), CallError> {
        if self.is_leader() {
            return Ok(());
        }
        Err(CallError::NotLeader {
            leader: self.leader(),
        })
    }

    /// Adds a server at `address` as a learner (through the leader) and returns its node id.
    pub async fn add_server(&self, address: String) -> Result<NodeId, ProposeError> {
        match self
            .on_leader(PeerCall::AddLearner { address }, false)
            .await?
        {
            PeerReply::Added(id) => Ok(id),
            other => Err(super::unexpected(other)),
        }
    }

    /// Makes learner `id` a voter (through the leader), once it has caught up.
    pub async fn promote(&self, id: NodeId) -> Result<(), ProposeError> {
        self.on_leader(PeerCall::Promote { id }, true)
            .await
            .map(drop)
    }

    /// Removes server `id` from the group (through the leader).
    pub async fn remove_member(&self, id: NodeId) -> Result<(), ProposeError> {
        self.on_leader(PeerCall::Remove { id }, true)
            .await
            .map(drop)
    }

    pub(crate) async fn add_learner_here(&self, address: String) -> Result<NodeId, CallError> {
        self.ensure_leader()?;
        let _guard = self.membership_lock.lock().await;
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        if let Some((id, _)) = membership.nodes().find(|(_, n)| n.addr == address) {
            if membership.get_joint_config().iter().any(|c| c.contains(id)) {
                return Err(CallError::Refused(format!(
                    "{address} is already server {id} of this cluster; if it was reinstalled, remove the old one first with `edgectl member remove {id}`"
                )));
            }
            // A learner at the same address: the same server retrying a join that it did not
            // finish. It keeps its id.
            return Ok(*id);
        }
        let id = next_node_id(
            membership.nodes().map(|(id, _)| *id),
            metrics.last_log_index.unwrap_or(0),
        );
        self.raft
            .add_learner(id, BasicNode::new(address.clone()), false)
            .await
            .map_err(write_error)?;
        tracing::info!(id, %address, "added a server as a learner");
        Ok(id)
    }

    pub(crate) async fn promote_here(&self, id: NodeId) -> Result<(), CallError> {
        self.ensure_leader()?;
        let _guard = self.membership_lock.lock().await;
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(CallError::Refused(format!(
                "server {id} is not a member of this cluster (it may have been removed); join again with a fresh data directory"
            )));
        }
        if membership.voter_ids().any(|v| v == id) {
            return Ok(());
        }
        let target = metrics
            .last_log_index
            .unwrap_or(0)
            .saturating_sub(PROMOTE_LAG);
        self.raft
            .wait(Some(CATCH_UP))
            .metrics(
                |m| {
                    let matched = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&id).cloned().flatten());
                    matched.is_some_and(|l| l.index >= target)
                },
                "the new server has caught up",
            )
            .await
            .map_err(|e| {
                CallError::Refused(format!(
                    "server {id} has not caught up with the log yet ({e}); it retries"
                ))
            })?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(write_error)?;
        tracing::info!(id, "promoted a server to voter");
        Ok(())
    }

    pub(crate) async fn remove_here(&self, id: NodeId) -> Result<(), CallError> {
        self.ensure_leader()?;
        let _guard = self.membership_lock.lock().await;
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(CallError::Refused(format!(
                "there is no server {id}; `edgectl member list` shows the members"
            )));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(CallError::Refused(format!(
                    "server {id} is the only voter; removing it would leave no cluster"
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(write_error)?;
        tracing::info!(id, "removed a server");
        Ok(())
    }

    /// This node's own view of itself.
    pub fn own_status(&self) -> Member {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => MemberRole::Leader,
            ServerState::Learner => MemberRole::Learner,
            _ => MemberRole::Follower,
        };
        Member {
            id: self.node_id,
            address: self.addr.clone(),
            role,
            reachable: true,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
        }
    }

    /// Every member of the group as this node knows it, each asked for its own state.
    pub async fn members(&self) -> Vec<Member> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let asks = membership.nodes().map(|(id, node)| {
            let (id, addr) = (*id, node.addr.clone());
            let voter = voters.contains(&id);
            async move {
                let fallback = Member {
                    id,
                    address: addr.clone(),
                    role: if voter {
                        MemberRole::Follower
                    } else {
                        MemberRole::Learner
                    },
                    reachable: false,
                    last_log_index: None,
                    applied_index: None,
                };
                if id == self.node_id {
                    return Member {
                        address: addr,
                        ..self.own_status()
                    };
                }
                match self
                    .network
                    .call(id, &addr, &PeerCall::Status, PeerCall::Status.timeout())
                    .await
                {
                    Ok(Ok(PeerReply::Status(m))) => Member {
                        id,
                        address: addr,
                        ..m
                    },
                    _ => fallback,
                }
            }
        });
        let mut members = futures::future::join_all(asks).await;
        // A member that did not answer may still be the leader as far as we know.
        for m in &mut members {
            if !m.reachable && metrics.current_leader == Some(m.id) {
                m.role = MemberRole::Leader;
            }
        }
        members
    }

    /// The addresses of every member, for clients and agents to fail over to.
    pub fn member_addresses(&self) -> Vec<String> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let mut addrs: Vec<String> = membership.nodes().map(|(_, n)| n.addr.clone()).collect();
        if addrs.is_empty() {
            addrs.push(self.addr.clone());
        }
        addrs
    }

    /// Whether this node is a voter in the membership it knows.
    pub fn is_voter(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        let is_voter = metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.node_id);
        is_voter
    }

    /// Whether this node appears at all in the membership it knows (`None` before it has
    /// received any).
    pub fn in_membership(&self) -> Option<bool> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        holds(m.membership_config.membership(), self.node_id)
    }

    /// The other members' ids and addresses, as this node knows them.
    pub(super) fn peers(&self) -> Vec<(NodeId, String)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != self.node_id)
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    }
}

/// Whether `membership` holds server `id`; `None` for the empty membership of a server that
/// has not heard from its cluster yet.
pub(super) fn holds(
    membership: &openraft::Membership<NodeId, BasicNode>,
    id: NodeId,
) -> Option<bool> {
    membership.nodes().next()?;
    Some(membership.get_node(&id).is_some())
}

/// Whether `acked` holds a majority of every configuration (two during a joint change).
fn majority_of_all(configs: &[BTreeSet<NodeId>], acked: &BTreeSet<NodeId>) -> bool {
    configs
        .iter()
        .all(|c| c.iter().filter(|id| acked.contains(id)).count() * 2 > c.len())
}

pub(super) async fn replicate_blob(
    node: &RaftNode,
    digest: String,
    data: Vec<u8>,
) -> Result<(), ProposeError> {
    let metrics = node.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    let configs: Vec<BTreeSet<NodeId>> = membership.get_joint_config().to_vec();
    let peers: BTreeMap<NodeId, String> = node.peers().into_iter().collect();
    let call = PeerCall::PutBlob {
        digest: digest.clone(),
        data: data.clone(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (id, addr) in peers {
        let (network, call, tx) = (node.network.clone(), call.clone(), tx.clone());
        // Each push runs to its end even after a majority answered: every member should have it.
        tokio::spawn(async move {
            let outcome = network.call(id, &addr, &call, call.timeout()).await;
            let ok = matches!(outcome, Ok(Ok(PeerReply::Done)));
            if !ok {
                tracing::warn!(id, %addr, outcome = ?outcome.err(), "could not push a blob to a server; it fetches it when needed");
            }
            let _ = tx.send((id, ok));
        });
    }
    drop(tx);
    drop(call);
    node.blobs
        .write(digest.clone(), data)
        .await
        .map_err(|e| ProposeError::Refused(e.to_string()))?;
    let mut acked = BTreeSet::from([node.node_id]);
    let mut failed = Vec::new();
    while !majority_of_all(&configs, &acked) {
        match rx.recv().await {
            Some((id, true)) => {
                acked.insert(id);
            }
            Some((id, false)) => failed.push(id),
            None => {
                return Err(ProposeError::NoQuorum(format!(
                    "only servers {acked:?} stored {digest}; servers {failed:?} did not"
                )))
            }
        }
    }
    Ok(())
}

pub(super) async fn fetch_blob(
    node: &RaftNode,
    digest: &str,
) -> Result<Option<Vec<u8>>, ProposeError> {
    match node.blobs.read(digest.to_string()).await {
        Ok(Some(b)) => return Ok(Some(b)),
        Ok(None) => {}
        // Not a digest at all: nobody has it.
        Err(super::BlobError::BadDigest(_)) => return Ok(None),
        Err(e) => return Err(ProposeError::Refused(e.to_string())),
    }
    // Uploaded before blobs left the log: still in the state machine.
    if let Ok(Some(b)) = crate::store::read_blob(&node.store.state(), digest) {
        return Ok(Some(b));
    }
    let peers = node.peers();
    let call = PeerCall::GetBlob {
        digest: digest.to_string(),
    };
    for (id, addr) in peers {
        match node.network.call(id, &addr, &call, call.timeout()).await {
            Ok(Ok(PeerReply::Blob(Some(bytes)))) => {
                let bytes = bytes.into_vec();
                // `write` checks the digest: a peer cannot hand us other bytes.
                match node.blobs.write(digest.to_string(), bytes.clone()).await {
                    Ok(()) => return Ok(Some(bytes)),
                    Err(e) => tracing::warn!(id, error = %e, "a server sent a bad blob"),
                }
            }
            Ok(_) => {}
            Err(CallFailure::NotSent(e) | CallFailure::Lost(e)) => {
                tracing::debug!(id, error = %e, "could not ask a server for a blob")
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_never_collide_or_come_back() {
        assert_eq!(next_node_id([1], 3), 4);
        assert_eq!(next_node_id([1, 4], 2), 5);
        // After removing the highest id, the log has grown past it: no reuse.
        assert_eq!(next_node_id([1, 2], 9), 10);
        assert_eq!(next_node_id([], 0), 1);
    }

    #[test]
    fn majorities_count_in_every_configuration() {
        let c = |ids: &[u64]| ids.iter().copied().collect::<BTreeSet<_>>();
        assert!(majority_of_all(&[c(&[1, 2, 3])], &c(&[1, 3])));
        assert!(!majority_of_all(&[c(&[1, 2, 3])], &c(&[1])));
        assert!(majority_of_all(&[c(&[1])], &c(&[1])));
        // Joint: {1,2,3} and {3,4,5} both need a majority.
        assert!(!majority_of_all(
            &[c(&[1, 2, 3]), c(&[3, 4, 5])],
            &c(&[1, 2, 3])
        ));
        assert!(majority_of_all(
            &[c(&[1, 2, 3]), c(&[3, 4, 5])],
            &c(&[1, 3, 4])
        ));
    }
}
