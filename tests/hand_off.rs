//! A release hands the key to the first waiter in line in its own
//! transaction, when that waiter left the lease it asks for: the waiter finds
//! the lock already its own and claims it without a write. Unclaimed, the
//! hand-off counts for one turn's grace only; a waiter that gives up passes
//! the key on.
//!
//! Each handle here has a session of its own, as handles in separate
//! processes do.

use std::path::Path;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hostlock::{
    FileLocker, InspectableLocker, LeaseLocker, LockValue, Locker, ManualClock, RawLeaseLocker,
    RenewableLocker,
};

const TTL: Option<Duration> = Some(Duration::from_secs(60));

fn handle(path: &Path, clock: &ManualClock) -> FileLocker<String> {
    FileLocker::builder(path)
        .clock(clock.clone())
        .background_cleanup(false)
        .open()
        .unwrap()
}

/// Three handles of one new file, on one manual clock.
fn three() -> ([FileLocker<String>; 3], ManualClock, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let handles = [
        handle(&path, &clock),
        handle(&path, &clock),
        handle(&path, &clock),
    ];
    (handles, clock, dir)
}

/// A waiter's ticket, with the request it left.
fn queue(locker: &FileLocker<String>, key: &str, value: &str, token: &str) -> u64 {
    locker
        .enqueue_lease(key, None, &value.to_owned(), TTL, token)
        .unwrap()
}

fn claim(locker: &FileLocker<String>, key: &str, value: &str, token: &str, ticket: u64) -> bool {
    locker
        .acquire_lease(key, value.to_owned(), TTL, token, Some(ticket))
        .unwrap()
        .is_some()
}

#[test]
fn a_release_hands_the_key_to_the_first_waiter_with_a_fresh_fence() {
    let ([a, b, c], clock, _dir) = three();
    let held = a.try_lock("k", "a".into(), TTL).unwrap().unwrap();
    let ticket = queue(&b, "k", "b", "token-b");
    clock.advance(Duration::from_secs(5));
    let released_at = hostlock::Clock::now(&clock);
    assert!(held.unlock().unwrap());

    // The key is the waiter's from the release on: no one else takes it.
    let info = c.info("k").unwrap().expect("handed over, not freed");
    assert_eq!(info.value, "b");
    assert_eq!(info.expires_at, Some(released_at + TTL.unwrap()));
    let stranger = LockValue::new("c".to_owned()).with_token("token-c");
    assert!(!c.acquire("k", stranger).unwrap());
    assert!(c.try_lock("k", "c".into(), TTL).unwrap().is_none());
    assert_eq!(b.waiters("k").unwrap(), 0, "the ticket left the queue");

    let lease = b
        .acquire_lease("k", "b".into(), TTL, "token-b", Some(ticket))
        .unwrap()
        .expect("claimed");
    assert_eq!(lease.fence, info.fence);
    assert_eq!(lease.expires_at, Some(released_at + TTL.unwrap()));
    assert!(b.release_if_owner("k", "token-b").unwrap());
    assert!(c.info("k").unwrap().is_none());
}

#[test]
fn a_waiter_that_left_no_request_takes_the_key_itself() {
    let ([a, b, _], _clock, _dir) = three();
    let held = a.try_lock("k", "a".into(), TTL).unwrap().unwrap();
    let ticket = b.enqueue("k", None).unwrap();
    assert!(held.unlock().unwrap());
    assert!(a.info("k").unwrap().is_none(), "freed, not handed over");
    assert!(claim(&b, "k", "b", "token-b", ticket));
}

#[test]
fn only_the_waiter_it_was_handed_to_claims_it() {
    let ([a, b, c], _clock, _dir) = three();
    let held = a.try_lock("k", "a".into(), TTL).unwrap().unwrap();
    let first = queue(&b, "k", "b", "token-b");
    let second = queue(&c, "k", "c", "token-c");
    assert!(held.unlock().unwrap());
    assert!(!claim(&c, "k", "c", "token-c", second), "not its turn");
    assert!(
        !claim(&b, "k", "b", "another-token", first),
        "not the token it left"
    );
    assert!(claim(&b, "k", "b", "token-b", first));
}

#[test]
fn a_waiter_that_gives_up_passes_a_handed_key_on() {
    let ([a, b, c], _clock, _dir) = three();
    let held = a.try_lock("k", "a".into(), TTL).unwrap().unwrap();
    let first = queue(&b, "k", "b", "token-b");
    let second = queue(&c, "k", "c", "token-c");
    assert!(held.unlock().unwrap());
    assert_eq!(a.info("k").unwrap().unwrap().value, "b");

    b.dequeue("k", first).unwrap();
    assert_eq!(a.info("k").unwrap().unwrap().value, "c", "handed on");
    assert!(!claim(&b, "k", "b", "token-b", first));
    assert!(claim(&c, "k", "c", "token-c", second));

    // Leaving after the claim gives nothing back: the lock is the holder's.
    c.dequeue("k", second).unwrap();
    assert_eq!(a.info("k").unwrap().unwrap().value, "c");
    assert!(c.release_if_owner("k", "token-c").unwrap());
}

#[test]
fn waiters_that_died_or_left_are_passed_over() {
    let ([a, b, c], clock, dir) = three();
    let held = a.try_lock("k", "a".into(), TTL).unwrap().unwrap();
    let dead = handle(&dir.path().join("locks.redb"), &clock);
    queue(&dead, "k", "dead", "token-dead");
    drop(dead);
    let left = queue(&b, "k", "b", "token-b");
    b.dequeue("k", left).unwrap();
    let ticket = queue(&c, "k", "c", "token-c");
    assert!(held.unlock().unwrap());
    assert_eq!(a.info("k").unwrap().unwrap().value, "c");
    assert!(claim(&c, "k", "c", "token-c", ticket));
}

