//! Blocking waits are served in arrival order, across threads and
//! processes; a waiter that times out or dies leaves the queue; processes
//! looping on one key all get their share.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hostlock::{FileLocker, InspectableLocker, LeaseLocker, MemoryLocker, RawLeaseLocker};

use common::LOG;
const CYCLES: &str = "HOSTLOCK_TEST_CYCLES";

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The body of every child process; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let locker: FileLocker<u32> = FileLocker::builder(common::setting(common::FILE))
        .background_cleanup(false)
        .open()
        .unwrap();
    if role == "blocked" {
        // Waits for "key" without a limit, and says when it has it.
        println!("\nWAITING");
        let guard = locker.lock("key", 0, None).unwrap();
        println!("GOT IT");
        drop(guard);
        return;
    }
    let mut log = common::shared_log();
    let pid = std::process::id();
    let cycles: usize = common::setting(CYCLES).parse().unwrap();
    let wait = match role.as_str() {
        "waiter" => Duration::from_secs(60),
        other => panic!("unknown role {other}"),
    };
    for _ in 0..cycles {
        let guard = locker
            .try_lock_for("key", pid, None, wait)
            .unwrap()
            .expect("served within the wait");
        log.write_all(format!("enter {pid} {}\n", nanos()).as_bytes())
            .unwrap();
        thread::sleep(Duration::from_millis(2));
        log.write_all(format!("leave {pid} {}\n", nanos()).as_bytes())
            .unwrap();
        assert!(guard.unlock().unwrap());
    }
}

fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

trait Subject: LeaseLocker<String> + Clone + Send + Sync + 'static {}
impl<L: LeaseLocker<String> + Clone + Send + Sync + 'static> Subject for L {}

fn memory() -> (MemoryLocker<String>, Option<tempfile::TempDir>) {
    (MemoryLocker::new(), None)
}

fn file() -> (FileLocker<String>, Option<tempfile::TempDir>) {
    let dir = tempfile::tempdir().unwrap();
    let locker = FileLocker::builder(dir.path().join("locks.redb"))
        .background_cleanup(false)
        .open()
        .unwrap();
    (locker, Some(dir))
}

/// Threads that queue one after another are served in that order.
fn threads_are_served_in_arrival_order(locker: impl Subject) {
    let holder = locker
        .try_lock("key", "holder".into(), None)
        .unwrap()
        .unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..5 {
        let (mine, order) = (locker.clone(), Arc::clone(&order));
        waiters.push(thread::spawn(move || {
            let guard = mine
                .try_lock_for("key", format!("waiter {i}"), None, Duration::from_secs(60))
                .unwrap()
                .expect("served");
            order.lock().unwrap().push(i);
            thread::sleep(Duration::from_millis(2));
            drop(guard);
        }));
        eventually("the waiter queued", || {
            locker.waiters("key").unwrap() == i + 1
        });
    }
    // A newcomer does not jump the queue.
    assert!(
        locker
            .try_lock("key", "barger".into(), None)
            .unwrap()
            .is_none()
    );
    drop(holder);
    assert!(
        locker
            .try_lock("key", "barger".into(), None)
            .unwrap()
            .is_none()
    );
    for waiter in waiters {
        waiter.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
    assert_eq!(locker.waiters("key").unwrap(), 0);
}

/// A waiter that times out leaves the queue and blocks no one.
fn a_timed_out_waiter_leaves_the_queue(locker: impl Subject) {
    let holder = locker
        .try_lock("key", "holder".into(), None)
        .unwrap()
        .unwrap();
    let started = Instant::now();
    let none = locker
        .try_lock_for("key", "w".into(), None, Duration::from_millis(30))
        .unwrap();
    assert!(none.is_none());
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(locker.waiters("key").unwrap(), 0);
    drop(holder);
    assert!(
        locker
            .try_lock("key", "next".into(), None)
            .unwrap()
            .is_some()
    );
}

macro_rules! suite {
    ($($locker:ident),*) => {$(
        mod $locker {
            #[test]
            fn threads_are_served_in_arrival_order() {
                super::threads_are_served_in_arrival_order(super::$locker().0);
            }
            #[test]
            fn a_timed_out_waiter_leaves_the_queue() {
                super::a_timed_out_waiter_leaves_the_queue(super::$locker().0);
            }
        }
    )*};
}

suite!(memory, file);

fn spawn_waiter(file: &Path, log: &Path, cycles: usize) -> common::Reaped {
    common::Reaped(
        common::child("waiter", file)
            .env(LOG, log)
            .env(CYCLES, cycles.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// (what, pid, time) of each record of the shared log.
fn records(log: &Path) -> Vec<(String, u32, u128)> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            (
                parts[0].to_owned(),
                parts[1].parse().unwrap(),
                parts[2].parse().unwrap(),
            )
        })
        .collect()
}

fn setup() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    FileLocker<u32>,
) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("locks.redb");
    let log = dir.path().join("holds.log");
    std::fs::write(&log, "").unwrap();
    let locker = FileLocker::builder(&file)
        .background_cleanup(false)
        .open()
        .unwrap();
    (dir, file, log, locker)
}

