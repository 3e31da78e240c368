//! Batched ReadIndex on the leader: openraft confirms leadership for each `get_read_log_id`
//! call with its own round of heartbeats to every voter, so concurrent reads share one round.
//! A caller only joins a round that starts after it arrived, which keeps every read
//! linearizable.

use super::calls::CallError;
use super::types::Raft;
use openraft::error::{CheckIsLeaderError, ForwardToLeader, RaftError};
use openraft::BasicNode;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

type Outcome = Result<Option<u64>, CallError>;

#[derive(Default)]
struct State {
    /// A round is being driven (by a spawned task).
    running: bool,
    /// Callers waiting for the next round.
    waiting: Vec<oneshot::Sender<Outcome>>,
}

#[derive(Default)]
pub struct ReadBatcher {
    state: Mutex<State>,
}

impl ReadBatcher {
    /// The log index a read must wait for, from a leadership check that began after this call.
    pub async fn read_index(self: &Arc<Self>, raft: &Raft) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.waiting.push(tx);
            !std::mem::replace(&mut st.running, true)
        };
        if start {
            // A task of its own: a caller that gives up must not stall the others.
            tokio::spawn(self.clone().drive(raft.clone()));
        }
        rx.await
            .unwrap_or_else(|_| Err(CallError::Stopped("the read-index task ended".into())))
    }

    async fn drive(self: Arc<Self>, raft: Raft) {
        loop {
            let batch = {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if st.waiting.is_empty() {
                    st.running = false;
                    return;
                }
                std::mem::take(&mut st.waiting)
            };
            let outcome = match raft.get_read_log_id().await {
                Ok((read, _applied)) => Ok(read.map(|l| l.index)),
                Err(e) => Err(check_error(e)),
            };
            for tx in batch {
                let _ = tx.send(outcome.clone());
            }
        }
    }
}

fn check_error(e: RaftError<u64, CheckIsLeaderError<u64, BasicNode>>) -> CallError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => not_leader(f),
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
            CallError::NoQuorum(q.to_string())
        }
        RaftError::Fatal(f) => CallError::Stopped(f.to_string()),
    }
}

pub(crate) fn not_leader(f: ForwardToLeader<u64, BasicNode>) -> CallError {
    let leader = f
        .leader_id
        .map(|id| (id, f.leader_node.map(|n| n.addr).unwrap_or_default()));
    CallError::NotLeader { leader }
}
