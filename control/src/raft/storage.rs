//! The raft store: the log in its own write-ahead log (`wal.rs`, a directory beside the redb
//! file), the state machine in redb (`raft.meta` beside the `sm.*` tables, so applying an entry
//! and recording it as applied is one atomic transaction).
//!
//! Everything read back from disk is untrusted: a malformed record becomes a `StorageError`
//! (which stops the raft node) and never a panic.

use super::state_machine::Flushed;
pub use super::state_machine::RedbStateMachine;
use super::types::{NodeId, StorageError};
use super::wal::{Wal, WalError};
use crate::store::{self, Staged, WatchHub};
use edge_api::codec::{self, CodecError};
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use super::log_store::RedbLogStore;

/// Log entries by index, each the CBOR of an `openraft::Entry`: where versions before the
/// write-ahead log kept the log. Read once to move it over (`import_old_log`), then emptied.
pub const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft.log");
/// Raft bookkeeping (applied state, current snapshot; vote, committed and purge point only in
/// stores written before the write-ahead log), CBOR values.
pub const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft.meta");

pub(super) const VOTE: &str = "vote";
pub(super) const COMMITTED: &str = "committed";
pub(super) const LAST_PURGED: &str = "last_purged_log_id";
pub(super) const LAST_APPLIED: &str = "last_applied";
pub(super) const LAST_MEMBERSHIP: &str = "last_membership";
pub(super) const SNAPSHOT_META: &str = "snapshot_meta";
pub(super) const SNAPSHOT_DATA: &str = "snapshot_data";
/// The layout of what the store holds, in `RAFT_META`; a build refuses any other.
const FORMAT_KEY: &str = "format";
/// 1: objects were internally tagged CBOR maps (`{"kind": ..}`), stores before this key.
/// 2: objects are `{Kind: body}` pairs (`edge_api::object_serde`).
const FORMAT: u32 = 2;

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
    #[error(transparent)]
    Log(#[from] WalError),
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
    #[error("raft log: {0}")]
    Log(String),
    #[error("it was written by {} edge build (store format {found}; this build reads format {FORMAT}) and cannot be read here: move the data directory aside and start with an empty one (a member of a multi-server cluster rejoins with --join)", if *.found < FORMAT { "an older" } else { "a newer" })]
    Format { found: u32 },
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

/// The redb database shared by the log store and the state machine, plus the watch hub fed by
/// applies. Cheap to clone.
#[derive(Clone)]
pub struct RedbStore {
    state: Staged,
    hub: Arc<WatchHub>,
    wal: Wal,
    /// When applies were last flushed; see `state_machine::apply_batch`.
    sm_flushed: Arc<std::sync::Mutex<Flushed>>,
}

/// The redb page cache of the control-plane store.
pub const CACHE_BYTES: usize = 16 << 20;

impl RedbStore {
    /// Opens (or creates) the store file and makes sure every table exists; the log lives in
    /// the directory `<file>.wal` beside it.
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
        let prepare_err = |source| OpenError::Prepare {
            path: path.to_path_buf(),
            source,
        };
        let wal_dir = path.with_extension("wal");
        super::log_store::import_old_log(&db, &wal_dir).map_err(prepare_err)?;
        Ok(RedbStore {
            wal: Wal::open(&wal_dir)?,
            state: Staged::new(Arc::new(db)),
            hub: WatchHub::new(revision),
            sm_flushed: Arc::new(std::sync::Mutex::new(Flushed::new(
                std::time::Instant::now(),
            ))),
        })
    }

    /// The encoded size of the raft log entries held (in memory and in the log's files), as
    /// a probe that does not keep the store open (None once it is closed).
    pub fn log_size_probe(&self) -> impl Fn() -> Option<u64> + Send + 'static {
        self.wal.size_probe()
    }

    /// The raft log, for waiting until entries are durable on this server.
    pub fn log(&self) -> &Wal {
        &self.wal
    }

    /// The redb file itself, without the applies held in memory (`state`).
    pub fn database(&self) -> Arc<Database> {
        self.state.database().clone()
    }

    /// The state machine as applied so far, for reads.
    pub fn state(&self) -> Staged {
        self.state.clone()
    }

    pub fn watch_hub(&self) -> Arc<WatchHub> {
        self.hub.clone()
    }

    /// A log store handle for openraft.
    pub fn log_store(&self) -> RedbLogStore {
        self.raft_handles(&Arc::new(()), None).0
    }

    /// A state machine handle for openraft.
    pub fn state_machine(&self) -> RedbStateMachine {
        self.raft_handles(&Arc::new(()), None).1
    }

    /// Both handles, each (and every clone openraft makes of them, e.g. per replication task)
    /// holding `lease`: once its count is back to one, openraft has let go of the file.
    /// `node_id` is this server's, when known: then applies build results only for the entries
    /// it proposed (`store::Answer`).
    pub(crate) fn raft_handles(
        &self,
        lease: &Arc<()>,
        node_id: Option<u64>,
    ) -> (RedbLogStore, RedbStateMachine) {
        (
            RedbLogStore {
                state: self.state.clone(),
                wal: self.wal.clone(),
                _lease: lease.clone(),
            },
            RedbStateMachine {
                state: self.state.clone(),
                log: self.wal.clone(),
                hub: self.hub.clone(),
                flushed: self.sm_flushed.clone(),
                node_id,
                _lease: lease.clone(),
            },
        )
    }
}

/// Checks the store's format, creates all tables so later reads need not treat "missing
/// table" as "empty", and returns the state machine's current revision for the watch hub.
fn prepare(db: &Database) -> Result<u64, Failure> {
    let txn = db.begin_write()?;
    {
        let fresh = txn.list_tables()?.next().is_none();
        txn.open_table(LOG)?;
        let mut meta = txn.open_table(RAFT_META)?;
        for def in store::SM_TABLES {
            txn.open_table(def)?;
        }
        let found = match get_meta::<u32, _>(&meta, FORMAT_KEY)? {
            Some(found) => found,
            None if fresh => FORMAT,
            None => unmarked_format(&txn)?,
        };
        if found != FORMAT {
            return Err(Failure::Format { found });
        }
        put_meta(&mut meta, FORMAT_KEY, &FORMAT)?;
    }
    txn.commit()?;
    let txn = db.begin_read()?;
    Ok(store::revision(&txn.open_table(store::META)?)?)
}

/// The format of a store written before stores were marked: 2 if its first object reads as
/// one (or it has none), else 1.
fn unmarked_format(txn: &redb::WriteTransaction) -> Result<u32, Failure> {
    let objects = txn.open_table(store::OBJECTS)?;
    let first = objects.iter()?.next().transpose()?;
    Ok(match first {
        Some((_, v)) if codec::decode::<edge_api::Object>("object", v.value()).is_err() => 1,
        _ => FORMAT,
    })
}

/// Begins a write transaction that is on disk when `commit` returns: what raft acknowledges
/// must survive kill -9.
pub(super) fn durable_write(db: &Database) -> Result<redb::WriteTransaction, Failure> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    Ok(txn)
}
