//! The two replication rules that keep an acknowledged write on a majority's disks although
//! the log reports an append written before its sync (`Wal::append`, so that a leader
//! replicates while it syncs). The third rule, apply only what is durable, is in the state
//! machine's `apply`.

use super::types::{LogId, NodeId, TypeConfig};
use super::wal::Wal;
use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};

/// The commit index a leader may put in an append to a follower: the leader may count an
/// entry committed before its own copy is durable, but others must not learn so until it is.
/// An append carrying entries tells the newest commit that is durable here (the next one
/// tells more); one that only carries the commit waits until it is durable.
pub(super) async fn commit_to_tell(
    log: &Wal,
    rpc: &AppendEntriesRequest<TypeConfig>,
) -> Result<Option<LogId>, String> {
    let durable = log.durable_commit(rpc.leader_commit);
    match rpc.leader_commit {
        Some(wanted) if durable != rpc.leader_commit && rpc.entries.is_empty() => {
            log.durable_through(wanted.index).await?;
            Ok(rpc.leader_commit)
        }
        _ => Ok(durable),
    }
}

/// What a follower's answer to an append tells the leader it holds.
pub(super) struct Acknowledges(Option<LogId>);

impl Acknowledges {
    /// Noted before the append is handed to raft: its last entry, or the entry before them.
    pub(super) fn sent_in(rpc: &AppendEntriesRequest<TypeConfig>) -> Acknowledges {
        Acknowledges(rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id))
    }

    /// Returns once what `reply` acknowledges is durable here: the leader counts the answer
    /// towards a majority.
    pub(super) async fn durable(
        self,
        log: &Wal,
        reply: &Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>,
    ) -> Result<(), String> {
        let acked = match reply {
            Ok(AppendEntriesResponse::Success) => self.0,
            Ok(AppendEntriesResponse::PartialSuccess(matched)) => *matched,
            Ok(AppendEntriesResponse::Conflict | AppendEntriesResponse::HigherVote(_)) | Err(_) => {
                None
            }
        };
        match acked {
            Some(id) => log.durable_through(id.index).await,
            None => Ok(()),
        }
    }
}