/// Row Q4b with hand-offs: a waiter that does not claim the key handed to it
/// within a second loses it to the next waiter and its place in line; one
/// that claimed it keeps its lease for its whole TTL.
#[test]
fn an_unclaimed_hand_off_passes_after_the_grace_and_a_claimed_one_stays() {
    let ([a, b, c], _clock, _dir) = three();
    let mut tickets = Vec::new();
    for key in ["claimed", "unclaimed"] {
        let held = a.try_lock(key, "a".into(), TTL).unwrap().unwrap();
        let first = queue(&b, key, "b", "token-b");
        let second = queue(&c, key, "c", "token-c");
        assert!(held.unlock().unwrap());
        tickets.push((key, first, second));
    }
    assert!(claim(&b, "claimed", "b", "token-b", tickets[0].1));
    for &(key, _, second) in &tickets {
        assert!(
            !claim(&c, key, "c", "token-c", second),
            "{key}: in its grace"
        );
    }

    thread::sleep(Duration::from_millis(1100));
    assert!(
        !claim(&c, "claimed", "c", "token-c", tickets[0].2),
        "a claimed hand-off counts for its whole TTL"
    );
    assert_eq!(a.info("claimed").unwrap().unwrap().value, "b");
    assert!(
        claim(&c, "unclaimed", "c", "token-c", tickets[1].2),
        "the grace is over: the next waiter's turn"
    );
    assert!(
        !claim(&b, "unclaimed", "b", "token-b", tickets[1].1),
        "taken away before it was claimed"
    );
    assert_eq!(a.info("unclaimed").unwrap().unwrap().value, "c");
    assert!(c.release_if_owner("unclaimed", "token-c").unwrap());
    // The waiter that lost its place is served after those still queued.
    assert!(claim(&b, "unclaimed", "b", "token-b", tickets[1].1));
}

/// Waits in threads of separate handles: every release hands the key to
/// the next in line, so the holds alternate in arrival order.
#[test]
fn blocking_waits_are_served_by_hand_offs_in_arrival_order() {
    let ([a, b, c], _clock, _dir) = three();
    let held = a.try_lock("k", "a".into(), TTL).unwrap().unwrap();
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for (name, locker) in [("b", b), ("c", c)] {
        let order = std::sync::Arc::clone(&order);
        let before = locker.waiters("k").unwrap();
        waiters.push(thread::spawn(move || {
            let guard = locker
                .try_lock_for("k", name.into(), TTL, Duration::from_secs(30))
                .unwrap()
                .expect("served");
            order.lock().unwrap().push((name, guard.fence()));
            assert!(guard.unlock().unwrap());
        }));
        let deadline = SystemTime::now() + Duration::from_secs(10);
        while a.waiters("k").unwrap() == before {
            assert!(SystemTime::now() < deadline, "{name} never queued");
            thread::sleep(Duration::from_millis(1));
        }
    }
    let fence = held.fence();
    assert!(held.unlock().unwrap());
    for waiter in waiters {
        waiter.join().unwrap();
    }
    let order = order.lock().unwrap();
    assert_eq!(
        order.iter().map(|&(n, _)| n).collect::<Vec<_>>(),
        ["b", "c"]
    );
    assert!(fence < order[0].1 && order[0].1 < order[1].1);
}

/// A file laid out before hand-offs has no tables for them: waits work on
/// it as before, and the first write lays the tables out.
#[test]
fn a_file_without_the_hand_off_tables_still_serves_waiters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let clock = ManualClock::default();
    drop(handle(&path, &clock));
    {
        let mut builder = redb::Database::builder();
        builder.set_concurrency_mode(redb::ConcurrencyMode::MultiWriter);
        let db = builder.open(&path).unwrap();
        let tx = db.begin_write().unwrap();
        for name in ["hostlock_requests", "hostlock_handed"] {
            let table: redb::TableDefinition<'_, &str, u64> = redb::TableDefinition::new(name);
            assert!(tx.delete_table(table).unwrap(), "{name} was laid out");
        }
        tx.commit().unwrap();
    }
    let (a, b) = (handle(&path, &clock), handle(&path, &clock));
    let held = a.try_lock("k", "a".into(), TTL).unwrap().unwrap();
    let waiter = thread::spawn(move || {
        b.try_lock_for("k", "b".into(), TTL, Duration::from_secs(30))
            .unwrap()
            .map(|guard| guard.fence())
    });
    thread::sleep(Duration::from_millis(50));
    let fence = held.fence();
    assert!(held.unlock().unwrap());
    assert!(waiter.join().unwrap().expect("served") > fence);
}

/// A request that does not decode (a damaged file) is dropped at the
/// release: the waiter is woken to take the key itself, and nothing fails.
#[test]
fn a_damaged_request_leaves_the_waiter_to_take_the_key_itself() {
    let ([a, b, _], _clock, dir) = three();
    let held = a.try_lock("k", "a".into(), TTL).unwrap().unwrap();
    let ticket = queue(&b, "k", "b", "token-b");
    {
        let mut builder = redb::Database::builder();
        builder.set_concurrency_mode(redb::ConcurrencyMode::MultiWriter);
        let db = builder.open(dir.path().join("locks.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        let requests: redb::TableDefinition<'_, (&str, u64), &[u8]> =
            redb::TableDefinition::new("hostlock_requests");
        tx.open_table(requests)
            .unwrap()
            .insert(("k", ticket), [9u8, 9, 9].as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    assert!(held.unlock().unwrap());
    assert!(a.info("k").unwrap().is_none(), "freed, not handed over");
    assert!(
        claim(&b, "k", "b", "token-b", ticket),
        "taken by the waiter"
    );
}
