//! The content-addressed blob store (uploaded components), kept beside the raft store but out
//! of the raft log: a 48 MB entry could never replicate within a heartbeat. The server that
//! takes an upload pushes it to the other members and acknowledges it once a majority of
//! voters has it on disk; a member missing a blob fetches it from the others on first use.
//!
//! Files are written to a temporary name, fsynced and renamed, so a blob is either whole or
//! absent after a crash; bytes from peers are checked against their digest before they count.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{0:?} is not a blob digest (expected sha256:<64 hex digits>)")]
    BadDigest(String),
    #[error("the bytes do not match digest {0}")]
    Mismatch(String),
    #[error("blob store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("blob task failed: {0}")]
    Task(String),
}

#[derive(Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    pub fn open(dir: &Path) -> Result<BlobStore, BlobError> {
        std::fs::create_dir_all(dir).map_err(|source| BlobError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(BlobStore {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, digest: &str) -> Result<PathBuf, BlobError> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| BlobError::BadDigest(digest.to_string()))?;
        Ok(self.dir.join(hex.to_ascii_lowercase()))
    }

    /// The blob's bytes, `None` if this server does not have it.
    pub async fn read(&self, digest: String) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.path(&digest)?;
        let read = tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BlobError::Io { path, source }),
        });
        read.await.map_err(|e| BlobError::Task(e.to_string()))?
    }

    /// Whether the blob is here.
    pub fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.exists())
    }

    /// Stores the blob durably after checking it matches `digest`; storing it again is a no-op.
    pub async fn write(&self, digest: String, data: Vec<u8>) -> Result<(), BlobError> {
        let path = self.path(&digest)?;
        if path.exists() {
            return Ok(());
        }
        let dir = self.dir.clone();
        let write = tokio::task::spawn_blocking(move || {
            if edge_api::wire::blob_digest(&data) != digest.to_ascii_lowercase() {
                return Err(BlobError::Mismatch(digest));
            }
            write_durably(&dir, &path, &data)
        });
        write.await.map_err(|e| BlobError::Task(e.to_string()))?
    }
}

fn write_durably(dir: &Path, path: &Path, data: &[u8]) -> Result<(), BlobError> {
    let io = |source| BlobError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself must survive a power cut.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_by_digest_and_refuses_mismatches() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let data = b"\0asm\x01\0\0\0".to_vec();
        let digest = edge_api::wire::blob_digest(&data);
        assert_eq!(store.read(digest.clone()).await.unwrap(), None);
        store.write(digest.clone(), data.clone()).await.unwrap();
        assert!(store.contains(&digest));
        assert_eq!(store.read(digest.clone()).await.unwrap(), Some(data));
        let other = edge_api::wire::blob_digest(b"other");
        let e = store.write(other, b"not it".to_vec()).await.unwrap_err();
        assert!(matches!(e, BlobError::Mismatch(_)), "{e}");
        let e = store.read("sha256:../../etc".into()).await.unwrap_err();
        assert!(matches!(e, BlobError::BadDigest(_)), "{e}");
    }
}
