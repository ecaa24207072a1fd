//! The Redis locker under hostlock's async API, through `Blocking` (each
//! call on tokio's blocking pool), against a `redis-server` of the test's
//! own: sixteen tasks on two lockers contending for one key, waits
//! cancelled by a timeout that leave no ticket and no lock, and the async
//! job helpers.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hostlock::{
    AsyncLocker, Blocking, Locker, Outcome, OverlapOptions, RawLeaseLocker, with_unique_async,
    without_overlap_async,
};
use hostlock_redis::RedisLocker;

use common::{Server, prefix};

/// Longer than any step of these tests takes on a loaded machine.
const LONG: Duration = Duration::from_secs(60);

fn open(server: &Server, prefix: &str) -> RedisLocker<u64> {
    RedisLocker::builder(&server.url())
        .prefix(prefix)
        .open()
        .expect("a locker on the test server")
}

/// Runs a blocking call of `locker` on the blocking pool, as async code
/// should, and returns its result.
async fn off_runtime<R: Send + 'static>(
    locker: &RedisLocker<u64>,
    call: impl FnOnce(&RedisLocker<u64>) -> hostlock::Result<R> + Send + 'static,
) -> R {
    let locker = locker.clone();
    tokio::task::spawn_blocking(move || call(&locker))
        .await
        .expect("no panic")
        .expect("the server answers")
}

/// Polls `done` until it holds, for at most [`LONG`].
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !done().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// No waiter is queued for `key`, and no one holds it.
async fn left_clean(inner: &RedisLocker<u64>, key: &'static str) -> bool {
    off_runtime(inner, move |l| l.waiters(key)).await == 0
        && !off_runtime(inner, move |l| l.exists(key)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_tasks_on_two_lockers_hold_one_key_in_turn() {
    let server = Server::start();
    let prefix = prefix("async");
    let inner = open(&server, &prefix);
    // Two lockers, as two processes would have: each its own connection,
    // session and queue of tasks.
    let lockers = [
        AsyncLocker::new(Blocking(inner.clone())),
        AsyncLocker::new(Blocking(open(&server, &prefix))),
    ];
    let inside = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..16u64)
        .map(|task| {
            let locker = lockers[task as usize % 2].clone();
            let (inside, served) = (Arc::clone(&inside), Arc::clone(&served));
            tokio::spawn(async move {
                let guard = locker.lock("one", task, None).await.expect("granted");
                assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.store(false, Ordering::SeqCst);
                served.fetch_add(1, Ordering::SeqCst);
                assert!(guard.unlock().await.expect("unlock"), "still held");
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(LONG, task)
            .await
            .expect("every task served")
            .expect("no panic");
    }
    assert_eq!(served.load(Ordering::SeqCst), 16);
    assert!(left_clean(&inner, "one").await, "no waiter and no holder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_cancelled_by_a_timeout_leaves_no_ticket_and_no_lock() {
    let server = Server::start();
    let prefix = prefix("async");
    let inner = open(&server, &prefix);
    let locker = AsyncLocker::new(Blocking(inner.clone()));

    // Cancelled while queued behind a holder: the ticket goes.
    let holder = locker.lock("k", 0, None).await.expect("free");
    let waited = tokio::time::timeout(Duration::from_millis(50), locker.lock("k", 1, None)).await;
    assert!(waited.is_err(), "the key was held");
    eventually("the cancelled waiter left the queue", async || {
        off_runtime(&inner, |l| l.waiters("k")).await == 0
    })
    .await;
    assert!(holder.unlock().await.expect("unlock"));
    eventually("the key is free", async || left_clean(&inner, "k").await).await;

    // Cancelled at other moments: while joining the queue, while a grant
    // is on its way from the pool, before the first call.
    for round in 0..40u64 {
        let holder = if round % 2 == 0 {
            Some(locker.lock("r", 0, None).await.expect("free"))
        } else {
            None
        };
        let limit = Duration::from_micros(round * 397 % 8000);
        let attempt = tokio::time::timeout(limit, locker.lock("r", round, None)).await;
        drop(attempt); // a guard it got is released too
        drop(holder);
    }
    eventually("every cancelled wait cleaned up after itself", async || {
        left_clean(&inner, "r").await
    })
    .await;
    let newcomer = locker.try_lock("r", 99, None).await.expect("try_lock");
    assert!(newcomer.is_some(), "the key is free for a newcomer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_job_helpers_run_jobs() {
    let server = Server::start();
    let prefix = prefix("async");
    let inner = open(&server, &prefix);
    let locker = AsyncLocker::new(Blocking(inner.clone()));

    // with_unique_async: runs the job, skips a duplicate, releases after.
    let outcome = with_unique_async(&locker, "import", None, async |lease| {
        let again = with_unique_async(&locker, "import", None, async |_| ())
            .await
            .expect("try");
        assert_eq!(again, Outcome::Skipped);
        lease.fence()
    })
    .await
    .expect("ran");
    assert!(matches!(outcome, Outcome::Ran(fence) if fence > 0));
    assert!(left_clean(&inner, "import").await, "released");

    // without_overlap_async: four tasks, three runs each, never two at once.
    let inside = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (locker, inside, runs) = (locker.clone(), Arc::clone(&inside), Arc::clone(&runs));
            tokio::spawn(async move {
                for _ in 0..3 {
                    let options = OverlapOptions::new().ttl(Duration::from_secs(30));
                    let outcome =
                        without_overlap_async(&locker, "rebuild", options, async |lease| {
                            assert!(!inside.swap(true, Ordering::SeqCst), "two runs at once");
                            assert!(lease.check().await.expect("check"), "held while it runs");
                            inside.store(false, Ordering::SeqCst);
                            runs.fetch_add(1, Ordering::SeqCst);
                        })
                        .await;
                    assert_eq!(outcome.expect("ran"), Outcome::Ran(()));
                }
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(LONG, task)
            .await
            .expect("every run done")
            .expect("no panic");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 12);
    assert!(left_clean(&inner, "rebuild").await, "released");
}
