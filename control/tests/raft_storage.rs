//! openraft's storage conformance suite against the redb store, plus corruption handling:
//! bytes on disk that do not decode must surface as StorageError, never as a panic.

use edge_control::raft::storage::{RedbLogStore, RedbStateMachine, RedbStore, LOG};
use edge_control::raft::types::{StorageError, TypeConfig};
use openraft::storage::RaftLogStorage;
use openraft::testing::{StoreBuilder, Suite};
use openraft::RaftLogReader;

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

#[tokio::test]
async fn corrupt_log_entry_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path().join("store.redb")).unwrap();
    {
        let db = store.database();
        let txn = db.begin_write().unwrap();
        txn.open_table(LOG)
            .unwrap()
            .insert(3u64, &b"\xff\x00garbage"[..])
            .unwrap();
        txn.commit().unwrap();
    }
    let mut log = store.log_store();
    assert!(log.try_get_log_entries(0..10).await.is_err());
    assert!(log.get_log_state().await.is_err());
}