#[test]
fn processes_are_served_in_arrival_order_and_the_dead_leave() {
    let (_dir, file, log, locker) = setup();
    let holder = locker.try_lock("key", 0, None).unwrap().unwrap();
    let mut children = Vec::new();
    let mut expected = Vec::new();
    for i in 0..4 {
        let child = spawn_waiter(&file, &log, 1);
        eventually("the child queued", || {
            locker.waiters("key").unwrap() == i + 1
        });
        if i == 1 {
            // This one dies while it waits: it must not block the others.
            drop(child);
        } else {
            expected.push(child.0.id());
            children.push(child);
        }
    }
    drop(holder);
    for mut child in children {
        assert!(child.0.wait().unwrap().success());
    }
    let served: Vec<u32> = records(&log)
        .into_iter()
        .filter(|(what, _, _)| what == "enter")
        .map(|(_, pid, _)| pid)
        .collect();
    assert_eq!(served, expected);
    // The dead waiter's ticket went with the first grant after it.
    assert_eq!(locker.waiters("key").unwrap(), 0);
}

#[test]
fn four_processes_looping_on_one_key_take_turns() {
    let (_dir, file, log, _locker) = setup();
    let cycles = 25;
    let children: Vec<_> = (0..4).map(|_| spawn_waiter(&file, &log, cycles)).collect();
    for mut child in children {
        assert!(child.0.wait().unwrap().success());
    }
    let records = records(&log);
    let enters: Vec<u32> = records
        .iter()
        .filter(|(what, _, _)| what == "enter")
        .map(|&(_, pid, _)| pid)
        .collect();
    assert_eq!(enters.len(), 4 * cycles);
    // Holds never overlap, and each process gets a share all along: in
    // every window of 20 holds, each of the four holds at least twice.
    for pair in records.chunks(2) {
        assert_eq!(pair[0].0, "enter");
        assert_eq!(pair[1].0, "leave");
        assert_eq!(pair[0].1, pair[1].1);
    }
    let pids: std::collections::HashSet<u32> = enters.iter().copied().collect();
    // While all four contend: from the last one's first hold to the first
    // one's last (a process that starts late, or has done its cycles, is
    // not in line).
    let first = |pid: &u32| enters.iter().position(|p| p == pid).unwrap_or(0);
    let last = |pid: &u32| enters.iter().rposition(|p| p == pid).unwrap_or(0);
    let from = pids.iter().map(first).max().unwrap_or(0);
    let to = pids.iter().map(last).min().unwrap_or(0);
    let contended = &enters[from..=to.max(from)];
    assert!(
        contended.len() >= 20,
        "all four contended too briefly: {enters:?}"
    );
    for (n, window) in contended.windows(20).enumerate() {
        for pid in &pids {
            let holds = window.iter().filter(|p| *p == pid).count();
            assert!(
                holds >= 2,
                "window {n}: {pid} held {holds} of 20: {enters:?}"
            );
        }
    }
    // Hand-off latency: from one holder's leave record to the next enter.
    let mut handoffs: Vec<u128> = records
        .windows(2)
        .filter(|w| w[0].0 == "leave" && w[1].0 == "enter" && w[0].1 != w[1].1)
        .map(|w| w[1].2.saturating_sub(w[0].2))
        .collect();
    handoffs.sort_unstable();
    let at = |q: f64| handoffs[((handoffs.len() - 1) as f64 * q) as usize] as f64 / 1e6;
    eprintln!(
        "cross-process hand-off over {} hand-offs: median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        handoffs.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

#[test]
fn cleanup_drops_the_tickets_of_dead_waiters() {
    use hostlock::CleanableLocker;
    let (_dir, file, log, locker) = setup();
    let holder = locker.try_lock("key", 0, None).unwrap().unwrap();
    let child = spawn_waiter(&file, &log, 1);
    eventually("the child queued", || locker.waiters("key").unwrap() == 1);
    drop(child);
    assert_eq!(locker.waiters("key").unwrap(), 1, "still listed");
    assert_eq!(locker.cleanup().unwrap(), 0, "no lock was removed");
    assert_eq!(locker.waiters("key").unwrap(), 0, "but the ticket was");
    assert!(holder.unlock().unwrap());
}

/// Q4: a waiter still queued past its wait limit counts as gone, also for a
/// locker whose queue lives in memory.
#[test]
fn a_waiter_past_its_limit_holds_no_one_up_on_every_locker() {
    fn check(locker: impl Subject) {
        let ticket = locker
            .enqueue("k", Some(Duration::from_millis(50)))
            .unwrap();
        assert!(
            locker
                .try_lock("k", "newcomer".into(), None)
                .unwrap()
                .is_none()
        );
        thread::sleep(Duration::from_millis(80));
        let guard = locker.try_lock("k", "newcomer".into(), None).unwrap();
        assert!(guard.is_some(), "the waiter past its limit is gone");
        drop(guard);
        locker.dequeue("k", ticket).unwrap();
    }
    check(memory().0);
    let (file, _dir) = file();
    check(file);
}

/// Waits are measured on the monotonic clock: moving the locker's clock
/// forward does not end a queued waiter's wait, so a newcomer cannot jump it.
#[test]
fn a_clock_jump_does_not_let_a_newcomer_jump_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let clock = hostlock::ManualClock::default();
    let locker: FileLocker<String> = FileLocker::builder(dir.path().join("locks.redb"))
        .clock(clock.clone())
        .background_cleanup(false)
        .open()
        .unwrap();
    let ticket = locker.enqueue("k", Some(Duration::from_secs(60))).unwrap();
    clock.advance(Duration::from_secs(3600));
    assert!(
        locker
            .try_lock("k", "newcomer".into(), None)
            .unwrap()
            .is_none(),
        "the waiter's minute has not passed"
    );
    assert!(
        locker
            .try_lock_for("k", "mine".into(), None, Duration::ZERO)
            .unwrap()
            .is_none()
    );
    locker.dequeue("k", ticket).unwrap();
    assert!(
        locker
            .try_lock("k", "newcomer".into(), None)
            .unwrap()
            .is_some()
    );
}

/// `try_lock_for` with no time to wait does not queue: no write, and no one
/// else is refused meanwhile.
#[test]
fn a_zero_wait_does_not_join_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let faults = hostlock::Faults::new();
    let locker: FileLocker<String> = FileLocker::builder(dir.path().join("locks.redb"))
        .faults(faults.clone())
        .background_cleanup(false)
        .open()
        .unwrap();
    let held = locker.try_lock("k", "held".into(), None).unwrap().unwrap();
    let syncs = faults.syncs();
    for _ in 0..5 {
        assert!(
            locker
                .try_lock_for("k", "x".into(), None, Duration::ZERO)
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(faults.syncs(), syncs, "refused without a commit");
    assert_eq!(locker.waiters("k").unwrap(), 0);
    drop(held);
}

/// A waiter stopped (SIGSTOP) in `lock()` with no limit keeps its place only
/// for a grace period once its turn comes: the key does not stay blocked
/// for as long as it is stopped.
#[test]
fn a_stopped_waiter_does_not_block_a_free_key() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let locker: FileLocker<u32> = FileLocker::builder(&path)
        .background_cleanup(false)
        .open()
        .unwrap();
    let held = locker.try_lock("key", 1, None).unwrap().unwrap();
    let mut child = common::Reaped(
        common::child("blocked", &path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok);
    assert!(lines.by_ref().any(|l| l == "WAITING"));
    eventually("the child is queued", || {
        locker.waiters("key").unwrap() == 1
    });
    // Its queue entry shows once the commit is visible, a moment before the
    // child lets go of the file's write lock: stopped in that moment, it
    // would make every writer busy (as any writer stopped mid-commit does,
    // tests/multiprocess.rs). Let it get back to waiting, which only reads.
    thread::sleep(Duration::from_millis(200));
    let pid = child.0.id();
    let took = common::while_stopped(pid, Duration::from_secs(60), || {
        drop(held);
        // The release handed the key to the stopped waiter, which cannot
        // claim it; its grace over, the next waiter takes it away.
        let handed = locker.info("key").unwrap().map(|info| info.value);
        assert_eq!(handed, Some(0), "handed to the first waiter");
        let started = Instant::now();
        let next = locker
            .try_lock_for("key", 2, None, Duration::from_secs(20))
            .unwrap();
        assert!(
            next.is_some(),
            "served although the first waiter is stopped"
        );
        started.elapsed()
    });
    eprintln!("served {took:?} after the release, past a stopped waiter");
    // Once it goes on, the stopped waiter is served too.
    assert!(lines.any(|l| l == "GOT IT"));
    child.0.wait().unwrap();
}

/// A waiter that joined the queue and never came back (an `enqueue` without
/// its `dequeue`) holds newcomers up for one turn's grace, not for good.
#[test]
fn an_abandoned_ticket_holds_no_one_up_past_its_turn() {
    fn check(locker: impl Subject) {
        let _ticket = locker.enqueue("k", None).unwrap();
        assert!(
            locker
                .try_lock("k", "newcomer".into(), None)
                .unwrap()
                .is_none()
        );
        let started = Instant::now();
        let guard = locker
            .try_lock_for("k", "newcomer".into(), None, Duration::from_secs(20))
            .unwrap();
        assert!(guard.is_some(), "served once the abandoned turn passed");
        assert!(started.elapsed() >= Duration::from_millis(900));
    }
    check(memory().0);
    let (file, _dir) = file();
    check(file);
}
