//! The log's files on disk: replaying segments into memory on open, and writing a whole log
//! at once (moving an old store's log over).

use super::{frame, io_at, segment_path, MemLog, Record, Segment, WalError, HEADER};
use crate::raft::types::Entry;
use edge_api::codec;
use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::path::Path;

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

/// Segment numbers in `dir`, oldest first.
fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut seqs = Vec::new();
    for item in fs::read_dir(dir).map_err(io_at(dir))? {
        let name = item.map_err(io_at(dir))?.file_name();
        let name = name.to_string_lossy();
        // Only names this log writes (20 digits): a stray `5.wal` must not replay twice.
        let digits = name
            .strip_suffix(".wal")
            .filter(|s| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()));
        if let Some(seq) = digits.and_then(|s| s.parse::<u64>().ok()) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// What replaying the directory found: the log, the segments, and where the newest segment's
/// records end (writing resumes there).
pub(super) struct Replayed {
    pub mem: MemLog,
    pub segments: Vec<Segment>,
    pub end: u64,
}

/// Replays every segment into memory; cuts a torn tail off the newest one.
pub(super) fn replay(dir: &Path) -> Result<Replayed, WalError> {
    let seqs = list_segments(dir)?;
    let mut mem = MemLog::default();
    let mut segments = Vec::new();
    let mut end = 0;
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
                Err(reason) if newest && followed_by_a_record(&bytes, offset) => {
                    // A torn write has nothing valid after it: this is damage to data that
                    // may have been acknowledged, not a write cut short.
                    return Err(corrupt(format!("{reason}, with intact records after it")));
                }
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
            mem.apply(record, payload.len()).map_err(corrupt)?;
            offset += HEADER + payload.len();
        }
        segments.push(Segment { seq, max_index });
        end = offset as u64;
    }
    Ok(Replayed { mem, segments, end })
}

/// Whether a valid record starts right after the (damaged) one at `offset`, taking its length
/// field at its word.
fn followed_by_a_record(bytes: &[u8], offset: usize) -> bool {
    let Some(header) = bytes.get(offset..offset + HEADER) else {
        return false;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let next = offset.saturating_add(HEADER).saturating_add(len);
    matches!(next_record(bytes, next), Some(Ok(_)))
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
    let Some(payload) = rest.get(HEADER..HEADER.saturating_add(len)) else {
        return Some(Err(format!(
            "a record of {len} bytes runs past the end of the file"
        )));
    };
    if crc32fast::hash(payload) != crc {
        return Some(Err("checksum mismatch".into()));
    }
    Some(Ok(payload))
}
