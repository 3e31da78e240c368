//! How an API write is decided and proposed: on which view of the store the first decision is
//! made (`FirstRead`), where the command goes, and when to decide again on a linearizable read.

use crate::context::ControlPlane;
use crate::raft::calls::CallError;
use crate::store::{Command, CommandResult, Snapshot};
use edge_api::object::Object;
use edge_api::wire::{ApiError, ErrorCode};

use super::objects::{internal, unavailable};

/// How often a write is retried when a concurrent write changed the object first.
const CONFLICT_RETRIES: usize = 8;
/// How long a write proposed on this server (see `propose_here`) waits to commit: as long as
/// a forwarded write waits for a leader.
const LOCAL_WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a decision on this server's state waits for it to hold the writes answered here.
const OWN_WRITES_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// What a write's first decision reads: every later attempt reads linearizably.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstRead {
    /// A linearizable read (a read barrier: a quorum round). For decisions that pick from state
    /// no precondition guards, where even a caught-up leader's view is not trusted: node ports
    /// taken by other services.
    Linearizable,
    /// This server's applied state while it leads and is caught up with its own term, the
    /// command proposed on this server only; otherwise a linearizable read. As good as a
    /// linearizable read for any decision, as the command commits only if no newer leader
    /// took a write: for decisions that also read state their command's precondition does not
    /// guard (an object's dependents, Events and Node status written by the leader's loops).
    LeaderLocal,
    /// This server's applied state, wherever it is, the command proposed through the leader.
    /// Only for decisions whose every command carries a precondition `store::apply` checks
    /// (resourceVersion, or must-not-exist, and an active namespace for creates) and whose
    /// other reads of the snapshot can only turn
    /// a stale view into `Ok(None)` or an error, which are decided again: a stale view then
    /// costs a refused write and a retry, never a wrong one.
    Local,
}

/// Where a command decided on an unconfirmed view is proposed.
#[derive(Clone, Copy)]
enum Route {
    AnyLeader,
    Here,
}

/// The outcome of one proposal: the answer, or a reason to decide again on a fresh read.
// Consumed at once where it is made: boxing the answer would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Attempt {
    Done(Result<CommandResult, ApiError>),
    /// The precondition failed (the error is kept in case retries run out), or the command
    /// never reached the log.
    Retry(Option<ApiError>),
}

/// A refused precondition means the decision read an outdated object: decide again.
fn settle(result: Result<CommandResult, ApiError>) -> Attempt {
    match result {
        Err(e) if e.code == ErrorCode::Conflict || e.code == ErrorCode::AlreadyExists => {
            Attempt::Retry(Some(e))
        }
        other => Attempt::Done(other),
    }
}
impl ControlPlane {
    /// Reads a consistent snapshot after a raft read barrier, so reads are linearizable.
    pub async fn current(&self) -> Result<Snapshot, ApiError> {
        self.raft.read_barrier().await.map_err(unavailable)?;
        self.local_view()
    }

    pub async fn propose(&self, cmd: Command) -> Result<CommandResult, ApiError> {
        match self.raft.propose(cmd).await.map_err(unavailable)? {
            CommandResult::Rejected(e) => Err(e),
            other => Ok(other),
        }
    }

    /// Runs read-decide-write until the write is not rejected by a concurrent change, the first
    /// decision on this server's applied state when it leads and is caught up (see
    /// `FirstRead::LeaderLocal`), which saves a read barrier's quorum round per write.
    pub async fn write_with_retry<F>(&self, decide: F) -> Result<CommandResult, ApiError>
    where
        F: FnMut(&Snapshot) -> Result<Option<Command>, ApiError>,
    {
        self.write_with_retry_from(FirstRead::LeaderLocal, decide)
            .await
    }

    /// `write_with_retry` with the first decision read from `first`. A decision made on an
    /// unconfirmed view only stands if its command commits: when it writes nothing (`Ok(None)`)
    /// or fails, or its precondition no longer holds, it is made again on a linearizable read,
    /// which answers, so a stale view never shows in an answer.
    pub async fn write_with_retry_from<F>(
        &self,
        first: FirstRead,
        mut decide: F,
    ) -> Result<CommandResult, ApiError>
    where
        F: FnMut(&Snapshot) -> Result<Option<Command>, ApiError>,
    {
        let mut last = None;
        let mut attempts = CONFLICT_RETRIES;
        let local = match first {
            FirstRead::Linearizable => None,
            FirstRead::Local => {
                // Not seeing them only costs a refused write, so the wait is short.
                self.raft.applied_own_writes(OWN_WRITES_WAIT).await;
                Some((self.local_view()?, Route::AnyLeader))
            }
            FirstRead::LeaderLocal => self.leader_view()?.map(|snap| (snap, Route::Here)),
        };
        if let Some((snap, route)) = local {
            let decided = decide(&snap);
            // A read transaction is not held across the proposal.
            drop(snap);
            if let Ok(Some(cmd)) = decided {
                attempts -= 1;
                let result = match route {
                    Route::AnyLeader => settle(self.propose(cmd).await),
                    Route::Here => self.propose_here(cmd).await,
                };
                match result {
                    Attempt::Done(r) => return r,
                    Attempt::Retry(e) => last = e,
                }
            }
        }
        for _ in 0..attempts {
            let snap = self.current().await?;
            let decided = decide(&snap);
            drop(snap);
            let Some(cmd) = decided? else {
                return Ok(CommandResult::Nothing);
            };
            match settle(self.propose(cmd).await) {
                Attempt::Done(r) => return r,
                Attempt::Retry(e) => last = e,
            }
        }
        Err(last
            .unwrap_or_else(|| ApiError::new(ErrorCode::Conflict, "too many concurrent changes")))
    }

