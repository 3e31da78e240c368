//! Batched proposals: writes that arrive while earlier ones are still on their way through raft
//! are proposed together as one `Command::Batch` entry. On the leader a task gathers them
//! (`WriteBatcher`); on every server, writes forwarded to the leader are combined the same way
//! (`Combiner`: whichever caller finds a free slot sends everything waiting), so a follower
//! sends one call per batch instead of one per write, as etcd's followers do with proposals.
//!
//! Why: openraft's core handles every entry as several messages (the write, the log flush, the
//! replication answers, the apply), one at a time. Under many concurrent clients that core, not
//! the disk or the network, was the limit. One entry per batch cuts its work per write by the
//! batch size; a lone write on a quiet server is proposed at once from its caller's task, so
//! nothing waits when there is no load.
//!
//! Each command of a batch is checked and applied as if alone (see `Command::Batch`); a batch
//! never holds two commands on the same object, so each object changes at most once per entry.

use super::calls::CallError;
use super::readindex::not_leader;
use super::types::TypeConfig;
use crate::store::{Command, CommandResult};
use edge_api::wire::{ApiError, ErrorCode};
use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Entries proposed and not yet applied at once: while all are in flight, new writes gather
/// into the next batch.
pub(crate) const IN_FLIGHT: usize = 4;
/// Commands per entry at most: an entry must stay well under the RPC frame limit, and the live
/// log is kept in memory, so entries stay small (a few hundred KiB at most).
const MAX_BATCH: usize = 64;

type Reply = oneshot::Sender<Answer>;

/// The queue into the batching task; the task ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct WriteBatcher {
    queue: mpsc::UnboundedSender<(Command, Reply)>,
    raft: Raft<TypeConfig>,
    /// Entries in flight, shared with the batching task.
    slots: Arc<Semaphore>,
    /// Writes queued and not yet taken into a batch.
    queued: Arc<AtomicUsize>,
}

impl WriteBatcher {
    pub(crate) fn start(raft: Raft<TypeConfig>) -> WriteBatcher {
        let (queue, rx) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(raft.clone(), rx, slots.clone(), queued.clone()));
        WriteBatcher {
            queue,
            raft,
            slots,
            queued,
        }
    }

    /// Proposes `cmd` (alone or with others) and returns what applying it produced.
    pub(crate) async fn write(&self, cmd: Command) -> Result<CommandResult, CallError> {
        match cmd {
            Command::Batch(commands) if commands.iter().all(batchable) => {
                self.write_each(commands).await
            }
            cmd => {
                // Nothing waiting and an entry free: this write would be a batch of one, so
                // it is proposed from the caller's own task, without the two hand-offs through
                // the batching task (a tenth of a lone write's time on a quiet server).
                if self.queued.load(Ordering::Acquire) == 0 {
                    if let Ok(_slot) = self.slots.try_acquire() {
                        return client_write(&self.raft, cmd).await;
                    }
                }
                answer(self.enqueue(cmd)?).await
            }
        }
    }

    /// A batch a combiner made (a follower's forwarded writes, or this server's own) joins the
    /// queue command by command, so that it shares entries with every other write waiting
    /// instead of becoming one more entry: each entry costs the leader's raft core a log flush
    /// it waits for, one at a time. Its commands are independent (each applied as if alone),
    /// so they may land in different entries; they are queued in order, which keeps the order
    /// of changes to any one object.
    async fn write_each(&self, commands: Vec<Command>) -> Result<CommandResult, CallError> {
        let answers = commands
            .into_iter()
            .map(|cmd| self.enqueue(cmd))
            .collect::<Result<Vec<_>, _>>()?;
        let mut results = Vec::with_capacity(answers.len());
        for rx in answers {
            results.push(answer(rx).await);
        }
        if results.iter().all(Result::is_err) {
            if let Some(Err(first)) = results.into_iter().next() {
                return Err(first);
            }
            return Ok(CommandResult::Batch(Vec::new()));
        }
        // Some written, some not: the call as a whole succeeded, each failure is that
        // command's own answer (and its outcome may be unknown, so it is not retried).
        Ok(CommandResult::Batch(
            results
                .into_iter()
                .map(|r| {
                    r.unwrap_or_else(|e| {
                        CommandResult::Rejected(ApiError::new(
                            ErrorCode::Unavailable,
                            format!("this write may not have been made ({e}); read and retry"),
                        ))
                    })
                })
                .collect(),
        ))
    }

    fn enqueue(&self, cmd: Command) -> Result<oneshot::Receiver<Answer>, CallError> {
        let (tx, rx) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.queue.send((cmd, tx)).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            CallError::Stopped("the write batcher stopped".into())
        })?;
        Ok(rx)
    }
}

