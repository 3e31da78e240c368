//! The writer thread: appends queued records to the current segment, syncs once per batch,
//! rolls to a new zero-filled segment when one is full, and deletes segments purged away.

use super::{frame, segment_path, Effect, Job, Record, Segment, Synced, SEGMENT_BYTES};
use crate::raft::types::{LogId, Vote};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a parked job waits for a write to ride with before it is written alone.
const PARK_AT_MOST: Duration = Duration::from_millis(100);
/// After this long without work the writer waits for the queue with no deadline.
const IDLE_AFTER: Duration = Duration::from_secs(1);

/// The newest lazy job (the commit point), held for the next write to carry instead of being
/// written alone: each lone write was a wake-up of the writer and a write call, once per commit
/// on every server, and a newer commit point supersedes an unwritten older one.
#[derive(Default)]
pub(super) struct Parked {
    job: Option<Job>,
    /// The writer waits for the queue with no deadline, so a parked job would wait for the
    /// next write however long that takes: it goes through the queue instead.
    asleep: bool,
}

fn lock(parked: &Mutex<Parked>) -> MutexGuard<'_, Parked> {
    // Every change under the lock is a single assignment: a panic leaves it whole.
    parked.lock().unwrap_or_else(|p| p.into_inner())
}

/// Parks `job`, replacing any older parked job; gives it back if the writer sleeps, for the
/// caller to queue (which wakes the writer). Called under the log's lock, like queueing, so
/// that every job numbered before it is queued already.
pub(super) fn park(parked: &Mutex<Parked>, job: Job) -> Option<Job> {
    let mut p = lock(parked);
    if p.asleep {
        p.asleep = false;
        return Some(job);
    }
    p.job = Some(job);
    None
}

fn take_parked(parked: &Mutex<Parked>) -> Option<Job> {
    let mut p = lock(parked);
    p.asleep = false;
    p.job.take()
}

/// The next queued job: waiting at most `PARK_AT_MOST` while a job is parked or the log was
/// busy lately (so a parked job is written soon), with no deadline when idle.
fn next_job(
    rx: &mpsc::Receiver<Job>,
    parked: &Mutex<Parked>,
    last_work: Instant,
) -> Result<Job, mpsc::RecvTimeoutError> {
    let deadline = {
        let mut p = lock(parked);
        let busy = p.job.is_some() || last_work.elapsed() < IDLE_AFTER;
        p.asleep = !busy;
        busy.then_some(PARK_AT_MOST)
    };
    match deadline {
        Some(wait) => rx.recv_timeout(wait),
        None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
    }
}

/// Vote, purge point and committed id as last written: restated at the top of each segment.
pub(super) struct Checkpoint {
    pub(super) vote: Option<Vote>,
    pub(super) purged: Option<LogId>,
    pub(super) committed: Option<LogId>,
}

/// The writer thread's state: the segment being written and those still needed.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) segments: Vec<Segment>,
    pub(super) file: Option<File>,
    pub(super) offset: u64,
    /// Where the checkpoint at the top of the current segment ends.
    pub(super) header_len: u64,
    pub(super) checkpoint: Checkpoint,
    /// After a failed write or sync the file's state is unknown: every later write fails too,
    /// which stops raft with a storage error instead of acknowledging on a broken disk.
    pub(super) failed: Option<String>,
    pub(super) _lock: File,
    /// The next segment's file, being zero-filled by a helper thread.
    pub(super) spare: Option<mpsc::Receiver<io::Result<File>>>,
}

