//! The SQLite locker under hostlock's async API, through `Blocking` (each
//! call on tokio's blocking pool): sixteen tasks on two handles contending
//! for one key, waits cancelled by a timeout that leave no ticket and no
//! lock, and the async job helpers. The checks are hostlock's own
//! (`hostlock_testkit::aio`), which its file and memory lockers pass too.

use std::time::Duration;

use hostlock::{AsyncLocker, Blocking};
use hostlock_sqlite::SqliteLocker;
use hostlock_testkit::aio::{self, Cancellations};

fn open(dir: &tempfile::TempDir) -> SqliteLocker<u64> {
    SqliteLocker::open(dir.path().join("locks.db")).expect("open the database")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_tasks_on_two_handles_hold_one_key_in_turn() {
    let dir = tempfile::tempdir().expect("temp dir");
    let inner = open(&dir);
    // Two handles, as two processes would have: each its own connection,
    // session and queue of tasks.
    let lockers = [
        AsyncLocker::new(Blocking(inner.clone())),
        AsyncLocker::new(Blocking(open(&dir))),
    ];
    aio::tasks_take_turns(lockers, inner, 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_cancelled_by_a_timeout_leaves_no_ticket_and_no_lock() {
    let dir = tempfile::tempdir().expect("temp dir");
    let inner = open(&dir);
    let locker = AsyncLocker::new(Blocking(inner.clone()));
    let spread = Cancellations {
        rounds: 40,
        step: Duration::from_micros(397),
        longest: Duration::from_millis(8),
    };
    aio::cancelled_waits_leave_nothing(locker, inner, spread).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_job_helpers_run_jobs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let inner = open(&dir);
    aio::job_helpers(AsyncLocker::new(Blocking(inner.clone())), inner).await;
}
