//! On-disk cache of precompiled native code (`.cwasm`), keyed by component digest and engine configuration.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;

use crate::RuntimeError;

/// Layout: `<cache_dir>/<engine key>/<digest>.cwasm`. One directory per engine
/// configuration means an upgraded wasmtime (or changed settings) never even looks at
/// stale artifacts, and old directories can be deleted wholesale.
#[derive(Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
}

/// Distinguishes temp files written concurrently by one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl DiskCache {
    pub(crate) fn open(cache_dir: &Path, engine: &Engine) -> Result<DiskCache, RuntimeError> {
        let dir = cache_dir.join(engine_key(engine));
        fs::create_dir_all(&dir).map_err(|e| RuntimeError::Cache {
            path: dir.display().to_string(),
            message: format!("cannot create the cache directory: {e}"),
        })?;
        Ok(DiskCache { dir })
    }

    /// Where the artifact for `digest` lives; the digest was checked to be hex, so it is a
    /// safe file name.
    pub(crate) fn path_for(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.cwasm"))
    }

    /// Writes `bytes` as the artifact for `digest` atomically: a reader (another agent
    /// process, or this one after a power cut) sees either no file or a whole one.
    pub(crate) fn store(&self, digest: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.path_for(digest);
        let tmp = self.dir.join(format!(
            ".{digest}.{}.{}.tmp",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            // SD cards and power cuts: make the data durable before the rename publishes it.
            file.sync_all()?;
            drop(file);
            fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| path)
    }

    /// Removes an artifact that failed to load, so the next load does not trip on it again.
    pub(crate) fn discard(&self, digest: &str) {
        let _ = fs::remove_file(self.path_for(digest));
    }
}

/// Feeds `Hash` output into sha256, because `DefaultHasher` is not guaranteed to be
/// stable across Rust releases and this key must survive restarts.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Unused: the full digest is taken with `finalize` below.
        0
    }
}

/// A short hex key for everything that makes compiled code (in)compatible: the wasmtime
/// version, target, compiler flags and tunables (see `Engine::precompile_compatibility_hash`).
pub(crate) fn engine_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hasher.0.finalize();
    format!("wasmtime-{}", hex::encode(&digest[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_key_is_stable_for_equal_configs() {
        let a = Engine::default();
        let b = Engine::default();
        assert_eq!(engine_key(&a), engine_key(&b));
        assert!(engine_key(&a).starts_with("wasmtime-"));
    }

    #[test]
    fn store_is_atomic_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), &Engine::default()).unwrap();
        let digest = "ab".repeat(32);
        let path = cache.store(&digest, b"first").unwrap();
        cache.store(&digest, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![format!("{digest}.cwasm")]);
        cache.discard(&digest);
        assert!(!path.exists());
    }
}