type Answer = Result<CommandResult, CallError>;

async fn answer(rx: oneshot::Receiver<Answer>) -> Answer {
    rx.await
        .unwrap_or_else(|_| Err(CallError::Stopped("the write batcher stopped".into())))
}

async fn run(
    raft: Raft<TypeConfig>,
    mut rx: mpsc::UnboundedReceiver<(Command, Reply)>,
    slots: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
) {
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
        queued.fetch_sub(batch.len(), Ordering::AcqRel);
        let raft = raft.clone();
        tokio::spawn(async move {
            send_batch(batch, |cmd| client_write(&raft, cmd)).await;
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

/// An error each waiter of one batch gets its own copy of.
pub(crate) trait BatchError {
    fn copy(&self) -> Self;
    /// The batch was answered with something other than one result per command.
    fn mismatched(message: String) -> Self;
}

impl BatchError for CallError {
    fn copy(&self) -> Self {
        self.clone()
    }
    fn mismatched(message: String) -> Self {
        CallError::Storage(message)
    }
}

/// Sends a batch through `send` (a lone command as it is, several as one `Command::Batch`) and
/// hands each waiter its own result. Shared by the leader's batcher and followers' combiner.
pub(crate) async fn send_batch<E, F, Fut>(
    mut batch: Vec<(Command, oneshot::Sender<Result<CommandResult, E>>)>,
    send: F,
) where
    E: BatchError,
    F: FnOnce(Command) -> Fut,
    Fut: std::future::Future<Output = Result<CommandResult, E>>,
{
    if batch.len() == 1 {
        if let Some((cmd, reply)) = batch.pop() {
            let _ = reply.send(send(cmd).await); // the caller may have gone
        }
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<_>) = batch.into_iter().unzip();
    let n = commands.len();
    match send(Command::Batch(commands)).await {
        Ok(CommandResult::Batch(results)) if results.len() == n => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Ok(other) => {
            let message = format!("a batch of {n} writes was answered with {other:?}");
            for reply in replies {
                let _ = reply.send(Err(E::mismatched(message.clone())));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.copy()));
            }
        }
    }
}

async fn client_write(raft: &Raft<TypeConfig>, cmd: Command) -> Result<CommandResult, CallError> {
    match raft.client_write(Arc::new(cmd)).await {
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

    #[tokio::test]
    async fn each_waiter_of_a_batch_gets_its_own_result_or_a_copy_of_the_error() {
        let waiters = |names: &[&str]| {
            let mut batch = Vec::new();
            let mut answers = Vec::new();
            for n in names {
                let (tx, rx) = oneshot::channel::<Result<CommandResult, CallError>>();
                batch.push((put(n).0, tx));
                answers.push(rx);
            }
            (batch, answers)
        };
        // One result per command, in order: the i-th waiter gets the i-th.
        let (batch, answers) = waiters(&["a", "b", "c"]);
        send_batch(batch, |cmd| async move {
            let Command::Batch(cmds) = cmd else {
                return Err(CallError::Refused("not a batch".into()));
            };
            let stored = cmds.into_iter().map(|c| match c {
                Command::Put { object, .. } => CommandResult::Stored(object),
                _ => CommandResult::Nothing,
            });
            Ok(CommandResult::Batch(stored.collect()))
        })
        .await;
        for (rx, name) in answers.into_iter().zip(["a", "b", "c"]) {
            match rx.await.unwrap() {
                Ok(CommandResult::Stored(o)) => assert_eq!(o.meta().name, name),
                other => panic!("{name}: {other:?}"),
            }
        }
        // A failed proposal fails every waiter; a lone command goes as it is.
        let (batch, answers) = waiters(&["a", "b"]);
        send_batch(batch, |_| async { Err(CallError::Stopped("down".into())) }).await;
        for rx in answers {
            assert_eq!(rx.await.unwrap(), Err(CallError::Stopped("down".into())));
        }
        let (batch, answers) = waiters(&["a"]);
        send_batch(batch, |cmd| async move {
            assert!(
                matches!(cmd, Command::Put { .. }),
                "a lone write is not wrapped"
            );
            Ok(CommandResult::Nothing)
        })
        .await;
        for rx in answers {
            assert_eq!(rx.await.unwrap(), Ok(CommandResult::Nothing));
        }
    }
}
