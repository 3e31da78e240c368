//! openraft's log store over the write-ahead log (`wal.rs`), and the one-time move of a log
//! that older versions kept inside the redb file.

use super::storage::{
    blocking, durable_write, get_meta, sto, Failure, COMMITTED, LAST_PURGED, LOG, RAFT_META, VOTE,
};
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use super::wal::{MemLog, Wal};
use crate::store::Staged;
use edge_api::codec;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, RaftLogReader};
use redb::{Database, ReadableTable, ReadableTableMetadata};
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

/// openraft's log store: entries, vote, committed and purge point, all in the write-ahead log.
#[derive(Clone)]
pub struct RedbLogStore {
    /// The state machine: made durable before the log is purged (see `purge`).
    pub(super) state: Staged,
    pub(super) wal: Wal,
    /// See `RedbStore::raft_handles`.
    pub(super) _lease: Arc<()>,
}

fn log_failure(e: String) -> Failure {
    Failure::Log(e)
}

impl RaftLogReader<TypeConfig> for RedbLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .wal
            .read()
            .range(range.start_bound().cloned(), range.end_bound().cloned()))
    }
}

impl RaftLogStorage<TypeConfig> for RedbLogStore {
    type LogReader = RedbLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let log = self.wal.read();
        Ok(LogState {
            last_purged_log_id: log.last_purged,
            last_log_id: log.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.wal
            .save_vote(*vote)
            .await
            .map_err(|e| sto(ErrorSubject::Vote, ErrorVerb::Write)(log_failure(e)))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.wal.read().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.wal
            .save_committed(committed)
            .map_err(|e| sto(ErrorSubject::Store, ErrorVerb::Write)(log_failure(e)))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.wal.read().committed)
    }

    /// Group commit: the entries are readable and reported written at once (openraft replicates
    /// them while they are synced here); the log's writer makes them durable with one fsync
    /// for every append waiting with them, and `Wal::append` says who waits for that.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.wal
            .append(&entries, callback)
            .map_err(|e| sto(ErrorSubject::Logs, ErrorVerb::Write)(log_failure(e)))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.wal
            .truncate(log_id.index)
            .await
            .map_err(|e| sto(ErrorSubject::Logs, ErrorVerb::Delete)(log_failure(e)))
    }

    /// Applies are not fsynced (they are redone from the log after a crash), so before entries
    /// leave the log the state machine is made durable: nothing it has not persisted may go.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let state = self.state.clone();
        blocking(move || Ok(state.flush(true)?))
            .await
            .map_err(sto(ErrorSubject::Logs, ErrorVerb::Delete))?;
        self.wal
            .purge(log_id)
            .await
            .map_err(|e| sto(ErrorSubject::Logs, ErrorVerb::Delete)(log_failure(e)))?;
        tracing::info!(upto = log_id.index, "compacted the raft log");
        Ok(())
    }
}

/// Moves a log kept in the redb file (versions before the write-ahead log) into a new
/// write-ahead log at `wal_dir`, then empties the old table. The new log is written beside and
/// renamed into place, so a crash leaves either the old log or the complete new one.
pub(super) fn import_old_log(db: &Database, wal_dir: &Path) -> Result<(), Failure> {
    if wal_dir.exists() {
        return Ok(());
    }
    let mut old = MemLog::default();
    {
        let txn = db.begin_read()?;
        let meta = txn.open_table(RAFT_META)?;
        old.vote = get_meta::<Vote, _>(&meta, VOTE)?;
        old.committed = get_meta::<Option<LogId>, _>(&meta, COMMITTED)?.flatten();
        old.last_purged = get_meta::<LogId, _>(&meta, LAST_PURGED)?;
        let log = txn.open_table(LOG)?;
        let mut entries = Vec::with_capacity(usize::try_from(log.len()?).unwrap_or(0));
        for item in log.iter()? {
            let (_, v) = item?;
            entries.push(codec::decode::<Entry>("raft log entry", v.value())?);
        }
        if old.vote.is_none() && entries.is_empty() {
            return Ok(());
        }
        old.append(&entries, 0, 0).map_err(Failure::Corrupt)?;
    }
    super::wal::create_from(wal_dir, &old).map_err(|e| Failure::Log(e.to_string()))?;
    let txn = durable_write(db)?;
    txn.open_table(LOG)?.retain(|_, _| false)?;
    {
        let mut meta = txn.open_table(RAFT_META)?;
        for key in [VOTE, COMMITTED, LAST_PURGED] {
            meta.remove(key)?;
        }
    }
    txn.commit()?;
    tracing::info!(dir = %wal_dir.display(), "moved the raft log out of the redb file into its own write-ahead log");
    Ok(())
}
