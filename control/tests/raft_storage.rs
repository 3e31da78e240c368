//! openraft's storage conformance suite against the store (write-ahead log + redb), plus what
//! the suite does not cover: restarts, torn and damaged log files, segment rolling and
//! deletion, and moving a log out of a store written by an older version.

use edge_control::raft::storage::{RedbLogStore, RedbStateMachine, RedbStore, LOG};
use edge_control::raft::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use edge_control::raft::wal::SEGMENT_BYTES;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};
use std::path::{Path, PathBuf};

/// Builds a store on a fresh temp dir; the TempDir guard keeps the directory alive for a test.
struct Builder;

impl StoreBuilder<TypeConfig, RedbLogStore, RedbStateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, RedbLogStore, RedbStateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RedbStore::open(dir.path().join("store.redb")).expect("open store");
        Ok((dir, store.log_store(), store.state_machine()))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("storage suite");
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// Entries `from..to` of `term`, each carrying `payload_bytes` so segments fill quickly.
fn entries(term: u64, from: u64, to: u64, payload_bytes: usize) -> Vec<Entry> {
    (from..to)
        .map(|i| Entry {
            log_id: log_id(term, i),
            payload: EntryPayload::Normal(std::sync::Arc::new(
                edge_control::store::Command::PutBlob {
                    digest: format!("sha256:{i:064}"),
                    data: vec![7u8; payload_bytes],
                },
            )),
        })
        .collect()
}

fn wal_dir(dir: &Path) -> PathBuf {
    dir.join("store.wal")
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(wal_dir(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    out.sort();
    out
}

async fn indexes(log: &mut RedbLogStore) -> Vec<u64> {
    log.try_get_log_entries(..)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

/// Appends and waits until the entries are durable: raft is told of an append before its
/// sync, and these tests look at the files next.
async fn append(store: &RedbStore, log: &mut RedbLogStore, batch: Vec<Entry>) {
    let last = batch.last().map(|e| e.log_id.index);
    log.blocking_append(batch).await.unwrap();
    if let Some(last) = last {
        store.log().durable_through(last).await.unwrap();
    }
}

/// Opens the store in `dir`, waiting for a previous instance's writer to let go of the log.
fn open(dir: &Path) -> RedbStore {
    RedbStore::open(dir.join("store.redb")).expect("open store")
}

#[tokio::test]
async fn a_restart_finds_every_flushed_entry_the_vote_and_the_commit_point() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let mut log = store.log_store();
        log.save_vote(&Vote::new(3, 1)).await.unwrap();
        append(&store, &mut log, entries(3, 0, 50, 10)).await;
        log.truncate(log_id(3, 40)).await.unwrap();
        append(&store, &mut log, entries(4, 40, 45, 10)).await;
        log.save_committed(Some(log_id(4, 42))).await.unwrap();
        log.purge(log_id(3, 9)).await.unwrap();
    }
    let store = open(dir.path());
    let mut log = store.log_store();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(4, 42)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(3, 9)));
    assert_eq!(state.last_log_id, Some(log_id(4, 44)));
    assert_eq!(indexes(&mut log).await, (10..45).collect::<Vec<_>>());
    let e40 = log.try_get_log_entries(40..41).await.unwrap();
    assert_eq!(
        e40[0].log_id,
        log_id(4, 40),
        "the truncated entry 40 stays replaced"
    );
}

/// Appends are reported written before their sync (so a leader replicates while it syncs);
/// `durable_through` is what waits for the sync, and once it returns the whole commit may be
/// told to others, also after a restart (the stalled-disk test below checks the waiting).
#[tokio::test]
async fn durable_through_returns_once_synced_and_entries_read_back_on_open_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut log = store.log_store();
    log.blocking_append(entries(1, 1, 20, 10)).await.unwrap();
    let wait = store.log().durable_through(19);
    tokio::time::timeout(std::time::Duration::from_secs(10), wait)
        .await
        .expect("the writer syncs queued entries")
        .unwrap();
    let wal = store.log();
    assert_eq!(wal.durable_commit(Some(log_id(1, 19))), Some(log_id(1, 19)));
    assert_eq!(wal.durable_commit(Some(log_id(1, 12))), Some(log_id(1, 12)));
    assert_eq!(wal.durable_commit(None), None);
    drop(log);
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        store.log().durable_commit(Some(log_id(1, 19))),
        Some(log_id(1, 19)),
        "entries read back on open are durable"
    );
    store.log().durable_through(19).await.unwrap();
}

