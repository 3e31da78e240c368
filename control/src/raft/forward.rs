//! Writes on their way to the leader, combined: a caller that finds a free slot sends every
//! write waiting as one `Command::Batch` call (the leader's batcher queues its commands with
//! everything else waiting there, see `WriteBatcher::write_each`) and hands
//! each waiter its own result, so a follower under load makes one call per batch, not per write.
//! It also remembers the newest revision a write through this server was answered with, so a
//! decision made on this server's state can first wait to see it (`applied_own_writes`).

use super::calls::{PeerCall, PeerReply};
use super::writes::{batchable, send_batch, take_batch, BatchError, IN_FLIGHT};
use super::{unexpected, ProposeError, RaftNode};
use crate::store::{Command, CommandResult};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};

type Reply = oneshot::Sender<Result<CommandResult, ProposeError>>;

/// Writes waiting to be sent, and the slots for calls in flight.
pub(crate) struct Combiner {
    waiting: Mutex<VecDeque<(Command, Reply)>>,
    slots: Semaphore,
    /// The newest store revision a write proposed here was answered with.
    answered: AtomicU64,
}

impl Default for Combiner {
    fn default() -> Self {
        Combiner {
            waiting: Mutex::new(VecDeque::new()),
            slots: Semaphore::new(IN_FLIGHT),
            answered: AtomicU64::new(0),
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
        let result = self.propose_combined(cmd).await;
        if let Ok(r) = &result {
            self.forward
                .answered
                .fetch_max(newest_revision(r), Ordering::Relaxed);
        }
        result
    }

    /// Waits, for at most `within`, until this server's state holds every write `propose`
    /// answered here; returns whether it does. A follower learns that an entry committed a
    /// little after the leader answers for it, so a client writing the same object again
    /// through this server would otherwise be decided on its old version, refused by its
    /// precondition, and decided again after a read barrier: a wasted quorum round and write.
    pub async fn applied_own_writes(&self, within: Duration) -> bool {
        let answered = self.forward.answered.load(Ordering::Relaxed);
        self.store
            .watch_hub()
            .applied_through(answered, within)
            .await
    }

    async fn propose_combined(&self, cmd: Command) -> Result<CommandResult, ProposeError> {
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

/// The newest revision `result` wrote: what a reader must see to see this write.
fn newest_revision(result: &CommandResult) -> u64 {
    match result {
        CommandResult::Stored(o) | CommandResult::Deleted(o) => o.meta().resource_version,
        CommandResult::Batch(results) => results.iter().map(newest_revision).max().unwrap_or(0),
        CommandResult::BlobStored | CommandResult::Rejected(_) | CommandResult::Nothing => 0,
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
