//! Sessions and what outlives them: a closed handle's leases count as gone
//! (row H1), a plain lock stays (H2), a lease kept with `hold_for` outlives
//! its guard, fences grow across reopening (N1), and a waiter whose turn came
//! but who never claims it stops holding others up after 1 s (Q4b).

use std::time::{Duration, Instant};

use hostlock::{
    CleanableLocker, InspectableLocker, LeaseLocker, LockState, LockValue, Locker, RawLeaseLocker,
};
use hostlock_sqlite::SqliteLocker;

fn open(path: &std::path::Path) -> SqliteLocker<String> {
    SqliteLocker::open(path).unwrap()
}

#[test]
fn a_closed_handles_leases_count_as_gone_and_its_plain_locks_stay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.db");
    let first = open(&path);
    let lease = first
        .acquire_lease("lease", "first".to_owned(), None, "token", None)
        .unwrap()
        .expect("free");
    assert!(
        first
            .acquire("plain", LockValue::new("first".to_owned()))
            .unwrap()
    );
    let other = open(&path);
    assert!(
        other
            .try_lock("lease", "other".to_owned(), None)
            .unwrap()
            .is_none()
    );
    let info = other.info("lease").unwrap().unwrap();
    assert_eq!(
        (info.state, info.holder.alive),
        (LockState::Live, Some(true))
    );
    assert_eq!(info.fence, lease.fence);
    drop(first);
    let info = other.info("lease").unwrap().unwrap();
    assert_eq!(info.state, LockState::HolderGone);
    assert_eq!(info.holder.alive, Some(false));
    assert!(!other.exists("lease").unwrap());
    let plain = other.info("plain").unwrap().unwrap();
    assert_eq!((plain.state, plain.holder.alive), (LockState::Live, None));
    assert_eq!(other.cleanup().unwrap(), 1);
    assert!(
        other
            .try_lock("lease", "other".to_owned(), None)
            .unwrap()
            .is_some()
    );
    assert!(other.exists("plain").unwrap());
}

#[test]
fn a_held_lease_outlives_its_guard_and_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.db");
    let first = open(&path);
    let guard = first
        .try_lock("k", "first".to_owned(), None)
        .unwrap()
        .unwrap();
    assert!(guard.hold_for(Duration::from_secs(600)).unwrap());
    drop(first);
    let other = open(&path);
    let info = other.info("k").unwrap().expect("kept");
    assert_eq!((info.state, info.holder.alive), (LockState::Live, None));
    assert_eq!(info.value, "first");
}

#[test]
fn fences_and_values_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.db");
    let first = open(&path);
    let value = "ünïcode, \"quotes\" and \n newlines".to_owned();
    let at = std::time::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
    let far = at + Duration::from_secs(3600 * 24 * 365 * 400);
    assert!(
        first
            .acquire(
                "k",
                LockValue::new(value.clone())
                    .expiring_at(far)
                    .with_token("t")
            )
            .unwrap()
    );
    let fence = first.info("k").unwrap().unwrap().fence;
    drop(first);
    let again = open(&path);
    let got = again.get("k").unwrap().expect("kept");
    assert_eq!(got, LockValue::new(value).expiring_at(far).with_token("t"));
    assert!(again.acquire("j", LockValue::new("j".to_owned())).unwrap());
    assert!(again.info("j").unwrap().unwrap().fence > fence);
}

#[test]
fn handles_of_one_process_share_the_waits() {
    // Two handles (two sessions) of one file, threads of one process.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.db");
    let a = open(&path);
    let b = open(&path);
    let held = a.try_lock("k", "a".to_owned(), None).unwrap().unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            b.try_lock_for("k", "b".to_owned(), None, Duration::from_secs(20))
                .unwrap()
                .map(|g| g.fence())
        });
        while b.waiters("k").unwrap() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let fence = held.fence();
        drop(held);
        assert!(waiter.join().unwrap().expect("served") > fence);
    });
}

#[test]
fn an_unclaimed_turn_passes_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.db");
    let locker = open(&path);
    // A waiter that joins the queue and never comes back, in a live session.
    let _stuck = locker.enqueue("k", None).unwrap();
    let started = Instant::now();
    let guard = locker
        .try_lock_for("k", "next".to_owned(), None, Duration::from_secs(10))
        .unwrap()
        .expect("served once the stuck waiter's turn passed");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(
        locker.waiters("k").unwrap(),
        0,
        "the stuck waiter lost its place"
    );
    drop(guard);
}