    /// This server's applied state, without a read barrier: possibly behind the leader.
    fn local_view(&self) -> Result<Snapshot, ApiError> {
        crate::store::read_snapshot(&self.raft.store.state()).map_err(internal)
    }

    /// This server's applied state if it holds every write acknowledged before this call: this
    /// server leads and has applied an entry of its own term (openraft opens every term with
    /// one, so every earlier entry is applied too), and it acknowledges its own writes only once
    /// applied. A leader deposed without knowing it yet may lack writes of a newer term, but
    /// then what it proposes cannot commit (see `propose_here`), unless it lost and won back
    /// the lead between this check and raft taking the proposal into its log: two elections,
    /// each after a second or more of silence, while this server goes on serving.
    fn leader_view(&self) -> Result<Option<Snapshot>, ApiError> {
        let caught_up = {
            let metrics = self.raft.raft.metrics();
            let m = metrics.borrow();
            m.state == openraft::ServerState::Leader
                && m.current_leader == Some(self.raft.node_id)
                && m.last_applied
                    .is_some_and(|applied| applied.leader_id.term == m.current_term)
        };
        if !caught_up {
            return Ok(None);
        }
        self.local_view().map(Some)
    }

    /// Proposes a command decided on `leader_view` on this server only, never forwarded: it
    /// commits only if no newer leader acknowledged a write meanwhile (a majority that took a
    /// newer term refuses this one's entries). Not leading (any more) means a fresh decision.
    async fn propose_here(&self, cmd: Command) -> Attempt {
        match tokio::time::timeout(LOCAL_WRITE_WAIT, self.raft.write_here(cmd)).await {
            Err(_) => Attempt::Done(Err(unavailable(format!(
                "no commit within {LOCAL_WRITE_WAIT:?}; the write may or may not have been applied"
            )))),
            Ok(Err(CallError::NotLeader { .. })) => Attempt::Retry(None),
            Ok(Err(e)) => Attempt::Done(Err(unavailable(e))),
            Ok(Ok(CommandResult::Rejected(e))) => settle(Err(e)),
            Ok(Ok(other)) => Attempt::Done(Ok(other)),
        }
    }
}

/// Where apply and create decide first. A Service's node ports are picked among those other
/// services hold, which no precondition guards. Everything else the decision reads is the
/// object itself, guarded by its precondition, or its namespace, which `store::apply` checks
/// again when it creates (`namespace_admits`).
pub(super) fn first_read_for_write(incoming: &Object) -> FirstRead {
    match incoming {
        Object::Service(_) => FirstRead::Linearizable,
        _ => FirstRead::Local,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Object {
        let mut p = edge_api::Pod::default();
        p.metadata.name = "p".into();
        p.metadata.namespace = "default".into();
        Object::Pod(p)
    }

    #[test]
    fn only_refused_preconditions_are_decided_again() {
        let conflict = ApiError::new(ErrorCode::Conflict, "modified");
        let exists = ApiError::new(ErrorCode::AlreadyExists, "exists");
        for e in [conflict, exists] {
            assert!(matches!(settle(Err(e.clone())), Attempt::Retry(Some(x)) if x == e));
        }
        for code in [
            ErrorCode::NotFound,
            ErrorCode::Invalid,
            ErrorCode::Unavailable,
        ] {
            let e = ApiError::new(code, "x");
            assert!(matches!(settle(Err(e.clone())), Attempt::Done(Err(x)) if x == e));
        }
        let stored = CommandResult::Stored(pod());
        assert!(matches!(settle(Ok(stored.clone())), Attempt::Done(Ok(r)) if r == stored));
    }

    #[test]
    fn writes_reading_unguarded_state_do_not_decide_on_any_view() {
        let mut svc = edge_api::service::Service::default();
        svc.metadata.name = "web".into();
        let mut ns = edge_api::Namespace::default();
        ns.metadata.name = "prod".into();
        let cases = [
            (Object::Service(svc), FirstRead::Linearizable),
            (pod(), FirstRead::Local),
            (Object::Namespace(ns), FirstRead::Local),
        ];
        for (obj, want) in cases {
            assert_eq!(first_read_for_write(&obj), want, "{}", obj.key());
        }
    }
}
