//! The replicated state machine: object and blob tables in redb, the deterministic `apply` of
//! raft commands, reads, and the watch hub that fans applied changes out to watchers.
//!
//! Invariant: every state-machine table is a `TableDefinition<&str, &[u8]>` whose name starts
//! with `sm.`, so snapshots can copy the state machine without knowing its tables.

mod apply;
mod watch;

pub use apply::{apply, namespace_admits, Command, CommandResult, Precondition};
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

/// Read access to the state machine through any redb table handle (read or write transaction).
pub struct Reader<T>(pub T);

impl<T: ReadableTable<&'static str, &'static [u8]>> Reader<T> {
    pub fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        match self.0.get(key.storage_key().as_str())? {
            Some(v) => Ok(Some(edge_api::codec::decode("stored object", v.value())?)),
            None => Ok(None),
        }
    }

    /// All objects of `kind`, in one namespace or all, in key order.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<Vec<Object>, StoreError> {
        let prefix = ObjectKey::storage_prefix(kind, namespace);
        let mut out = Vec::new();
        for item in self.0.range(prefix.as_str()..)? {
            let (k, v) = item?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            out.push(edge_api::codec::decode("stored object", v.value())?);
        }
        Ok(out)
    }
}

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
pub fn read_snapshot(db: &redb::Database) -> Result<Snapshot, StoreError> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(META) {
        Ok(t) => Some(t),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let revision = match &meta {
        Some(m) => revision(m)?,
        None => 0,
    };
    let objects = match txn.open_table(OBJECTS) {
        Ok(t) => Some(Reader(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(Snapshot { revision, objects })
}

pub struct Snapshot {
    pub revision: u64,
    objects: Option<Reader<redb::ReadOnlyTable<&'static str, &'static [u8]>>>,
}

impl Snapshot {
    pub fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        match &self.objects {
            Some(r) => r.get(key),
            None => Ok(None),
        }
    }

    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<Vec<Object>, StoreError> {
        match &self.objects {
            Some(r) => r.list(kind, namespace),
            None => Ok(Vec::new()),
        }
    }
}

/// Reads a blob by digest.
pub fn read_blob(db: &redb::Database, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(BLOBS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(table.get(digest)?.map(|v| v.value().to_vec()))
}
