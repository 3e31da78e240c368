//! Pod output kept on the node: one file per container (rotated at a size cap), read back for
//! `edgectl logs`, followed by polling the file so no output is missed or duplicated.

use edge_runtime::{OutputSink, OutputStream};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A container's log is rotated once it passes this size; one previous file is kept.
pub const MAX_LOG_BYTES: u64 = 8 << 20;

#[derive(Clone)]
pub struct LogStore {
    dir: PathBuf,
}

impl LogStore {
    pub fn new(dir: PathBuf) -> LogStore {
        LogStore { dir }
    }

    /// The directory of one pod incarnation's logs.
    pub fn pod_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.dir.join(format!("{namespace}_{name}_{uid}"))
    }

    pub fn file(&self, namespace: &str, name: &str, uid: &str, container: &str) -> PathBuf {
        self.pod_dir(namespace, name, uid)
            .join(format!("{container}.log"))
    }

    pub fn sink(&self, path: PathBuf) -> std::io::Result<FileSink> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(FileSink {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn remove_pod(&self, namespace: &str, name: &str, uid: &str) {
        let _ = std::fs::remove_dir_all(self.pod_dir(namespace, name, uid));
    }
}

/// Appends a container's stdout and stderr, interleaved as written, to its log file.
pub struct FileSink {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl OutputSink for FileSink {
    fn write(&self, _stream: OutputStream, bytes: &[u8]) {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.metadata().map(|m| m.len()).unwrap_or(0) > MAX_LOG_BYTES {
            let _ = std::fs::rename(&self.path, self.path.with_extension("log.1"));
            if let Ok(f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                *file = f;
            }
        }
        // A full disk must not kill the workload: dropping output is the lesser harm.
        let _ = file.write_all(bytes);
    }
}

/// The last `tail` lines of a log (all if `None`), and the file offset reading stopped at.
pub fn read_tail(path: &Path, tail: Option<u64>) -> std::io::Result<(Vec<u8>, u64)> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    let end = bytes.len() as u64;
    let Some(n) = tail else {
        return Ok((bytes, end));
    };
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let start = body
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(n.saturating_sub(1) as usize)
        .map(|(i, _)| i + 1)
        .unwrap_or(0);
    let start = if n == 0 { bytes.len() } else { start };
    Ok((bytes[start..].to_vec(), end))
}

/// Bytes appended after `offset` (from the start if the file was rotated and shrank).
pub fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = if len < offset { 0 } else { offset };
    f.seek(SeekFrom::Start(start))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    let end = start + out.len() as u64;
    Ok((out, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_and_follow() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path().to_path_buf());
        let path = store.file("default", "p", "u1", "main");
        let sink = store.sink(path.clone()).unwrap();
        sink.write(OutputStream::Stdout, b"one\ntwo\nthree\n");
        assert_eq!(read_tail(&path, Some(2)).unwrap().0, b"two\nthree\n");
        assert_eq!(read_tail(&path, Some(10)).unwrap().0, b"one\ntwo\nthree\n");
        assert_eq!(read_tail(&path, Some(0)).unwrap().0, b"");
        let (_, off) = read_tail(&path, None).unwrap();
        sink.write(OutputStream::Stderr, b"four\n");
        assert_eq!(read_from(&path, off).unwrap().0, b"four\n");
    }
}
