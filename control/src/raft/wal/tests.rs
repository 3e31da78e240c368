//! Unit tests of the log's memory index and of the commit point's way to the disk.

use super::*;
use openraft::{CommittedLeaderId, EntryPayload};

fn entry(index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(2, 1), index),
        payload: EntryPayload::Blank,
    }
}

/// Entries 5..=9 written by writes 3, 3, 4, 6, 6 (an append of two, one, two).
fn log() -> MemLog {
    let mut mem = MemLog::default();
    mem.append(&[entry(5), entry(6)], 20, 3).unwrap();
    mem.append(&[entry(7)], 10, 4).unwrap();
    mem.append(&[entry(8), entry(9)], 20, 6).unwrap();
    mem
}

#[test]
fn each_entry_waits_for_the_write_that_put_it_there() {
    let mut mem = log();
    assert_eq!(mem.write_of(5), Some(3));
    assert_eq!(mem.write_of(7), Some(4));
    assert_eq!(mem.write_of(9), Some(6));
    assert_eq!(mem.write_of(10), None, "not appended yet");
    mem.truncate(8);
    mem.append(&[entry(8)], 10, 9).unwrap();
    assert_eq!(
        mem.write_of(8),
        Some(9),
        "a replaced entry waits for its new write"
    );
    mem.purge(entry(6).log_id);
    assert_eq!(mem.write_of(6), None, "purged entries are durable");
    assert_eq!(mem.write_of(7), Some(4));
}

#[test]
fn the_commit_told_to_others_stops_at_the_durable_end_of_the_log() {
    let mem = log();
    let id = |i| Some(entry(i).log_id);
    assert_eq!(mem.durable_id(entry(9).log_id, 6), id(9), "all synced");
    assert_eq!(
        mem.durable_id(entry(9).log_id, 5),
        id(7),
        "8 and 9 still syncing"
    );
    assert_eq!(
        mem.durable_id(entry(6).log_id, 5),
        id(6),
        "never above what was asked"
    );
    assert_eq!(
        mem.durable_id(entry(9).log_id, 2),
        None,
        "nothing synced, nothing purged"
    );
    let mut purged = log();
    purged.purge(entry(5).log_id);
    assert_eq!(
        purged.durable_id(entry(9).log_id, 2),
        id(5),
        "the purge point is durable"
    );
}

/// What a reader of the files (a restart) would find now, with the log still open.
fn committed_on_disk(dir: &Path) -> Option<LogId> {
    replay(dir).unwrap().mem.committed
}

/// Waits (a few seconds at most) until the files hold `want` as the commit point.
async fn written(dir: &Path, want: Option<LogId>, how: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while committed_on_disk(dir) != want {
        assert!(std::time::Instant::now() < deadline, "not {how}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Longer than the writer's `IDLE_AFTER` plus `PARK_AT_MOST`.
const IDLE_FOR: Duration = Duration::from_millis(1300);

/// The commit point rides with the next write, but is written alone soon when none comes,
/// both while the log is busy and after it went idle.
#[tokio::test]
async fn a_commit_point_reaches_the_disk_without_a_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path()).unwrap();
    wal.save_vote(Vote::new(1, 1)).await.unwrap();
    let id = |i| Some(entry(i).log_id);

    wal.save_committed(id(3)).unwrap();
    wal.save_committed(id(4)).unwrap();
    written(dir.path(), id(4), "written alone while busy").await;

    // Idle: the writer waits with no deadline, so the commit point wakes it.
    tokio::time::sleep(IDLE_FOR).await;
    wal.save_committed(id(5)).unwrap();
    written(dir.path(), id(5), "written when idle").await;

    // With a write to ride with, and on close.
    wal.save_committed(id(6)).unwrap();
    wal.save_vote(Vote::new(2, 1)).await.unwrap();
    assert_eq!(
        committed_on_disk(dir.path()),
        id(6),
        "carried by the next write"
    );
    wal.save_committed(id(7)).unwrap();
    drop(wal);
    written(dir.path(), id(7), "written on close").await;
}
