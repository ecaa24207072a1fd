//! Several processes on one database file: mutual exclusion of guards taken
//! with `LeaseLocker::lock` (checked from a shared log of entries and
//! exits), and waits served in arrival order across processes.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use hostlock::{LeaseLocker, RawLeaseLocker};
use hostlock_sqlite::SqliteLocker;

use common::{DB, LOG, Reaped, child, expect_line, log, role, setting};

/// How many times each contending child takes the key.
const ROUNDS: usize = 12;

fn open(path: &PathBuf) -> SqliteLocker<String> {
    SqliteLocker::open(path).expect("open the database")
}

/// The child: takes the key as its role says.
#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    let locker = open(&PathBuf::from(setting(DB)));
    let me = std::process::id();
    // The harness has begun a line ("test child_entry ... ").
    println!();
    match role.as_str() {
        "contend" => {
            for _ in 0..ROUNDS {
                let guard = locker.lock("shared", format!("pid {me}"), None).unwrap();
                log(&format!("enter {me} {}\n", guard.fence()));
                std::thread::sleep(Duration::from_millis(2));
                log(&format!("leave {me}\n"));
                assert!(guard.unlock().unwrap(), "still ours when unlocked");
            }
        }
        "queue" => {
            let name = setting("HOSTLOCK_SQLITE_NAME");
            let guard = locker
                .try_lock_for("fifo", name.clone(), None, Duration::from_secs(30))
                .unwrap()
                .expect("served within the wait");
            log(&format!("{name}\n"));
            std::thread::sleep(Duration::from_millis(20));
            drop(guard);
        }
        other => panic!("unknown role {other}"),
    }
    println!("done");
}

#[test]
fn four_processes_never_hold_one_key_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locks.db");
    let log_path = dir.path().join("log");
    std::fs::write(&log_path, "").unwrap();
    drop(open(&db));
    let children: Vec<Reaped> = (0..4)
        .map(|_| {
            let mut cmd = child("contend", &db);
            cmd.env(LOG, &log_path);
            Reaped::spawn(cmd)
        })
        .collect();
    let mut pids = Vec::new();
    for mut c in children {
        pids.push(c.0.id());
        expect_line(c.lines(), "done");
        c.finish(Duration::from_secs(30));
    }
    let text = std::fs::read_to_string(&log_path).unwrap();
    let mut holder: Option<u32> = None;
    let mut last_fence = 0u64;
    let mut entries = std::collections::HashMap::<u32, usize>::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        let pid: u32 = words[1].parse().unwrap();
        match words[0] {
            "enter" => {
                assert_eq!(holder, None, "{pid} entered while {holder:?} held the key");
                let fence: u64 = words[2].parse().unwrap();
                assert!(fence > last_fence, "fence {fence} after {last_fence}");
                last_fence = fence;
                holder = Some(pid);
                *entries.entry(pid).or_default() += 1;
            }
            "leave" => {
                assert_eq!(holder, Some(pid), "{pid} left a key it did not hold");
                holder = None;
            }
            other => panic!("unknown record {other}"),
        }
    }
    assert_eq!(holder, None);
    for pid in pids {
        assert_eq!(entries.get(&pid), Some(&ROUNDS), "process {pid} got in");
    }
}

#[test]
fn waiters_of_several_processes_are_served_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locks.db");
    let log_path = dir.path().join("log");
    std::fs::write(&log_path, "").unwrap();
    let locker = open(&db);
    let held = locker
        .try_lock("fifo", "parent".to_owned(), None)
        .unwrap()
        .expect("free");
    let mut children = Vec::new();
    for i in 0..4 {
        let mut cmd = child("queue", &db);
        cmd.env(LOG, &log_path)
            .env("HOSTLOCK_SQLITE_NAME", format!("waiter-{i}"));
        children.push(Reaped::spawn(cmd));
        // The next child starts only once this one has its ticket.
        while locker.waiters("fifo").unwrap() < i + 1 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert!(
        locker
            .try_lock("fifo", "newcomer".to_owned(), None)
            .unwrap()
            .is_none(),
        "a newcomer does not jump the queue"
    );
    assert!(held.unlock().unwrap());
    for mut c in children {
        expect_line(c.lines(), "done");
        c.finish(Duration::from_secs(30));
    }
    let order = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(order, "waiter-0\nwaiter-1\nwaiter-2\nwaiter-3\n");
    assert_eq!(locker.waiters("fifo").unwrap(), 0);
}
