//! The raft log's write-ahead log: append-only segment files of checksummed records, made
//! durable in groups by one writer thread, with the live log kept in memory for replication.
//!
//! Why not redb: a durable redb commit rewrites its header and syncs more than once (about
//! 3.4 ms on the CI machine's disk), and redb has a single writer, so log appends queued behind
//! state-machine applies. Here an append is a memory update plus a channel send; the writer
//! thread makes every append waiting durable with one write and one `fdatasync` into a
//! zero-filled file (a few hundred microseconds), and only then reports them flushed to raft.
//!
//! Format: files `<seq>.wal` (20 digits, increasing), zero-filled to `SEGMENT_BYTES` when made
//! so that syncing an append does not also sync a size change. A record is
//! `len: u32 LE | crc32(payload): u32 LE | payload (CBOR of Record)`; a zero length or the end
//! of the file ends a segment. Every segment starts with the vote, purge point and committed id
//! as they were when it was made, so an older segment can be deleted once the purge point
//! passes all of its entries. On open the records are replayed in order; a torn record at the
//! end of the newest segment is a write that was never acknowledged and is cut off; a damaged
//! record anywhere else (or one with intact records after it) is corruption and an error. On
//! open the newest segment is synced (replay may have read it from the page cache only) and
//! writing resumes at its end, so restarts do not pile up segments.

mod files;
mod writer;

pub use files::create_from;
use files::{replay, Replayed};
use writer::{Checkpoint, Writer};

use super::types::{Entry, LogId, TypeConfig, Vote};
use edge_api::codec;
use openraft::storage::LogFlushed;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// Size a segment is zero-filled to; a segment is left for a new one once a record would not
/// fit (a single larger batch still goes in whole).
pub const SEGMENT_BYTES: u64 = 4 << 20;
const HEADER: usize = 8;
/// How long `open` waits for another holder of the directory (a previous in-process instance
/// finishing its last write) before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// A failure opening or replaying the log directory.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("raft log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("raft log {path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("raft log {0} is in use by another edged process (or one that did not stop); stop it or choose another --data-dir")]
    Locked(PathBuf),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One record of the log. Entries are borrowed when written and owned when read back.
#[derive(Serialize, Deserialize)]
enum Record<'a> {
    Entries(Cow<'a, [Entry]>),
    /// Entries from this index on are gone.
    Truncate(u64),
    /// Entries up to and including this id are gone.
    Purge(LogId),
    Vote(Vote),
    Committed(Option<LogId>),
}

/// The log as raft sees it: what every record written so far amounts to.
#[derive(Debug, Default)]
pub struct MemLog {
    entries: VecDeque<Entry>,
    /// The encoded size of each entry (its share of its record), in step with `entries`.
    sizes: VecDeque<u32>,
    /// Their sum: what the log holds in memory, roughly (see `bytes`).
    bytes: u64,
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    pub last_purged: Option<LogId>,
}

