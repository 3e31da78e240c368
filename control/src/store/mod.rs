//! The replicated state machine: object and blob tables in redb, the deterministic `apply` of
//! raft commands, reads, and the watch hub that fans applied changes out to watchers.
//!
//! Invariant: every state-machine table is a `TableDefinition<&str, &[u8]>` whose name starts
//! with `sm.`, so snapshots can copy the state machine without knowing its tables.

mod apply;
mod staged;
mod watch;

pub use apply::{
    apply, namespace_admits, Answer, Command, CommandResult, ObjectHead, Precondition,
};
pub use staged::{Def, ReadRow, Stage, Staged, View};
pub use watch::{WatchHub, WatchSubscription};

use edge_api::object::{Kind, Object, ObjectKey};
use redb::{ReadableTable, TableDefinition};

pub const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("sm.objects");
pub const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("sm.blobs");
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm.meta");
/// Every state-machine table, for snapshot building and installation.
pub const SM_TABLES: [TableDefinition<&str, &[u8]>; 3] = [OBJECTS, BLOBS, META];

const REVISION_KEY: &str = "revision";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Codec(#[from] edge_api::codec::CodecError),
}

macro_rules! storage_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Storage(e.to_string()) }
        }
    )*};
}
storage_err!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The revision of the last write to objects: it counts every change ever made to an object.
pub fn revision<T: ReadableTable<&'static str, &'static [u8]>>(
    meta: &T,
) -> Result<u64, StoreError> {
    Ok(match meta.get(REVISION_KEY)? {
        Some(v) => decode_u64(v.value()),
        None => 0,
    })
}

fn decode_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(a)
}

/// A consistent view of objects for decisions (scheduler, controllers) and API reads.
pub fn read_snapshot(state: &Staged) -> Result<Snapshot, StoreError> {
    let view = state.view(&[OBJECTS, META])?;
    let revision = revision_in(&view)?;
    Ok(Snapshot { revision, view })
}

/// The store's revision as applied so far (see `revision`).
fn revision_in(rows: &impl ReadRow) -> Result<u64, StoreError> {
    rows.read(META, REVISION_KEY, |v| v.map_or(0, decode_u64))
}

/// What is stored at `key`, decoded as `T`: the whole object, or a part (`ObjectHead`).
fn stored_at<T: serde::de::DeserializeOwned>(
    rows: &impl ReadRow,
    key: &ObjectKey,
) -> Result<Option<T>, StoreError> {
    let decoded = rows.read(OBJECTS, &key.storage_key(), |v| {
        v.map(|bytes| edge_api::codec::decode("stored object", bytes))
    })?;
    Ok(decoded.transpose()?)
}

pub struct Snapshot {
    pub revision: u64,
    view: View,
}

impl Snapshot {
    pub fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        self.get_as(key)
    }

    /// What is stored at `key` decoded as `T`: the whole object, or a part (`ObjectHead`).
    pub fn get_as<T: serde::de::DeserializeOwned>(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<T>, StoreError> {
        stored_at(&self.view, key)
    }

    /// All objects of `kind`, in one namespace or all, in key order.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<Vec<Object>, StoreError> {
        let prefix = ObjectKey::storage_prefix(kind, namespace);
        let mut out = Vec::new();
        self.view.scan_prefix(OBJECTS, &prefix, |_, bytes| {
            out.push(edge_api::codec::decode("stored object", bytes)?);
            Ok(())
        })?;
        Ok(out)
    }
}

/// Reads a blob by digest.
pub fn read_blob(state: &Staged, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
    state
        .view(&[BLOBS])?
        .read(BLOBS, digest, |v| v.map(<[u8]>::to_vec))
}
