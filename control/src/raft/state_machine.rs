//! The state machine half of the redb store: applying committed entries to the `sm.*` tables
//! atomically with the applied-state bookkeeping, and building/installing snapshots.

use super::storage::{
    blocking, durable_write, get_meta, put_meta, sto, Failure, LAST_APPLIED, LAST_MEMBERSHIP,
    RAFT_META, SNAPSHOT_DATA, SNAPSHOT_META,
};
use super::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use super::wal::Wal;
use crate::store::{self, CommandResult, ReadRow, Staged, WatchHub};
use edge_api::codec;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder};
use redb::{Database, ReadableTable};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often applied changes are written from memory to redb (`store::Staged`): more often
/// costs a redb commit each time, less often holds more in memory and makes a restart apply
/// more of the log again.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Applied bytes held in memory that bring the next flush forward (uploaded components).
const FLUSH_BYTES: usize = 4 << 20;
/// How often a flush is made durable although it need not be: redb reclaims pages freed by
/// non-durable commits only at a durable one, so without this the file would keep growing.
const SM_SYNC_EVERY: Duration = Duration::from_secs(1);

/// openraft's state machine: the `sm.*` tables, applied state, and the current snapshot.
#[derive(Clone)]
pub struct RedbStateMachine {
    /// The `sm.*` tables and `raft.meta`'s applied state, with the applies not yet in redb.
    pub(super) state: Staged,
    /// Entries are reported written to raft before they are durable here (`Wal::append`);
    /// they are applied only once they are.
    pub(super) log: Wal,
    pub(super) hub: Arc<WatchHub>,
    /// When applies were last flushed to redb, and made durable there.
    pub(super) flushed: Arc<Mutex<Flushed>>,
    /// This server's id, if known: results are built only for entries proposed here.
    pub(super) node_id: Option<u64>,
    /// See `RedbStore::raft_handles`.
    pub(super) _lease: Arc<()>,
}

/// The snapshot format: every state-machine table plus the applied state it reflects.
#[derive(Serialize, Deserialize)]
struct SnapshotPayload {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    tables: Vec<SnapshotTable>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotTable {
    name: String,
    rows: Vec<(String, serde_bytes::ByteBuf)>,
}

impl RedbStateMachine {
    fn applied(&self) -> Result<(Option<LogId>, StoredMembership), Failure> {
        let view = self.state.view(&[RAFT_META])?;
        let applied: Option<Option<LogId>> = staged_meta(&view, LAST_APPLIED)?;
        let membership: Option<StoredMembership> = staged_meta(&view, LAST_MEMBERSHIP)?;
        Ok((applied.flatten(), membership.unwrap_or_default()))
    }