impl MemLog {
    /// The encoded size of the entries held, which their memory follows: raft compacts the log
    /// when it grows past a bound (`RaftNode`'s log-size watch), not only after many entries.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn last_log_id(&self) -> Option<LogId> {
        self.entries.back().map(|e| e.log_id).or(self.last_purged)
    }

    /// Appends entries that must continue the log; an entry at an index already held replaces
    /// it and everything after (raft truncates first, so this only tolerates a redo). An empty
    /// log takes any index: after a snapshot the log restarts past the purge point.
    pub fn append(&mut self, entries: &[Entry], record_bytes: usize) -> Result<(), String> {
        let each = u32::try_from(record_bytes / entries.len().max(1)).unwrap_or(u32::MAX);
        for entry in entries {
            let index = entry.log_id.index;
            if let Some(last) = self.entries.back().map(|e| e.log_id.index) {
                if index <= last {
                    self.truncate(index);
                }
            }
            match self.entries.back().map(|e| e.log_id.index) {
                Some(last) if index != last + 1 => {
                    return Err(format!("entry {index} does not follow entry {last}"))
                }
                _ => {
                    self.entries.push_back(entry.clone());
                    self.sizes.push_back(each);
                    self.bytes += u64::from(each);
                }
            }
        }
        Ok(())
    }

    pub fn truncate(&mut self, since: u64) {
        while self.entries.back().is_some_and(|e| e.log_id.index >= since) {
            self.entries.pop_back();
            self.bytes = self
                .bytes
                .saturating_sub(self.sizes.pop_back().map_or(0, u64::from));
        }
    }

    pub fn purge(&mut self, upto: LogId) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.log_id.index <= upto.index)
        {
            self.entries.pop_front();
            self.bytes = self
                .bytes
                .saturating_sub(self.sizes.pop_front().map_or(0, u64::from));
        }
        if self.last_purged.is_none_or(|p| p < upto) {
            self.last_purged = Some(upto);
        }
    }

    /// Copies of the entries whose index lies in the range.
    pub fn range(&self, start: Bound<u64>, end: Bound<u64>) -> Vec<Entry> {
        let Some(first) = self.entries.front().map(|e| e.log_id.index) else {
            return Vec::new();
        };
        let lo = match start {
            Bound::Included(s) => s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => first,
        }
        .max(first);
        let hi = match end {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => e,
            Bound::Unbounded => u64::MAX,
        };
        if lo >= hi {
            return Vec::new();
        }
        let skip = usize::try_from(lo - first).unwrap_or(usize::MAX);
        let take = usize::try_from(hi - lo).unwrap_or(usize::MAX);
        self.entries.iter().skip(skip).take(take).cloned().collect()
    }

    fn apply(&mut self, record: Record<'_>, record_bytes: usize) -> Result<(), String> {
        match record {
            Record::Entries(entries) => self.append(&entries, record_bytes)?,
            Record::Truncate(since) => self.truncate(since),
            Record::Purge(upto) => self.purge(upto),
            Record::Vote(v) => self.vote = Some(v),
            Record::Committed(c) => self.committed = c,
        }
        Ok(())
    }
}

/// Frames a record: length, checksum, CBOR.
fn frame(record: &Record<'_>) -> Result<Vec<u8>, codec::CodecError> {
    let payload = codec::encode("raft log record", record)?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// What a queued write does to the log, for the writer's own bookkeeping (segment headers and
/// which segments may go).
#[derive(Clone, Copy)]
enum Effect {
    Entries { last: u64 },
    Truncate,
    Purge(LogId),
    Vote(Vote),
    Committed(Option<LogId>),
}

/// Who waits for a write, and how they are told it is durable.
enum Done {
    /// raft's append callback.
    Flushed(LogFlushed<TypeConfig>),
    Synced(tokio::sync::oneshot::Sender<Result<(), String>>),
    /// Needs no sync of its own: the next synced write persists it.
    Lazy,
}

struct Job {
    bytes: Vec<u8>,
    effect: Effect,
    done: Done,
}

/// A handle on the log: the shared in-memory view and the queue to the writer thread. Cheap to
/// clone; the writer stops when the last handle is dropped.
#[derive(Clone)]
pub struct Wal {
    mem: Arc<RwLock<MemLog>>,
    jobs: mpsc::Sender<Job>,
}

/// A poisoned lock only means a panic elsewhere mid-read: the log itself is whole.
fn read_log(mem: &RwLock<MemLog>) -> RwLockReadGuard<'_, MemLog> {
    mem.read().unwrap_or_else(|p| p.into_inner())
}

