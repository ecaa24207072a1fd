//! How soon a waiter has the key once its holder lets go, between two
//! handles of one file (two sessions, as two processes have): the time from
//! the return of the holder's `unlock()` to the return of the waiter's
//! `try_lock_for`, and, for comparison, an uncontended `try_lock` (one
//! commit) measured in the same run.
//!
//! The release hands the key to the waiter in its own transaction and wakes
//! it; the waiter only reads and claims it. So a hand-off is a wake-up and
//! two reads, and should take a fraction of the uncontended grant's commit.
//!
//! Run with `cargo bench --bench hand_off`. `HOSTLOCK_BENCH_HANDOFFS`
//! (default 200) sets how many hand-offs are timed.

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{TTL, format_duration, open_hostlock};
use hostlock::{Durability, LeaseLocker, RawLeaseLocker};

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

fn main() {
    let rounds =
        usize::try_from(common::env_number("HOSTLOCK_BENCH_HANDOFFS", 200)).expect("a count");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("locks.redb");
    let holder = open_hostlock(&path, Durability::Immediate);
    let waiter = open_hostlock(&path, Durability::Immediate);

    // The waiter thread: waits for the key each time it is told to, and
    // says when it has it.
    let (go, told) = mpsc::channel::<()>();
    let (got, served) = mpsc::channel::<Instant>();
    let waiting = waiter.clone();
    let thread = thread::spawn(move || {
        while told.recv().is_ok() {
            let guard = waiting
                .try_lock_for("k", 2, Some(TTL), Duration::from_secs(30))
                .expect("a wait")
                .expect("served");
            let at = Instant::now();
            drop(guard);
            got.send(at).expect("the main thread listens");
        }
    });

    let mut hand_offs = Vec::with_capacity(rounds);
    let mut grants = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let guard = holder
            .try_lock("k", 1, Some(TTL))
            .expect("a grant")
            .expect("free");
        grants.push(started.elapsed());
        go.send(()).expect("the waiter listens");
        // Until the waiter is in line.
        while holder.waiters("k").expect("a read") == 0 {
            thread::sleep(Duration::from_micros(100));
        }
        thread::sleep(Duration::from_millis(2));
        assert!(guard.unlock().expect("a release"));
        let released = Instant::now();
        let at = served.recv().expect("served");
        hand_offs.push(at.saturating_duration_since(released));
    }
    drop(go);
    thread.join().expect("the waiter thread");

    hand_offs.sort_unstable();
    grants.sort_unstable();
    let hand_off = percentile(&hand_offs, 0.5);
    let grant = percentile(&grants, 0.5);
    println!("{rounds} hand-offs between two handles of one file, release build:");
    println!();
    println!("| | p50 | p90 | p99 |");
    println!("|-|-|-|-|");
    for (name, sorted) in [
        (
            "hand-off (unlock() returned to try_lock_for returned)",
            &hand_offs,
        ),
        ("uncontended try_lock (one commit)", &grants),
    ] {
        println!(
            "| {name} | {} | {} | {} |",
            format_duration(percentile(sorted, 0.5)),
            format_duration(percentile(sorted, 0.9)),
            format_duration(percentile(sorted, 0.99)),
        );
    }
    println!();
    println!(
        "A hand-off takes {:.2}x an uncontended grant, at the median. Load average: {}.",
        hand_off.as_secs_f64() / grant.as_secs_f64(),
        common::load_average()
    );
}