    fn current_snapshot(&self) -> Result<Option<Snapshot>, Failure> {
        let txn = self.state.database().begin_read()?;
        let meta = txn.open_table(RAFT_META)?;
        let Some(snap_meta) = get_meta::<SnapshotMeta, _>(&meta, SNAPSHOT_META)? else {
            return Ok(None);
        };
        let data = meta
            .get(SNAPSHOT_DATA)?
            .ok_or_else(|| Failure::Corrupt("snapshot metadata without snapshot data".into()))?
            .value()
            .to_vec();
        Ok(Some(Snapshot {
            meta: snap_meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }

    /// Copies the state machine as of one read transaction (redb's MVCC gives a consistent
    /// view while applies continue) and records it as the current snapshot. Applies held in
    /// memory are flushed first; those after are left for the next snapshot.
    fn build(state: &Staged) -> Result<Snapshot, Failure> {
        state.flush(false)?;
        let db = state.database();
        let txn = db.begin_read()?;
        let meta = txn.open_table(RAFT_META)?;
        let last_applied: Option<LogId> = get_meta(&meta, LAST_APPLIED)?;
        let membership: StoredMembership = get_meta(&meta, LAST_MEMBERSHIP)?.unwrap_or_default();
        let mut tables = Vec::new();
        for def in store::SM_TABLES {
            let table = txn.open_table(def)?;
            let mut rows = Vec::new();
            for item in table.iter()? {
                let (k, v) = item?;
                rows.push((k.value().to_string(), serde_bytes::ByteBuf::from(v.value())));
            }
            tables.push(SnapshotTable {
                name: redb::TableHandle::name(&def).to_string(),
                rows,
            });
        }
        drop(txn);
        let data = codec::encode(
            "snapshot",
            &SnapshotPayload {
                last_applied,
                membership: membership.clone(),
                tables,
            },
        )?;
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, uuid::Uuid::new_v4()),
            None => format!("0-0-{}", uuid::Uuid::new_v4()),
        };
        let snap_meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };

        let wtxn = durable_write(db)?;
        {
            let mut meta = wtxn.open_table(RAFT_META)?;
            // A snapshot installed from the leader meanwhile may be newer: never go back.
            let existing: Option<SnapshotMeta> = get_meta(&meta, SNAPSHOT_META)?;
            if existing.is_none_or(|m| m.last_log_id <= snap_meta.last_log_id) {
                put_meta(&mut meta, SNAPSHOT_META, &snap_meta)?;
                meta.insert(SNAPSHOT_DATA, data.as_slice())?;
            }
        }
        wtxn.commit()?;
        Ok(Snapshot {
            meta: snap_meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }

    /// Replaces every state-machine table with the snapshot's, in one transaction; returns the
    /// new revision.
    fn install(db: &Database, meta: SnapshotMeta, data: Vec<u8>) -> Result<u64, Failure> {
        let payload: SnapshotPayload = codec::decode("snapshot", &data)?;
        if payload.last_applied != meta.last_log_id || payload.membership != meta.last_membership {
            return Err(Failure::Corrupt(format!(
                "snapshot {} carries applied state {:?} that does not match its metadata",
                meta.snapshot_id, payload.last_applied
            )));
        }
        // Check every table name before touching anything: a snapshot from a newer version
        // with a table we do not know must not half-replace the state.
        let mut defs = Vec::new();
        for table in &payload.tables {
            let def = store::SM_TABLES
                .into_iter()
                .find(|d| redb::TableHandle::name(d) == table.name)
                .ok_or_else(|| {
                    Failure::Corrupt(format!("snapshot has unknown table {:?}", table.name))
                })?;
            defs.push(def);
        }
        let txn = durable_write(db)?;
        for def in store::SM_TABLES {
            txn.delete_table(def)?;
            txn.open_table(def)?;
        }
        for (def, table) in defs.into_iter().zip(&payload.tables) {
            let mut t = txn.open_table(def)?;
            for (k, v) in &table.rows {
                t.insert(k.as_str(), v.as_slice())?;
            }
        }
        let revision = store::revision(&txn.open_table(store::META)?)?;
        {
            let mut raft_meta = txn.open_table(RAFT_META)?;
            put_meta(&mut raft_meta, LAST_APPLIED, &meta.last_log_id)?;
            put_meta(&mut raft_meta, LAST_MEMBERSHIP, &meta.last_membership)?;
            put_meta(&mut raft_meta, SNAPSHOT_META, &meta)?;
            raft_meta.insert(SNAPSHOT_DATA, data.as_slice())?;
        }
        txn.commit()?;
        Ok(revision)
    }
}

/// A `raft.meta` value as applied so far (in memory or in redb).
fn staged_meta<T: serde::de::DeserializeOwned>(
    view: &store::View,
    key: &'static str,
) -> Result<Option<T>, Failure> {
    let decoded = view.read(RAFT_META, key, |v| v.map(|bytes| codec::decode(key, bytes)))?;
    Ok(decoded.transpose()?)
}

/// Writes a `raft.meta` value with an apply's other changes (`put_meta`'s staged twin).
fn stage_meta<T: serde::Serialize>(
    stage: &mut store::Stage,
    key: &'static str,
    value: &T,
) -> Result<(), Failure> {
    stage.insert(RAFT_META, key, codec::encode(key, value)?);
    Ok(())
}

/// When applies were last flushed to redb, and last made durable there.
pub(super) struct Flushed {
    flushed: Instant,
    synced: Instant,
}

impl Flushed {
    pub(super) fn new(now: Instant) -> Flushed {
        Flushed {
            flushed: now,
            synced: now,
        }
    }

    /// Whether applies are to be flushed now, with `held` bytes of them in memory, and if so
    /// whether durably; notes the flush as done.
    fn due(&mut self, now: Instant, held: usize) -> Option<bool> {
        let durable = now.duration_since(self.synced) >= SM_SYNC_EVERY;
        if !durable && now.duration_since(self.flushed) < FLUSH_EVERY && held < FLUSH_BYTES {
            return None;
        }
        self.flushed = now;
        if durable {
            self.synced = now;
        }
        Some(durable)
    }
}

/// Applies a batch as one stage of changes together with its bookkeeping; returns the results
/// in entry order and the watch events to publish.
///
/// Held in memory until the next flush, and not fsynced at every flush: the entries are
/// durable in the log already, and applying them is deterministic. A crash loses at most
/// applies that were not yet followed by a durable flush (one a second, `SM_SYNC_EVERY`, and
/// every snapshot and purge; redb commits are ordered); the state machine and its
/// `last_applied` then go back together and raft applies those entries again from the log.
/// The log is never purged before the state machine is durable (`RedbLogStore::purge`), so
/// they are still there.
fn apply_batch(
    state: &Staged,
    entries: Vec<Entry>,
    node_id: Option<u64>,
) -> Result<(Vec<CommandResult>, Vec<edge_api::wire::WatchEvent>), Failure> {
    let mut stage = state.stage(&[store::OBJECTS, store::META, store::BLOBS])?;
    let mut membership: Option<StoredMembership> = None;
    let mut last_applied = None;
    let mut results = Vec::with_capacity(entries.len());
    let mut events = Vec::new();
    for entry in entries {
        last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => results.push(CommandResult::Nothing),
            EntryPayload::Normal(cmd) => {
                // A proposer waits only on the server it proposed on (its leader id's node).
                let answer = match node_id {
                    Some(me) if entry.log_id.leader_id.node_id != me => store::Answer::Unwanted,
                    _ => store::Answer::Wanted,
                };
                let (result, evs) = store::apply(&mut stage, &cmd, answer)?;
                results.push(result);
                events.extend(evs);
            }
            EntryPayload::Membership(m) => {
                membership = Some(StoredMembership::new(Some(entry.log_id), m));
                results.push(CommandResult::Nothing);
            }
        }
    }
    if last_applied.is_some() {
        stage_meta(&mut stage, LAST_APPLIED, &last_applied)?;
    }
    if let Some(m) = &membership {
        stage_meta(&mut stage, LAST_MEMBERSHIP, m)?;
    }
    state.commit(stage);
    Ok((results, events))
}

impl RaftSnapshotBuilder<TypeConfig> for RedbStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let state = self.state.clone();
        let snapshot = blocking(move || RedbStateMachine::build(&state))
            .await
            .map_err(sto(ErrorSubject::Snapshot(None), ErrorVerb::Write))?;
        tracing::debug!(snapshot = %snapshot.meta.snapshot_id, "built a snapshot");
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for RedbStateMachine {
    type SnapshotBuilder = RedbStateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.applied()
            .map_err(sto(ErrorSubject::StateMachine, ErrorVerb::Read))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if let Some(last) = entries.last() {
            self.log
                .durable_through(last.log_id.index)
                .await
                .map_err(|e| sto(ErrorSubject::Logs, ErrorVerb::Write)(Failure::Log(e)))?;
        }
        let (results, events) = apply_batch(&self.state, entries, self.node_id)
            .map_err(sto(ErrorSubject::StateMachine, ErrorVerb::Write))?;
        let due = self
            .flushed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .due(Instant::now(), self.state.held_bytes());
        if let Some(durable) = due {
            // A flush writes pages (and may wait for the disk): off the async threads.
            let state = self.state.clone();
            blocking(move || Ok(state.flush(durable)?))
                .await
                .map_err(sto(ErrorSubject::StateMachine, ErrorVerb::Write))?;
        }
        // Watchers only ever see committed changes.
        self.hub.publish(events);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let state = self.state.clone();
        let owned_meta = meta.clone();
        let data = snapshot.into_inner();
        let revision =
            blocking(move || state.replace(|db| RedbStateMachine::install(db, owned_meta, data)))
                .await
                .map_err(sto(
                    ErrorSubject::Snapshot(Some(meta.signature())),
                    ErrorVerb::Write,
                ))?;
        // The whole state was replaced: history no longer describes it, watchers must relist.
        self.hub.reset(revision);
        tracing::info!(snapshot = %meta.snapshot_id, index = ?meta.last_log_id.map(|l| l.index), "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        self.current_snapshot()
            .map_err(sto(ErrorSubject::Snapshot(None), ErrorVerb::Read))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_falls_due_by_time_or_size_and_is_durable_once_a_second() {
        let start = Instant::now();
        let mut f = Flushed::new(start);
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(f.due(at(50), 0), None);
        assert_eq!(f.due(at(50), FLUSH_BYTES), Some(false));
        assert_eq!(f.due(at(120), 0), None);
        assert_eq!(f.due(at(160), 0), Some(false));
        assert_eq!(f.due(at(999), 0), Some(false));
        assert_eq!(f.due(at(1000), 0), Some(true));
        assert_eq!(f.due(at(1050), 0), None);
        assert_eq!(f.due(at(1100), 0), Some(false));
        assert_eq!(f.due(at(2000), 0), Some(true));
    }
}
