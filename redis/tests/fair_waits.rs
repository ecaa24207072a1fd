//! Waits in arrival order across lockers (each its own connection and
//! session, as separate processes would have), the turn grace of a waiter
//! that never claims its turn, and a waiter whose locker went.

mod common;

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hostlock::{LeaseLocker, RawLeaseLocker};
use hostlock_redis::RedisLocker;

use common::{Server, prefix, wait_until};

fn open(server: &Server, prefix: &str) -> RedisLocker<String> {
    RedisLocker::builder(&server.url())
        .prefix(prefix)
        .open()
        .expect("a locker on the test server")
}

#[test]
fn waiters_are_served_in_arrival_order() {
    let server = Server::start();
    let prefix = prefix("fifo");
    let holder = open(&server, &prefix);
    let guard = holder.try_lock("k", "h".to_owned(), None).unwrap().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for n in 0..3 {
        let locker = open(&server, &prefix);
        let order = Arc::clone(&order);
        waiters.push(thread::spawn(move || {
            let got = locker
                .try_lock_for("k", n.to_string(), None, Duration::from_secs(20))
                .unwrap()
                .expect("served");
            order.lock().unwrap().push(n);
            thread::sleep(Duration::from_millis(5));
            assert!(got.unlock().unwrap());
        }));
        assert!(
            wait_until(Duration::from_secs(5), || holder.waiters("k").unwrap()
                == n + 1),
            "waiter {n} queued"
        );
    }
    assert!(
        holder
            .try_lock("k", "late".to_owned(), None)
            .unwrap()
            .is_none(),
        "a newcomer never jumps the queue"
    );
    assert!(guard.unlock().unwrap());
    for waiter in waiters {
        waiter.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
    assert_eq!(holder.waiters("k").unwrap(), 0);
}

#[test]
fn a_turn_not_claimed_within_a_second_passes_to_the_next_waiter() {
    let server = Server::start();
    let prefix = prefix("grace");
    let idle = open(&server, &prefix);
    let locker = open(&server, &prefix);
    // A waiter that joined and never came back, its locker still open.
    let _ticket = idle.enqueue("k", None).unwrap();
    let started = Instant::now();
    let guard = locker
        .try_lock_for("k", "next".to_owned(), None, Duration::from_secs(10))
        .unwrap()
        .expect("the turn passed on");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "waited {waited:?}"
    );
    assert_eq!(
        locker.waiters("k").unwrap(),
        0,
        "the idle waiter lost its place"
    );
    drop(guard);
}

#[test]
fn a_waiter_whose_locker_went_counts_as_gone_at_once() {
    let server = Server::start();
    let prefix = prefix("gone");
    let locker = open(&server, &prefix);
    let gone = open(&server, &prefix);
    let _ticket = gone.enqueue("k", None).unwrap();
    assert!(
        locker
            .try_lock("k", "v".to_owned(), None)
            .unwrap()
            .is_none()
    );
    drop(gone); // its session ends with it
    assert!(
        locker
            .try_lock("k", "v".to_owned(), None)
            .unwrap()
            .is_some()
    );
}
