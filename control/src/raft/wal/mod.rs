//! The raft log's write-ahead log: append-only segment files of checksummed records, made
//! durable in groups by one writer thread, with the live log kept in memory for replication.
//!
//! Why not redb: a durable redb commit rewrites its header and syncs more than once (about
//! 3.4 ms on the CI machine's disk), and redb has a single writer, so log appends queued behind
//! state-machine applies. Here an append is a memory update plus a channel send; the writer
//! thread makes every append waiting durable with one write and one `fdatasync` into a
//! zero-filled file (a few hundred microseconds). Raft is told of an append at once, so a
//! leader's sync overlaps its followers'; `Wal::append` says what keeps that safe.
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
    /// The number of the write that put each entry here (0: read back on open), in step with
    /// `entries` and never decreasing along it: an entry is durable once the writer has
    /// synced that write.
    writes: VecDeque<u64>,
    /// The number the next queued write gets: writes are numbered in the order they are
    /// queued, which is the order the writer thread takes them.
    next_write: u64,
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
    pub fn append(
        &mut self,
        entries: &[Entry],
        record_bytes: usize,
        write: u64,
    ) -> Result<(), String> {
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
                    self.writes.push_back(write);
                    self.bytes += u64::from(each);
                }
            }
        }
        Ok(())
    }

    pub fn truncate(&mut self, since: u64) {
        while self.entries.back().is_some_and(|e| e.log_id.index >= since) {
            self.entries.pop_back();
            self.writes.pop_back();
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
            self.writes.pop_front();
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

    /// The write an entry must wait for to be durable: None when it is not held (purged
    /// entries are durable; a later one has not been appended).
    fn write_of(&self, index: u64) -> Option<u64> {
        let first = self.entries.front()?.log_id.index;
        let at = usize::try_from(index.checked_sub(first)?).ok()?;
        self.writes.get(at).copied()
    }

    /// The newest entry id at or below `wanted` whose write is synced (`synced`): what may be
    /// called committed to others while this log's own sync is still under way.
    fn durable_id(&self, wanted: LogId, synced: u64) -> Option<LogId> {
        let held = self.writes.partition_point(|w| *w <= synced);
        let newest = match held {
            0 => self.last_purged,
            n => self.entries.get(n - 1).map(|e| e.log_id),
        };
        newest.min(Some(wanted))
    }

    fn apply(&mut self, record: Record<'_>, record_bytes: usize) -> Result<(), String> {
        match record {
            Record::Entries(entries) => self.append(&entries, record_bytes, 0)?,
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

struct Job {
    /// Its number in queue order (`MemLog::next_write`).
    write: u64,
    bytes: Vec<u8>,
    effect: Effect,
    /// Needs no sync of its own (the commit point): the next synced write persists it. Whoever
    /// waits for a write to be durable waits on `Synced`.
    lazy: bool,
}

/// How far the writer has synced: every write numbered `upto` or lower is durable, unless
/// writing `failed`, but for a commit point still parked (nobody waits for those).
#[derive(Debug, Default)]
struct Synced {
    upto: u64,
    failed: Option<String>,
}

/// A handle on the log: the shared in-memory view and the queue to the writer thread. Cheap to
/// clone; the writer stops when the last handle is dropped.
#[derive(Clone)]
pub struct Wal {
    mem: Arc<RwLock<MemLog>>,
    jobs: mpsc::Sender<Job>,
    /// The commit point's record, waiting for a write to carry it (`writer::Parked`).
    parked: Arc<std::sync::Mutex<writer::Parked>>,
    synced: tokio::sync::watch::Receiver<Synced>,
    /// Holds the writer back while set, as a stalled disk would (`hold_writes`).
    held: Arc<std::sync::atomic::AtomicBool>,
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
        let Replayed {
            mut mem,
            segments,
            end,
        } = replay(dir)?;
        // What was read back is durable: write 0, which `Synced` starts at.
        mem.next_write = 1;
        let checkpoint = Checkpoint {
            vote: mem.vote,
            purged: mem.last_purged,
            committed: mem.committed,
        };
        let writer = Writer::resume(dir, segments, end, checkpoint, lock).map_err(io_at(dir))?;
        let (jobs, rx) = mpsc::channel();
        let (report, synced) = tokio::sync::watch::channel(Synced::default());
        let held = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer_held = held.clone();
        let parked = Arc::new(std::sync::Mutex::new(writer::Parked::default()));
        let writer_parked = parked.clone();
        std::thread::Builder::new()
            .name("raft-wal".into())
            .spawn(move || writer.run(rx, report, &writer_held, &writer_parked))
            .map_err(io_at(dir))?;
        Ok(Wal {
            mem: Arc::new(RwLock::new(mem)),
            jobs,
            parked,
            synced,
            held,
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

    /// Appends entries: visible to readers at once, and reported to `callback` as written
    /// before they are durable, so that openraft sends them to the followers while this
    /// server's own sync is under way (raft thesis 10.2.1, as etcd does). What keeps an
    /// acknowledged write on a majority is that nothing counts on them until they are durable:
    /// the state machine applies an entry only after `durable_through` it, a follower answers
    /// an append only after the same, and a leader tells others no commit index past its own
    /// durable log (`durable_commit`).
    pub fn append(
        &self,
        entries: &[Entry],
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), String> {
        let Some(last) = entries.last().map(|e| e.log_id.index) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let queued = frame(&Record::Entries(Cow::Borrowed(entries)))
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                let mut mem = self.write();
                let write = mem.next_write;
                mem.append(entries, bytes.len(), write)?;
                self.queue(&mut mem, bytes, Effect::Entries { last })
            });
        callback.log_io_completed(queued.clone().map_err(io::Error::other));
        queued
    }

    pub async fn truncate(&self, since: u64) -> Result<(), String> {
        self.synced(&Record::Truncate(since), Effect::Truncate, |mem| {
            mem.truncate(since)
        })
        .await
    }

    pub async fn purge(&self, upto: LogId) -> Result<(), String> {
        self.synced(&Record::Purge(upto), Effect::Purge(upto), |mem| {
            mem.purge(upto)
        })
        .await
    }

    pub async fn save_vote(&self, vote: Vote) -> Result<(), String> {
        self.synced(&Record::Vote(vote), Effect::Vote(vote), |mem| {
            mem.vote = Some(vote)
        })
        .await
    }

    /// Not synced on its own: it only lets a restart re-apply sooner.
    pub fn save_committed(&self, committed: Option<LogId>) -> Result<(), String> {
        let bytes = frame(&Record::Committed(committed)).map_err(|e| e.to_string())?;
        let mut mem = self.write();
        mem.committed = committed;
        let job = Job {
            write: mem.next_write,
            bytes,
            effect: Effect::Committed(committed),
            lazy: true,
        };
        mem.next_write += 1;
        match writer::park(&self.parked, job) {
            Some(job) => self.send(job),
            None => Ok(()),
        }
    }

    /// Returns once the entry at `index` (or whatever replaced it meanwhile) is durable here.
    pub async fn durable_through(&self, index: u64) -> Result<(), String> {
        let write = {
            let mem = self.read();
            match mem.write_of(index) {
                Some(w) => w,
                None if mem.last_purged.is_some_and(|p| index <= p.index) => 0,
                // Past the end: the log as it stands (not `next_write`, which may be a lazy
                // write that no sync follows).
                None => mem.writes.back().copied().unwrap_or(0),
            }
        };
        self.until_synced(write).await
    }

    /// Returns once the writer has synced write number `write`.
    async fn until_synced(&self, write: u64) -> Result<(), String> {
        let mut synced = self.synced.clone();
        let state = synced
            .wait_for(|s| s.failed.is_some() || s.upto >= write)
            .await
            .map_err(|_| "the raft log writer stopped".to_string())?;
        match &state.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Stops the writer before its next write, or lets it go on: a stalled disk, for tests of
    /// what waits for durability.
    #[doc(hidden)]
    pub fn hold_writes(&self, held: bool) {
        self.held.store(held, std::sync::atomic::Ordering::Release);
    }

    /// `wanted`, or the newest entry before it that is durable here if its sync is still
    /// under way: the commit index a leader may tell others.
    pub fn durable_commit(&self, wanted: Option<LogId>) -> Option<LogId> {
        let wanted = wanted?;
        let synced = self.synced.borrow().upto;
        self.read().durable_id(wanted, synced)
    }

    async fn synced(
        &self,
        record: &Record<'_>,
        effect: Effect,
        change: impl FnOnce(&mut MemLog),
    ) -> Result<(), String> {
        let bytes = frame(record).map_err(|e| e.to_string())?;
        let write = {
            let mut mem = self.write();
            change(&mut mem);
            let write = mem.next_write;
            self.queue(&mut mem, bytes, effect)?;
            write
        };
        self.until_synced(write).await
    }

    /// Queues a write while the caller holds the log's lock, so that write numbers follow
    /// queue order.
    fn queue(&self, mem: &mut MemLog, bytes: Vec<u8>, effect: Effect) -> Result<(), String> {
        let job = Job {
            write: mem.next_write,
            bytes,
            effect,
            lazy: false,
        };
        mem.next_write += 1;
        self.send(job)
    }

    fn send(&self, job: Job) -> Result<(), String> {
        self.jobs
            .send(job)
            .map_err(|_| "the raft log writer stopped".to_string())
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

#[cfg(test)]
mod tests;
