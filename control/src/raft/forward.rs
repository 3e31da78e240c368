//! Writes on their way to the leader, combined: a caller that finds a free slot sends every
//! write waiting as one `Command::Batch` call (the leader's batcher queues its commands with
//! everything else waiting there, see `WriteBatcher::write_each`) and hands
//! each waiter its own result, so a follower under load makes one call per batch, not per write.

use super::calls::{PeerCall, PeerReply};
use super::writes::{batchable, send_batch, take_batch, BatchError, IN_FLIGHT};
use super::{unexpected, ProposeError, RaftNode};
use crate::store::{Command, CommandResult};
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::{oneshot, Semaphore};

type Reply = oneshot::Sender<Result<CommandResult, ProposeError>>;

/// Writes waiting to be sent, and the slots for calls in flight.
pub(crate) struct Combiner {
    waiting: Mutex<VecDeque<(Command, Reply)>>,
    slots: Semaphore,
}

impl Default for Combiner {
    fn default() -> Self {
        Combiner {
            waiting: Mutex::new(VecDeque::new()),
            slots: Semaphore::new(IN_FLIGHT),
        }
    }
}

impl Combiner {
    fn waiting(&self) -> std::sync::MutexGuard<'_, VecDeque<(Command, Reply)>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RaftNode {
    /// Commits `cmd` through raft (on the leader, wherever it is) and returns what applying it
    /// produced (possibly a rejection from a failed precondition, which is not an error here).
    /// Retried across leader changes only while it certainly was not applied.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult, ProposeError> {
        if !batchable(&cmd) {
            return self.propose_alone(cmd).await;
        }
        let (tx, mut rx) = oneshot::channel();
        self.forward.waiting().push_back((cmd, tx));
        loop {
            let slot = tokio::select! {
                biased;
                answer = &mut rx => return answered(answer),
                slot = self.forward.slots.acquire() => slot,
            };
            let Ok(_slot) = slot else {
                return Err(ProposeError::Refused("the write queue closed".into()));
            };
            let batch = take_batch(&mut self.forward.waiting());
            if batch.is_empty() {
                // Another caller took this write with its batch and answers it.
                return answered(rx.await);
            }
            send_batch(batch, |cmd| self.propose_alone(cmd)).await;
        }
    }

    async fn propose_alone(&self, cmd: Command) -> Result<CommandResult, ProposeError> {
        match self.on_leader(PeerCall::Write(cmd), false).await? {
            PeerReply::Written(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }
}

// The same error type every proposal returns; boxing it here alone would only add a copy.
#[allow(clippy::result_large_err)]
fn answered(
    answer: Result<Result<CommandResult, ProposeError>, oneshot::error::RecvError>,
) -> Result<CommandResult, ProposeError> {
    answer.unwrap_or_else(|_| {
        Err(ProposeError::Unavailable(
            "the call carrying this write with others was abandoned".into(),
        ))
    })
}

impl BatchError for ProposeError {
    fn copy(&self) -> ProposeError {
        match self {
            ProposeError::NotLeader { leader } => ProposeError::NotLeader {
                leader: leader.clone(),
            },
            ProposeError::NoQuorum(m) => ProposeError::NoQuorum(m.clone()),
            ProposeError::Refused(m) => ProposeError::Refused(m.clone()),
            ProposeError::Unavailable(m) => ProposeError::Unavailable(m.clone()),
            ProposeError::Timeout(d) => ProposeError::Timeout(*d),
            ProposeError::Fatal(f) => ProposeError::Fatal(f.clone()),
        }
    }
    fn mismatched(message: String) -> Self {
        ProposeError::Refused(message)
    }
}
