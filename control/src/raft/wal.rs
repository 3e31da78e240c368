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
//! record anywhere else is corruption and an error. Writing always resumes in a new segment.

use super::types::{Entry, LogId, TypeConfig, Vote};
use edge_api::codec;
use openraft::storage::LogFlushed;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
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
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    pub last_purged: Option<LogId>,
}

impl MemLog {
    pub fn last_log_id(&self) -> Option<LogId> {
        self.entries.back().map(|e| e.log_id).or(self.last_purged)
    }

    /// Appends entries that must continue the log; an entry at an index already held replaces
    /// it and everything after (raft truncates first, so this only tolerates a redo). An empty
    /// log takes any index: after a snapshot the log restarts past the purge point.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), String> {
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
                _ => self.entries.push_back(entry.clone()),
            }
        }
        Ok(())
    }

    pub fn truncate(&mut self, since: u64) {
        while self.entries.back().is_some_and(|e| e.log_id.index >= since) {
            self.entries.pop_back();
        }
    }

    pub fn purge(&mut self, upto: LogId) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.log_id.index <= upto.index)
        {
            self.entries.pop_front();
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

    fn apply(&mut self, record: Record<'_>) -> Result<(), String> {
        match record {
            Record::Entries(entries) => self.append(&entries)?,
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

impl Wal {
    /// Opens (or creates) the log in `dir`, replays it and starts the writer.
    pub fn open(dir: &Path) -> Result<Wal, WalError> {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let lock = lock_dir(dir)?;
        let (mem, segments) = replay(dir)?;
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            segments,
            file: None,
            offset: 0,
            header_len: 0,
            checkpoint: Checkpoint {
                vote: mem.vote,
                purged: mem.last_purged,
                committed: mem.committed,
            },
            failed: None,
            _lock: lock,
        };
        writer.roll().map_err(io_at(dir))?;
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

    /// The log as written so far (a poisoned lock only means a panic elsewhere mid-read).
    pub fn read(&self) -> RwLockReadGuard<'_, MemLog> {
        self.mem.read().unwrap_or_else(|p| p.into_inner())
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
            .and_then(|bytes| self.write().append(entries).map(|()| bytes));
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

/// Writes `log` as a new write-ahead log at `dir` (which must not exist): built in a sibling
/// directory and renamed into place once durable, so a crash never leaves half a log.
pub fn create_from(dir: &Path, log: &MemLog) -> Result<(), WalError> {
    let tmp = dir.with_extension("new");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_at(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
    let path = segment_path(&tmp, 1);
    let entries: Vec<Entry> = log.entries.iter().cloned().collect();
    let mut bytes = Vec::new();
    let records = [
        log.vote.map(Record::Vote),
        log.last_purged.map(Record::Purge),
        Some(Record::Committed(log.committed)),
        Some(Record::Entries(Cow::Owned(entries))),
    ];
    for record in records.iter().flatten() {
        let framed = frame(record).map_err(|e| WalError::Corrupt {
            path: path.clone(),
            offset: bytes.len() as u64,
            reason: e.to_string(),
        })?;
        bytes.extend(framed);
    }
    let sync = |p: &Path| File::open(p).and_then(|f| f.sync_all()).map_err(io_at(p));
    fs::write(&path, &bytes).map_err(io_at(&path))?;
    sync(&path)?;
    sync(&tmp)?;
    fs::rename(&tmp, dir).map_err(io_at(dir))?;
    sync(dir.parent().unwrap_or(Path::new(".")))
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

/// Segment numbers in `dir`, oldest first.
fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut seqs = Vec::new();
    for item in fs::read_dir(dir).map_err(io_at(dir))? {
        let name = item.map_err(io_at(dir))?.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = name
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Replays every segment into memory; cuts a torn tail off the newest one.
fn replay(dir: &Path) -> Result<(MemLog, Vec<Segment>), WalError> {
    let seqs = list_segments(dir)?;
    let mut mem = MemLog::default();
    let mut segments = Vec::new();
    for (i, &seq) in seqs.iter().enumerate() {
        let path = segment_path(dir, seq);
        let bytes = fs::read(&path).map_err(io_at(&path))?;
        let newest = i + 1 == seqs.len();
        let mut max_index = None;
        let mut offset = 0usize;
        while let Some(found) = next_record(&bytes, offset) {
            let corrupt = |reason: String| WalError::Corrupt {
                path: path.clone(),
                offset: offset as u64,
                reason,
            };
            let payload = match found {
                Ok(payload) => payload,
                Err(_) if newest => {
                    tracing::warn!(path = %path.display(), offset, "cut off a torn write at the end of the raft log (it was never acknowledged)");
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io_at(&path))?;
                    file.set_len(offset as u64).map_err(io_at(&path))?;
                    file.sync_all().map_err(io_at(&path))?;
                    break;
                }
                Err(reason) => return Err(corrupt(reason)),
            };
            let record: Record =
                codec::decode("raft log record", payload).map_err(|e| corrupt(e.to_string()))?;
            if let Record::Entries(entries) = &record {
                if let Some(last) = entries.last().map(|e| e.log_id.index) {
                    max_index = Some(max_index.map_or(last, |m: u64| m.max(last)));
                }
            }
            mem.apply(record).map_err(corrupt)?;
            offset += HEADER + payload.len();
        }
        segments.push(Segment { seq, max_index });
    }
    Ok((mem, segments))
}

/// The record at `offset`: None at the end of the segment, Err if it is damaged or cut short.
fn next_record(bytes: &[u8], offset: usize) -> Option<Result<&[u8], String>> {
    let rest = bytes.get(offset..)?;
    if rest.len() < HEADER {
        return rest
            .iter()
            .any(|b| *b != 0)
            .then(|| Err("a cut-short record header".into()));
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len == 0 {
        return None;
    }
    let Some(payload) = rest.get(HEADER..HEADER + len) else {
        return Some(Err(format!(
            "a record of {len} bytes runs past the end of the file"
        )));
    };
    if crc32fast::hash(payload) != crc {
        return Some(Err("checksum mismatch".into()));
    }
    Some(Ok(payload))
}

/// Vote, purge point and committed id as last written: restated at the top of each segment.
struct Checkpoint {
    vote: Option<Vote>,
    purged: Option<LogId>,
    committed: Option<LogId>,
}

/// The writer thread's state: the segment being written and those still needed.
struct Writer {
    dir: PathBuf,
    segments: Vec<Segment>,
    file: Option<File>,
    offset: u64,
    /// Where the checkpoint at the top of the current segment ends.
    header_len: u64,
    checkpoint: Checkpoint,
    /// After a failed write or sync the file's state is unknown: every later write fails too,
    /// which stops raft with a storage error instead of acknowledging on a broken disk.
    failed: Option<String>,
    _lock: File,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let result = self.write_batch(&batch);
            if let Err(e) = &result {
                tracing::error!(error = %e, "the raft log cannot be written");
            }
            let purged = batch.iter().any(|j| matches!(j.effect, Effect::Purge(_)));
            for job in batch {
                job.done.complete(result.clone());
            }
            if purged && result.is_ok() {
                self.delete_purged_segments();
            }
        }
    }

    fn write_batch(&mut self, batch: &[Job]) -> Result<(), String> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.try_write_batch(batch).map_err(|e| e.to_string());
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn try_write_batch(&mut self, batch: &[Job]) -> io::Result<()> {
        let mut buf = Vec::new();
        for job in batch {
            let end = self.offset + (buf.len() + job.bytes.len()) as u64;
            // A segment holding nothing but its checkpoint takes the record however big.
            if end > SEGMENT_BYTES && self.offset + buf.len() as u64 > self.header_len {
                self.put(&buf)?;
                buf.clear();
                self.roll()?;
            }
            buf.extend_from_slice(&job.bytes);
            self.note(job.effect);
        }
        self.put(&buf)?;
        if batch.iter().any(|j| !matches!(j.done, Done::Lazy)) {
            self.current()?.sync_data()?;
        }
        Ok(())
    }

    fn checkpoint_bytes(&self) -> io::Result<Vec<u8>> {
        let c = &self.checkpoint;
        let mut records = Vec::new();
        if let Some(v) = c.vote {
            records.push(Record::Vote(v));
        }
        if let Some(p) = c.purged {
            records.push(Record::Purge(p));
        }
        if c.committed.is_some() {
            records.push(Record::Committed(c.committed));
        }
        let mut out = Vec::new();
        for r in &records {
            out.extend(frame(r).map_err(io::Error::other)?);
        }
        Ok(out)
    }

    fn note(&mut self, effect: Effect) {
        match effect {
            Effect::Entries { last } => {
                if let Some(seg) = self.segments.last_mut() {
                    seg.max_index = Some(seg.max_index.map_or(last, |m| m.max(last)));
                }
            }
            Effect::Truncate => {}
            Effect::Purge(p) => self.checkpoint.purged = Some(p),
            Effect::Vote(v) => self.checkpoint.vote = Some(v),
            Effect::Committed(c) => self.checkpoint.committed = c,
        }
    }

    fn current(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("no raft log segment is open"))
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let offset = self.offset;
        std::os::unix::fs::FileExt::write_all_at(self.current()?, bytes, offset)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Starts a new segment: syncs the old one, makes the new file zero-filled and durable
    /// (its name included), then writes the checkpoint at its top.
    fn roll(&mut self) -> io::Result<()> {
        if let Some(old) = &self.file {
            old.sync_data()?;
        }
        let seq = self.segments.last().map_or(1, |s| s.seq + 1);
        let path = segment_path(&self.dir, seq);
        let mut file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let zeros = vec![0u8; 1 << 20];
        let mut left = SEGMENT_BYTES;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            file.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        file.sync_all()?;
        File::open(&self.dir)?.sync_all()?;
        self.segments.push(Segment {
            seq,
            max_index: None,
        });
        self.file = Some(file);
        self.offset = 0;
        let header = self.checkpoint_bytes()?;
        self.header_len = header.len() as u64;
        self.put(&header)
    }

    /// Deletes the oldest segments whose entries are all purged; their vote and purge records
    /// are restated in every newer segment.
    fn delete_purged_segments(&mut self) {
        let Some(purged) = self.checkpoint.purged else {
            return;
        };
        while self.segments.len() > 1
            && self.segments[0].max_index.is_none_or(|m| m <= purged.index)
        {
            let path = segment_path(&self.dir, self.segments[0].seq);
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete a purged raft log segment");
                return;
            }
            self.segments.remove(0);
        }
    }
}