impl Writer {
    /// Takes over after a replay: writing goes on at `end` in the newest segment (made
    /// durable first, since what replay read from it may have been only in the page cache, and
    /// zero-filled again where a torn tail was cut), or in a new segment if there is none.
    pub(super) fn resume(
        dir: &Path,
        segments: Vec<Segment>,
        end: u64,
        checkpoint: Checkpoint,
        lock: File,
    ) -> io::Result<Writer> {
        let newest = segments.last().map(|s| segment_path(dir, s.seq));
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            segments,
            file: None,
            offset: 0,
            header_len: 0,
            checkpoint,
            failed: None,
            spare: None,
            _lock: lock,
        };
        let Some(path) = newest else {
            writer.roll()?;
            return Ok(writer);
        };
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        fill_with_zeros(&file)?;
        File::open(dir)?.sync_all()?;
        writer.file = Some(file);
        writer.offset = end;
        Ok(writer)
    }

    pub(super) fn run(
        mut self,
        rx: mpsc::Receiver<Job>,
        report: tokio::sync::watch::Sender<Synced>,
        held: &AtomicBool,
        parked: &Mutex<Parked>,
    ) {
        let mut last_work = Instant::now();
        loop {
            let first = match next_job(&rx, parked, last_work) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // The log is closing: what is parked is written, unsynced, as it would be.
                    let rest: Vec<Job> = take_parked(parked).into_iter().collect();
                    if !rest.is_empty() {
                        let _ = self.write_batch(&rest);
                    }
                    return;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => None,
            };
            while held.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            // The parked job first: every job numbered before it was queued by then, so the
            // drain below finds them all, and it is never written ahead of an earlier job.
            let mut batch: Vec<Job> = take_parked(parked).into_iter().collect();
            batch.extend(first);
            batch.extend(rx.try_iter());
            if batch.is_empty() {
                continue;
            }
            batch.sort_by_key(|j| j.write);
            last_work = Instant::now();
            self.handle(&batch, &report);
        }
    }

    fn handle(&mut self, batch: &[Job], report: &tokio::sync::watch::Sender<Synced>) {
        if let Err(e) = self.write_batch(batch) {
            tracing::error!(error = %e, "the raft log cannot be written");
            report.send_modify(|s| s.failed = Some(e));
            return;
        }
        // Before the purge is reported done, so that its caller sees the files gone.
        if batch.iter().any(|j| matches!(j.effect, Effect::Purge(_))) {
            self.delete_purged_segments();
        }
        // A sync covers every write before it, lazy ones of earlier batches included.
        if batch.iter().any(|j| !j.lazy) {
            let upto = batch.iter().map(|j| j.write).max().unwrap_or(0);
            report.send_modify(|s| s.upto = s.upto.max(upto));
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
        if batch.iter().any(|j| !j.lazy) {
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
    pub(super) fn roll(&mut self) -> io::Result<()> {
        if let Some(old) = &self.file {
            old.sync_data()?;
        }
        let seq = match self.segments.last() {
            Some(s) => s
                .seq
                .checked_add(1)
                .ok_or_else(|| io::Error::other("raft log segment numbers ran out"))?,
            None => 1,
        };
        let path = segment_path(&self.dir, seq);
        // The spare made in the background while this segment filled (waited for if not quite
        // done, never made twice at once): a rename instead of writing 4 MiB of zeros while
        // appends wait.
        let spare = self.spare.take().and_then(|rx| rx.recv().ok());
        let file = match spare {
            Some(Ok(file)) => {
                fs::rename(spare_path(&self.dir), &path)?;
                file
            }
            _ => zero_filled(&path)?,
        };
        File::open(&self.dir)?.sync_all()?;
        self.spare = Some(make_spare(&self.dir));
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

fn spare_path(dir: &Path) -> PathBuf {
    dir.join("spare.tmp")
}

/// A new file of `SEGMENT_BYTES` zeros, synced.
fn zero_filled(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    fill_with_zeros(&file)?;
    Ok(file)
}

/// Writes zeros from the end of `file` up to `SEGMENT_BYTES` (a segment's preallocation) and
/// syncs it, contents and size.
fn fill_with_zeros(file: &File) -> io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut at = file.metadata()?.len();
    while at < SEGMENT_BYTES {
        let n = (SEGMENT_BYTES - at).min(zeros.len() as u64);
        std::os::unix::fs::FileExt::write_all_at(file, &zeros[..n as usize], at)?;
        at += n;
    }
    file.sync_all()
}

/// Starts making the next segment's file in the background. A leftover spare from a crash is
/// simply overwritten: it is not a segment until renamed.
fn make_spare(dir: &Path) -> mpsc::Receiver<io::Result<File>> {
    let (tx, rx) = mpsc::sync_channel(1);
    let path = spare_path(dir);
    let spawned = std::thread::Builder::new()
        .name("raft-wal-spare".into())
        .spawn(move || {
            let _ = tx.send(zero_filled(&path)); // the writer may have stopped
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot prepare the next raft log segment in the background");
    }
    rx
}
