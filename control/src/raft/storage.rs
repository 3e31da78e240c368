//! The raft log and the state machine in ONE redb file: `raft.log` and `raft.meta` beside the
//! `sm.*` tables, so applying an entry and recording it as applied is one atomic transaction.
//!
//! Everything read back from disk is untrusted: a malformed record becomes a `StorageError`
//! (which stops the raft node) and never a panic.

pub use super::state_machine::RedbStateMachine;
use super::types::{Entry, LogId, NodeId, StorageError, TypeConfig, Vote};
use crate::store::{self, WatchHub};
use edge_api::codec::{self, CodecError};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, LogState, RaftLogReader, StorageIOError};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Log entries by index, each the CBOR of an `openraft::Entry`.
pub const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft.log");
/// Raft bookkeeping (vote, committed, purge point, applied state, current snapshot), CBOR values.
pub const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft.meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged_log_id";
pub(super) const LAST_APPLIED: &str = "last_applied";
pub(super) const LAST_MEMBERSHIP: &str = "last_membership";
pub(super) const SNAPSHOT_META: &str = "snapshot_meta";
pub(super) const SNAPSHOT_DATA: &str = "snapshot_data";

/// Failure opening the store file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the raft store {path}: {source}")]
    Database {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("cannot prepare the raft store {path}: {source}")]
    Prepare { path: PathBuf, source: Failure },
}

/// What went wrong inside a storage operation, before it is wrapped in openraft's
/// `StorageError` (which adds what was being read or written).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Boxed: redb's error is large and this travels through every storage call.
    #[error("redb: {0}")]
    Redb(Box<redb::Error>),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("state machine: {0}")]
    Store(#[from] store::StoreError),
    #[error("corrupt raft store: {0}")]
    Corrupt(String),
    #[error("storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

macro_rules! redb_failure {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Self { Failure::Redb(Box::new(e.into())) }
        }
    )*};
}
redb_failure!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Wraps a failure with the openraft subject/verb it happened on.
pub(super) fn sto(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
) -> impl FnOnce(Failure) -> StorageError {
    move |e| StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

/// Runs a redb write (which fsyncs) off the async worker threads: with two cores, a blocked
/// worker would stall QUIC and raft timers.
pub(super) async fn blocking<T, F>(f: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

pub(super) fn get_meta<T, M>(meta: &M, key: &'static str) -> Result<Option<T>, Failure>
where
    T: DeserializeOwned,
    M: ReadableTable<&'static str, &'static [u8]>,
{
    match meta.get(key)? {
        Some(v) => Ok(Some(codec::decode(key, v.value())?)),
        None => Ok(None),
    }
}

pub(super) fn put_meta<T: Serialize>(
    meta: &mut redb::Table<&str, &[u8]>,
    key: &'static str,
    value: &T,
) -> Result<(), Failure> {
    let bytes = codec::encode(key, value)?;
    meta.insert(key, bytes.as_slice())?;
    Ok(())
}

/// Decodes a stored log entry and checks it sits at its own index (a misplaced entry would
/// silently corrupt replication).
fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry, Failure> {
    let entry: Entry = codec::decode("raft log entry", bytes)?;
    if entry.log_id.index != index {
        return Err(Failure::Corrupt(format!(
            "log entry stored at index {index} claims index {}",
            entry.log_id.index
        )));
    }
    Ok(entry)
}

/// The redb database shared by the log store and the state machine, plus the watch hub fed by
/// applies. Cheap to clone.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    hub: Arc<WatchHub>,
    flusher: std::sync::mpsc::Sender<LogFlushed<TypeConfig>>,
}

/// The redb page cache of the control-plane store.
pub const CACHE_BYTES: usize = 16 << 20;

impl RedbStore {
    /// Opens (or creates) the store file and makes sure every table exists.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, OpenError> {
        let path = path.as_ref();
        // redb's default page cache is sized for servers; a 1 GB Pi wants it small. Reads of
        // hot objects still hit the OS page cache.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|source| OpenError::Database {
                path: path.to_path_buf(),
                source,
            })?;
        let revision = prepare(&db).map_err(|source| OpenError::Prepare {
            path: path.to_path_buf(),
            source,
        })?;
        let db = Arc::new(db);
        Ok(RedbStore {
            flusher: spawn_flusher(&db),
            db,
            hub: WatchHub::new(revision),
        })
    }

    pub fn database(&self) -> Arc<Database> {
        self.db.clone()
    }

    pub fn watch_hub(&self) -> Arc<WatchHub> {
        self.hub.clone()
    }

    /// A log store handle for openraft.
    pub fn log_store(&self) -> RedbLogStore {
        self.raft_handles(&Arc::new(())).0
    }

    /// A state machine handle for openraft.
    pub fn state_machine(&self) -> RedbStateMachine {
        self.raft_handles(&Arc::new(())).1
    }

    /// Both handles, each (and every clone openraft makes of them, e.g. per replication task)
    /// holding `lease`: once its count is back to one, openraft has let go of the file.
    pub(crate) fn raft_handles(&self, lease: &Arc<()>) -> (RedbLogStore, RedbStateMachine) {
        (
            RedbLogStore {
                db: self.db.clone(),
                flusher: self.flusher.clone(),
                _lease: lease.clone(),
            },
            RedbStateMachine {
                db: self.db.clone(),
                hub: self.hub.clone(),
                _lease: lease.clone(),
            },
        )
    }
}