/// With the disk stalled, an append is still reported written (openraft replicates it), but
/// nothing counts on it: the commit told to others stays at the durable end of the log, and
/// the state machine does not apply it, until the write reaches the disk.
#[tokio::test]
async fn nothing_counts_on_an_entry_before_it_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut log = store.log_store();
    let mut sm = store.state_machine();
    append(&store, &mut log, entries(1, 1, 6, 10)).await;
    sm.apply(entries(1, 1, 6, 10)).await.unwrap();

    store.log().hold_writes(true);
    log.blocking_append(entries(1, 6, 10, 10)).await.unwrap();
    assert_eq!(indexes(&mut log).await, (1..10).collect::<Vec<_>>());
    assert_eq!(
        store.log().durable_commit(Some(log_id(1, 9))),
        Some(log_id(1, 5)),
        "a leader must not tell others 6-9 are committed yet"
    );
    let apply = tokio::spawn({
        let mut sm = store.state_machine();
        async move { sm.apply(entries(1, 6, 10, 10)).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !apply.is_finished(),
        "applied before the entries were durable"
    );
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 5)));

    store.log().hold_writes(false);
    apply.await.unwrap().unwrap();
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 9)));
    assert_eq!(
        store.log().durable_commit(Some(log_id(1, 9))),
        Some(log_id(1, 9))
    );
}

#[tokio::test]
async fn a_torn_write_at_the_end_is_cut_off_and_writing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let mut log = store.log_store();
        append(&store, &mut log, entries(1, 0, 10, 10)).await;
    }
    // A crash in the middle of a write: the next record's header is there, its payload is not.
    let newest = segments(dir.path()).pop().unwrap();
    let mut torn = std::fs::read(&newest).unwrap();
    let mut end = 0;
    loop {
        let len = u32::from_le_bytes(torn[end..end + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        end += 8 + len;
    }
    torn[end..end + 8].copy_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4]);
    torn[end + 8..end + 20].fill(9);
    std::fs::write(&newest, &torn).unwrap();

    let store = open(dir.path());
    let mut log = store.log_store();
    assert_eq!(indexes(&mut log).await, (0..10).collect::<Vec<_>>());
    append(&store, &mut log, entries(1, 10, 12, 10)).await;
    drop(log);
    drop(store);
    let store = open(dir.path());
    let mut log = store.log_store();
    assert_eq!(indexes(&mut log).await, (0..12).collect::<Vec<_>>());
}

#[tokio::test]
async fn damage_before_the_end_of_the_log_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let mut log = store.log_store();
        // 1 MiB entries: the log spans two segments; damage the older one.
        for i in 0..6 {
            let one = entries(1, i, i + 1, 1 << 20);
            append(&store, &mut log, one).await;
        }
    }
    assert!(segments(dir.path()).len() >= 2);
    let older = segments(dir.path()).remove(0);
    let mut bytes = std::fs::read(&older).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&older, &bytes).unwrap();
    let err = RedbStore::open(dir.path().join("store.redb"))
        .err()
        .expect("a damaged log must not open");
    let msg = err.to_string();
    assert!(
        msg.contains("corrupt") && msg.contains(&older.display().to_string()),
        "{msg}"
    );
}

#[tokio::test]
async fn full_segments_roll_over_and_purged_ones_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut log = store.log_store();
    log.save_vote(&Vote::new(1, 1)).await.unwrap();
    // About three segments' worth of 64 KiB entries.
    let per_segment = SEGMENT_BYTES as usize / (64 << 10);
    let total = 3 * per_segment as u64;
    for i in 0..total {
        append(&store, &mut log, entries(1, i, i + 1, 64 << 10)).await;
    }
    let before = segments(dir.path()).len();
    assert!(before >= 3, "{before} segments");
    log.purge(log_id(1, total - 2)).await.unwrap();
    let after = segments(dir.path()).len();
    assert!(after < before, "purged segments stay: {before} -> {after}");
    drop(log);
    drop(store);
    // The vote lived in the first segment, which is gone: it is restated in every later one.
    let store = open(dir.path());
    let mut log = store.log_store();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
    assert_eq!(indexes(&mut log).await, vec![total - 1]);
}

#[tokio::test]
async fn a_log_kept_in_an_older_store_file_moves_to_the_write_ahead_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let db = store.database();
        let txn = db.begin_write().unwrap();
        {
            let mut log = txn.open_table(LOG).unwrap();
            for e in entries(2, 5, 8, 10) {
                let bytes = edge_api::codec::encode("entry", &e).unwrap();
                log.insert(e.log_id.index, bytes.as_slice()).unwrap();
            }
            let mut meta = txn
                .open_table(edge_control::raft::storage::RAFT_META)
                .unwrap();
            let vote = edge_api::codec::encode("vote", &Vote::new(2, 1)).unwrap();
            meta.insert("vote", vote.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    std::fs::remove_dir_all(wal_dir(dir.path())).unwrap(); // as an older version left it
    let store = open(dir.path());
    let mut log = store.log_store();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
    assert_eq!(indexes(&mut log).await, vec![5, 6, 7]);
}

#[tokio::test]
async fn a_second_process_on_the_same_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    let err = edge_control::raft::wal::Wal::open(&wal_dir(dir.path()))
        .err()
        .expect("the log directory is locked");
    assert!(err.to_string().contains("in use"), "{err}");
}

