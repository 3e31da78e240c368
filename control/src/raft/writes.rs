//! Batched proposals: writes that arrive while earlier ones are still on their way through raft
//! are proposed together as one `Command::Batch` entry. On the leader a task gathers them
//! (`WriteBatcher`); on every server, writes forwarded to the leader are combined the same way
//! (`Combiner`: whichever caller finds a free slot sends everything waiting), so a follower
//! sends one call per batch instead of one per write, as etcd's followers do with proposals.
//!
//! Why: openraft's core handles every entry as several messages (the write, the log flush, the
//! replication answers, the apply), one at a time. Under many concurrent clients that core, not
//! the disk or the network, was the limit. One entry per batch cuts its work per write by the
//! batch size; a lone write is proposed as it is, so nothing waits when there is no load.
//!
//! Each command of a batch is checked and applied as if alone (see `Command::Batch`); a batch
//! never holds two commands on the same object, so each object changes at most once per entry.

use super::calls::CallError;
use super::readindex::not_leader;
use super::types::TypeConfig;
use crate::store::{Command, CommandResult};
use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Entries proposed and not yet applied at once: while all are in flight, new writes gather
/// into the next batch.
pub(crate) const IN_FLIGHT: usize = 4;
/// Commands per entry at most: an entry must stay well under the RPC frame limit, and the live
/// log is kept in memory, so entries stay small (a few hundred KiB at most).
const MAX_BATCH: usize = 64;

type Reply = oneshot::Sender<Result<CommandResult, CallError>>;

/// The queue into the batching task; the task ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct WriteBatcher {
    queue: mpsc::UnboundedSender<(Command, Reply)>,
}

impl WriteBatcher {
    pub(crate) fn start(raft: Raft<TypeConfig>) -> WriteBatcher {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        WriteBatcher { queue }
    }

    /// Proposes `cmd` (alone or with others) and returns what applying it produced.
    pub(crate) async fn write(&self, cmd: Command) -> Result<CommandResult, CallError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((cmd, tx))
            .map_err(|_| CallError::Stopped("the write batcher stopped".into()))?;
        rx.await
            .unwrap_or_else(|_| Err(CallError::Stopped("the write batcher stopped".into())))
    }
}

async fn run(raft: Raft<TypeConfig>, mut rx: mpsc::UnboundedReceiver<(Command, Reply)>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut waiting: VecDeque<(Command, Reply)> = VecDeque::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if waiting.is_empty() {
            match rx.recv().await {
                Some(w) => waiting.push_back(w),
                None => return,
            }
        }
        while let Ok(w) = rx.try_recv() {
            waiting.push_back(w);
        }
        let batch = take_batch(&mut waiting);
        let raft = raft.clone();
        tokio::spawn(async move {
            propose(&raft, batch).await;
            drop(slot);
        });
    }
}

/// Takes the next batch off the front of `waiting`, up to `MAX_BATCH`: a command on an object
/// the batch already changes stays (in order) for the next one. Blobs, binds and batches (the
/// scheduler's own) go alone.
pub(crate) fn take_batch<R>(waiting: &mut VecDeque<(Command, R)>) -> Vec<(Command, R)> {
    let Some(first) = waiting.pop_front() else {
        return Vec::new();
    };
    let Some(first_key) = batch_key(&first.0) else {
        return vec![first];
    };
    let mut keys = HashSet::from([first_key]);
    let mut batch = vec![first];
    let mut kept = VecDeque::new();
    while batch.len() < MAX_BATCH {
        let Some(next) = waiting.pop_front() else {
            break;
        };
        if batch_key(&next.0).is_some_and(|key| keys.insert(key)) {
            batch.push(next);
        } else {
            kept.push_back(next);
        }
    }
    kept.extend(waiting.drain(..));
    *waiting = kept;
    batch
}

/// Whether a command may share an entry with others at all.
pub(crate) fn batchable(cmd: &Command) -> bool {
    batch_key(cmd).is_some()
}

/// The object a command changes, if it may share an entry with others.
fn batch_key(cmd: &Command) -> Option<String> {
    match cmd {
        Command::Put { object, .. } => Some(object.key().storage_key()),
        Command::Delete { key, .. } => Some(key.storage_key()),
        _ => None,
    }
}

async fn propose(raft: &Raft<TypeConfig>, mut batch: Vec<(Command, Reply)>) {
    if batch.len() == 1 {
        if let Some((cmd, reply)) = batch.pop() {
            let _ = reply.send(client_write(raft, cmd).await); // the caller may have gone
        }
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
    let n = commands.len();
    match client_write(raft, Command::Batch(commands)).await {
        Ok(CommandResult::Batch(results)) if results.len() == n => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Ok(other) => {
            let e =
                CallError::Storage(format!("a batch of {n} writes was answered with {other:?}"));
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

async fn client_write(raft: &Raft<TypeConfig>, cmd: Command) -> Result<CommandResult, CallError> {
    match raft.client_write(cmd).await {
        Ok(resp) => Ok(resp.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(not_leader(f)),
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(CallError::Refused(e.to_string()))
        }
        Err(RaftError::Fatal(f)) => Err(CallError::Stopped(f.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Precondition;
    use edge_api::{ConfigMap, Object};

    fn put(name: &str) -> (Command, ()) {
        let mut cm = ConfigMap::default();
        cm.metadata.name = name.into();
        cm.metadata.namespace = "default".into();
        let cmd = Command::Put {
            object: Object::ConfigMap(cm),
            precondition: Precondition::None,
        };
        (cmd, ())
    }

    fn names(batch: &[(Command, ())]) -> Vec<String> {
        batch
            .iter()
            .map(|(c, _)| match c {
                Command::Put { object, .. } => object.meta().name.clone(),
                _ => "other".into(),
            })
            .collect()
    }

    #[test]
    fn a_second_write_to_the_same_object_waits_for_the_next_entry_in_order() {
        let mut waiting: VecDeque<_> = ["a", "b", "a", "c", "a", "d"].map(put).into();
        assert_eq!(names(&take_batch(&mut waiting)), ["a", "b", "c", "d"]);
        assert_eq!(names(&take_batch(&mut waiting)), ["a"]);
        assert_eq!(names(&take_batch(&mut waiting)), ["a"]);
        assert!(take_batch(&mut waiting).is_empty());
    }

    #[test]
    fn blobs_go_alone_and_batches_are_capped() {
        let blob = || {
            let cmd = Command::PutBlob {
                digest: "sha256:00".into(),
                data: vec![1],
            };
            (cmd, ())
        };
        let mut waiting: VecDeque<_> = vec![blob(), put("x"), blob(), put("y")].into();
        assert_eq!(names(&take_batch(&mut waiting)), ["other"]);
        assert_eq!(names(&take_batch(&mut waiting)), ["x", "y"]);
        assert_eq!(names(&take_batch(&mut waiting)), ["other"]);

        let mut waiting: VecDeque<_> = (0..MAX_BATCH + 10).map(|i| put(&i.to_string())).collect();
        assert_eq!(take_batch(&mut waiting).len(), MAX_BATCH);
        assert_eq!(
            take_batch(&mut waiting).len(),
            10,
            "what did not fit goes next"
        );
    }
}
