//! A holder killed with SIGKILL: its guard's lease is free for others once
//! its session's heartbeat is older than the session timeout, while a
//! living holder's lease is never taken; a plain lock of the killed process
//! (bound to no session) stays until it expires.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use hostlock::{CleanableLocker, InspectableLocker, LeaseLocker, LockState, LockValue, Locker};
use hostlock_sqlite::SqliteLocker;

use common::{DB, Reaped, child, expect_line, orphaned, role, setting};

/// The session timeout of every handle in these tests.
const TIMEOUT: Duration = Duration::from_millis(500);

fn open(path: &Path) -> SqliteLocker<String> {
    SqliteLocker::builder(path)
        .session_timeout(TIMEOUT)
        .open()
        .expect("open the database")
}

/// The child: takes a guard with no TTL (and a plain lock), says so, and
/// waits to be killed.
#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    assert_eq!(role, "hold", "unknown role");
    let locker = open(Path::new(&setting(DB)));
    let guard = locker
        .try_lock("victim", "child".to_owned(), None)
        .unwrap()
        .expect("the key is free");
    assert!(
        locker
            .acquire("plain", LockValue::new("child".to_owned()))
            .unwrap()
    );
    println!("\nheld {}", guard.fence());
    while !orphaned() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts a child holding "victim", and returns it once it holds it.
fn holder(db: &Path) -> Reaped {
    let mut c = Reaped::spawn(child("hold", db));
    expect_line(c.lines(), "held ");
    c
}

#[test]
fn a_living_holders_lease_is_never_taken_and_a_killed_ones_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locks.db");
    let mut victim = holder(&db);
    let locker = open(&db);
    // Alive: for four session timeouts the lease holds against every
    // attempt, and cleanup finds nothing to remove.
    let until = Instant::now() + 4 * TIMEOUT;
    while Instant::now() < until {
        assert!(
            locker
                .try_lock("victim", "parent".to_owned(), None)
                .unwrap()
                .is_none(),
            "the lease of a living holder was taken"
        );
        assert_eq!(locker.cleanup().unwrap(), 0);
        let info = locker.info("victim").unwrap().expect("held");
        assert_eq!(info.state, LockState::Live);
        assert_eq!(info.holder.alive, Some(true));
        std::thread::sleep(Duration::from_millis(25));
    }
    victim.0.kill().unwrap(); // SIGKILL
    victim.0.wait().unwrap();
    let killed = Instant::now();
    let guard = locker
        .try_lock_for("victim", "parent".to_owned(), None, Duration::from_secs(10))
        .unwrap()
        .expect("freed within the wait");
    let took = killed.elapsed();
    eprintln!("a killed holder's lease was taken {took:?} after the kill");
    assert!(
        took <= TIMEOUT + Duration::from_millis(400),
        "freed {took:?} after the kill, past the session timeout {TIMEOUT:?}"
    );
    drop(guard);
    // The plain lock of the killed process is bound to no session.
    let plain = locker.info("plain").unwrap().expect("still held");
    assert_eq!(plain.state, LockState::Live);
    assert_eq!(plain.holder.alive, None);
    assert!(locker.exists("plain").unwrap());
}

#[test]
fn a_killed_holders_lease_shows_as_gone_and_cleanup_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locks.db");
    let mut victim = holder(&db);
    let pid = victim.0.id();
    let locker = open(&db);
    victim.0.kill().unwrap();
    victim.0.wait().unwrap();
    let killed = Instant::now();
    let info = loop {
        let info = locker.info("victim").unwrap().expect("not removed yet");
        if info.state != LockState::Live {
            break info;
        }
        assert!(
            killed.elapsed() < 5 * TIMEOUT,
            "still live long after the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(killed.elapsed() <= TIMEOUT + Duration::from_millis(400));
    assert_eq!(info.state, LockState::HolderGone);
    assert_eq!(info.holder.alive, Some(false));
    assert_eq!(info.holder.pid, pid);
    assert!(!locker.exists("victim").unwrap());
    assert_eq!(locker.cleanup().unwrap(), 1, "the gone holder's lease");
    assert_eq!(locker.info("victim").unwrap(), None);
    assert!(locker.exists("plain").unwrap(), "a plain lock stays");
    assert_eq!(locker.cleanup().unwrap(), 0);
}
