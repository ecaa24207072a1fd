//! The heartbeat thread of a handle ends, joined, when the last clone (or
//! the last guard holding one) is dropped: no thread is leaked. Alone in its
//! test binary, so that no other test's handles are counted.

use std::time::{Duration, Instant};

use hostlock::LeaseLocker;
use hostlock_sqlite::SqliteLocker;

/// The threads of this process named as the heartbeat names itself.
fn heartbeats() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "hostlock-sqlite")
        .count()
}

/// The heartbeat threads, once their count is `expected` or a second has
/// passed: a new thread takes its name a moment after it starts.
fn settled(expected: usize) -> usize {
    let until = Instant::now() + Duration::from_secs(1);
    while heartbeats() != expected && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    heartbeats()
}

#[test]
fn the_heartbeat_thread_ends_with_the_last_clone() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(heartbeats(), 0);
    let locker: SqliteLocker<String> = SqliteLocker::open(dir.path().join("locks.db")).unwrap();
    let other: SqliteLocker<String> = SqliteLocker::open(dir.path().join("locks.db")).unwrap();
    assert_eq!(settled(2), 2, "one per handle");
    let clone = locker.clone();
    let guard = clone
        .try_lock("k", "v".to_owned(), Some(Duration::from_secs(60)))
        .unwrap()
        .unwrap();
    drop(locker);
    drop(clone);
    assert_eq!(heartbeats(), 2, "the guard keeps its handle open");
    drop(guard);
    assert_eq!(heartbeats(), 1);
    drop(other);
    assert_eq!(heartbeats(), 0);
}