/// Creates all tables so later reads need not treat "missing table" as "empty", and returns
/// the state machine's current revision for the watch hub.
fn prepare(db: &Database) -> Result<u64, Failure> {
    let txn = db.begin_write()?;
    {
        txn.open_table(LOG)?;
        txn.open_table(RAFT_META)?;
        for def in store::SM_TABLES {
            txn.open_table(def)?;
        }
    }
    txn.commit()?;
    let txn = db.begin_read()?;
    Ok(store::revision(&txn.open_table(store::META)?)?)
}

/// Begins a write transaction that is on disk when `commit` returns: what raft acknowledges
/// must survive kill -9.
pub(super) fn durable_write(db: &Database) -> Result<redb::WriteTransaction, Failure> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    Ok(txn)
}

/// Starts the thread that makes appended log entries durable: it takes every append waiting,
/// makes one durable (fsyncing) commit, and only then tells raft they are flushed. It holds
/// the database weakly, so it never keeps a closed store open, and ends with its last sender.
fn spawn_flusher(db: &Arc<Database>) -> std::sync::mpsc::Sender<LogFlushed<TypeConfig>> {
    let (tx, rx) = std::sync::mpsc::channel::<LogFlushed<TypeConfig>>();
    let weak = Arc::downgrade(db);
    let run = move || {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let synced = match weak.upgrade() {
                Some(db) => durable_write(&db)
                    .and_then(|txn| txn.commit().map_err(Failure::from))
                    .map_err(|e| e.to_string()),
                None => Err("the raft store is closed".to_string()),
            };
            for callback in batch {
                callback.log_io_completed(synced.clone().map_err(std::io::Error::other));
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("raft-log-flush".into())
        .spawn(run)
    {
        // Without the thread every append reports failure, which stops raft with a clear error.
        tracing::error!(error = %e, "cannot start the raft log flusher");
    }
    tx
}

// ---------------------------------------------------------------------------------------------
// Log store

/// openraft's log store: entries, vote, committed and purge point.
#[derive(Clone)]
pub struct RedbLogStore {
    db: Arc<Database>,
    /// Makes appended entries durable, many appends per fsync; see `append`.
    flusher: std::sync::mpsc::Sender<LogFlushed<TypeConfig>>,
    _lease: Arc<()>,
}

impl RedbLogStore {
    fn read_entries(&self, start: Bound<u64>, end: Bound<u64>) -> Result<Vec<Entry>, Failure> {
        // redb, like BTreeMap, rejects inverted ranges; an empty answer is what raft expects.
        let empty = match (start, end) {
            (Bound::Included(s), Bound::Excluded(e)) => s >= e,
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Excluded(s), Bound::Excluded(e)) => s.saturating_add(1) >= e,
            (Bound::Excluded(s), Bound::Included(e)) => s >= e,
            _ => false,
        };
        if empty {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read()?;
        let log = txn.open_table(LOG)?;
        let mut out = Vec::new();
        for item in log.range::<u64>((start, end))? {
            let (k, v) = item?;
            out.push(decode_entry(k.value(), v.value())?);
        }
        Ok(out)
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, Failure> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(RAFT_META)?;
        let last_purged: Option<LogId> = get_meta(&meta, LAST_PURGED)?;
        let log = txn.open_table(LOG)?;
        let last = match log.last()? {
            Some((k, v)) => Some(decode_entry(k.value(), v.value())?.log_id),
            None => None,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &'static str) -> Result<Option<T>, Failure> {
        let txn = self.db.begin_read()?;
        get_meta(&txn.open_table(RAFT_META)?, key)
    }

    async fn write_meta<T: Serialize + Send + 'static>(
        &self,
        key: &'static str,
        value: T,
        durability: Durability,
    ) -> Result<(), Failure> {
        let db = self.db.clone();
        blocking(move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability);
            put_meta(&mut txn.open_table(RAFT_META)?, key, &value)?;
            txn.commit()?;
            Ok(())
        })
        .await
    }
}