#[tokio::test]
async fn damage_followed_by_intact_records_in_the_newest_segment_is_not_taken_for_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let mut log = store.log_store();
        for i in 0..5 {
            append(&store, &mut log, entries(1, i, i + 1, 10)).await;
        }
    }
    let newest = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes[12] ^= 0xff; // inside the first record's payload; four intact records follow
    std::fs::write(&newest, &bytes).unwrap();
    let err = RedbStore::open(dir.path().join("store.redb"))
        .err()
        .expect("acknowledged records must not be cut off silently");
    assert!(err.to_string().contains("intact records after it"), "{err}");
}

#[tokio::test]
async fn restarts_go_on_writing_in_the_newest_segment() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        let store = open(dir.path());
        let mut log = store.log_store();
        append(&store, &mut log, entries(1, i, i + 1, 10)).await;
    }
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "a crash loop must not fill the disk"
    );
    let store = open(dir.path());
    let mut log = store.log_store();
    assert_eq!(indexes(&mut log).await, (0..5).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_log_reports_how_much_it_holds_so_raft_can_compact_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let size = store.log_size_probe();
    let mut log = store.log_store();
    assert_eq!(size(), Some(0));
    append(&store, &mut log, entries(1, 0, 10, 10_000)).await;
    let full = size().unwrap();
    assert!(
        (100_000..120_000).contains(&full),
        "{full} bytes for 10 x 10 kB"
    );
    log.purge(log_id(1, 4)).await.unwrap();
    let half = size().unwrap();
    assert!(
        half < full * 6 / 10 && half > full * 4 / 10,
        "{half} of {full}"
    );
    log.truncate(log_id(1, 5)).await.unwrap();
    assert_eq!(size(), Some(0));
    drop((log, store));
    assert_eq!(size(), None, "the probe does not keep the store open");
}

/// A store file holding one object stored as `bytes`, written directly as a build from before
/// stores were marked with their format would have left it.
fn unmarked_store_with_object(dir: &Path, bytes: &[u8]) {
    let db = redb::Database::create(dir.join("store.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(edge_control::store::OBJECTS)
        .unwrap()
        .insert("ConfigMap/default/a", bytes)
        .unwrap();
    txn.commit().unwrap();
}

#[tokio::test]
async fn a_store_of_an_older_or_newer_format_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    // Objects used to be internally tagged maps.
    let mut old = std::collections::BTreeMap::new();
    old.insert("kind", "ConfigMap");
    old.insert("apiVersion", "v1");
    unmarked_store_with_object(dir.path(), &edge_api::codec::encode("old", &old).unwrap());
    let err = RedbStore::open(dir.path().join("store.redb"))
        .err()
        .expect("an old store is refused");
    let msg = err.to_string();
    assert!(msg.contains("an older edge build"), "{msg}");
    assert!(msg.contains("start with an empty one"), "{msg}");

    // A store marked by a newer build.
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    {
        let db = redb::Database::open(dir.path().join("store.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let format = edge_api::codec::encode("format", &99u32).unwrap();
        txn.open_table(edge_control::raft::storage::RAFT_META)
            .unwrap()
            .insert("format", format.as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let err = RedbStore::open(dir.path().join("store.redb"))
        .err()
        .expect("a newer store is refused");
    assert!(err.to_string().contains("a newer edge build"), "{err}");
}

#[tokio::test]
async fn an_unmarked_store_in_the_current_format_opens_and_keeps_its_objects() {
    let dir = tempfile::tempdir().unwrap();
    let mut cm = edge_api::ConfigMap::default();
    cm.metadata.name = "a".into();
    cm.metadata.namespace = "default".into();
    let object = edge_api::Object::ConfigMap(cm);
    unmarked_store_with_object(
        dir.path(),
        &edge_api::codec::encode("object", &object).unwrap(),
    );
    for _ in 0..2 {
        let store = open(dir.path());
        let snapshot = edge_control::store::read_snapshot(&store.state()).unwrap();
        assert_eq!(snapshot.get(&object.key()).unwrap(), Some(object.clone()));
    }
}