impl Wal {
    /// Opens (or creates) the log in `dir`, replays it and starts the writer.
    pub fn open(dir: &Path) -> Result<Wal, WalError> {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let lock = lock_dir(dir)?;
        let Replayed { mem, segments, end } = replay(dir)?;
        let checkpoint = Checkpoint {
            vote: mem.vote,
            purged: mem.last_purged,
            committed: mem.committed,
        };
        let writer = Writer::resume(dir, segments, end, checkpoint, lock).map_err(io_at(dir))?;
        let (jobs, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("raft-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(io_at(dir))?;
        Ok(Wal {
            mem: Arc::new(RwLock::new(mem)),
            jobs,
        })
    }

    /// The size of the entries held, read through a weak reference: None once every handle
    /// (and so the writer) is gone.
    pub fn size_probe(&self) -> impl Fn() -> Option<u64> + Send + 'static {
        let weak = Arc::downgrade(&self.mem);
        move || {
            let mem = weak.upgrade()?;
            let bytes = read_log(&mem).bytes();
            Some(bytes)
        }
    }

    /// The log as written so far.
    pub fn read(&self) -> RwLockReadGuard<'_, MemLog> {
        read_log(&self.mem)
    }

    fn write(&self) -> RwLockWriteGuard<'_, MemLog> {
        self.mem.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends entries: visible to readers at once, reported to `callback` once durable.
    pub fn append(
        &self,
        entries: &[Entry],
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), String> {
        let Some(last) = entries.last().map(|e| e.log_id.index) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let framed = frame(&Record::Entries(Cow::Borrowed(entries)))
            .map_err(|e| e.to_string())
            .and_then(|bytes| self.write().append(entries, bytes.len()).map(|()| bytes));
        match framed {
            Ok(bytes) => {
                self.queue(Job {
                    bytes,
                    effect: Effect::Entries { last },
                    done: Done::Flushed(callback),
                });
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.clone())));
                Err(e)
            }
        }
    }

    pub async fn truncate(&self, since: u64) -> Result<(), String> {
        self.write().truncate(since);
        self.synced(&Record::Truncate(since), Effect::Truncate)
            .await
    }

    pub async fn purge(&self, upto: LogId) -> Result<(), String> {
        self.write().purge(upto);
        self.synced(&Record::Purge(upto), Effect::Purge(upto)).await
    }

    pub async fn save_vote(&self, vote: Vote) -> Result<(), String> {
        self.write().vote = Some(vote);
        self.synced(&Record::Vote(vote), Effect::Vote(vote)).await
    }

    /// Not synced on its own: it only lets a restart re-apply sooner.
    pub fn save_committed(&self, committed: Option<LogId>) -> Result<(), String> {
        self.write().committed = committed;
        let bytes = frame(&Record::Committed(committed)).map_err(|e| e.to_string())?;
        self.queue(Job {
            bytes,
            effect: Effect::Committed(committed),
            done: Done::Lazy,
        });
        Ok(())
    }

    async fn synced(&self, record: &Record<'_>, effect: Effect) -> Result<(), String> {
        let bytes = frame(record).map_err(|e| e.to_string())?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue(Job {
            bytes,
            effect,
            done: Done::Synced(tx),
        });
        rx.await
            .unwrap_or_else(|_| Err("the raft log writer stopped".into()))
    }

    fn queue(&self, job: Job) {
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            job.done.complete(Err("the raft log writer stopped".into()));
        }
    }
}

impl Done {
    fn complete(self, result: Result<(), String>) {
        match self {
            Done::Flushed(cb) => cb.log_io_completed(result.map_err(io::Error::other)),
            Done::Synced(tx) => {
                let _ = tx.send(result); // the caller may have given up waiting
            }
            Done::Lazy => {}
        }
    }
}

/// Takes the directory's lock file, waiting a little for an in-process predecessor.
fn lock_dir(dir: &Path) -> Result<File, WalError> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_at(&path))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(fs::TryLockError::WouldBlock) => return Err(WalError::Locked(dir.to_path_buf())),
            Err(fs::TryLockError::Error(e)) => return Err(io_at(&path)(e)),
        }
    }
}

/// A segment file and the highest entry index it holds.
struct Segment {
    seq: u64,
    max_index: Option<u64>,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}