impl RaftLogReader<TypeConfig> for RedbLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.read_entries(range.start_bound().cloned(), range.end_bound().cloned())
            .map_err(sto(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for RedbLogStore {
    type LogReader = RedbLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.log_state()
            .map_err(sto(ErrorSubject::Logs, ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(VOTE, *vote, Durability::Immediate)
            .await
            .map_err(sto(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(VOTE)
            .map_err(sto(ErrorSubject::Vote, ErrorVerb::Read))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not fsynced on its own: it only lets a restart re-apply sooner, and the next durable
        // log write (redb commits are ordered) persists it anyway.
        self.write_meta(COMMITTED, committed, Durability::None)
            .await
            .map_err(sto(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.read_meta::<Option<LogId>>(COMMITTED)
            .map(Option::flatten)
            .map_err(sto(ErrorSubject::Store, ErrorVerb::Read))
    }

    /// Group commit: the entries are committed at once without an fsync (visible to readers,
    /// as openraft needs for replication), and the flusher thread reports them flushed only
    /// after a later durable commit, which persists every earlier commit too (redb commits are
    /// ordered). The raft core is not held up by the disk, and concurrent appends share one
    /// fsync instead of paying one each.
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
        let db = self.db.clone();
        let res = blocking(move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::None);
            {
                let mut log = txn.open_table(LOG)?;
                for entry in &entries {
                    let bytes = codec::encode("raft log entry", entry)?;
                    log.insert(entry.log_id.index, bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await;
        match res {
            Ok(()) => {
                if let Err(std::sync::mpsc::SendError(callback)) = self.flusher.send(callback) {
                    callback
                        .log_io_completed(Err(std::io::Error::other("the log flusher stopped")));
                }
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(sto(ErrorSubject::Logs, ErrorVerb::Write)(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = durable_write(&db)?;
            txn.open_table(LOG)?
                .retain_in(log_id.index.., |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(sto(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = durable_write(&db)?;
            // The purge point and the deletion commit together, so the log never has a gap
            // that the purge point does not explain.
            put_meta(&mut txn.open_table(RAFT_META)?, LAST_PURGED, &log_id)?;
            txn.open_table(LOG)?
                .retain_in(..=log_id.index, |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(sto(ErrorSubject::Logs, ErrorVerb::Delete))?;
        tracing::info!(upto = log_id.index, "compacted the raft log");
        Ok(())
    }
}
