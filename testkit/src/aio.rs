//! Checks of hostlock's async API that hold for every lease locker: the
//! file and memory lockers natively, and any blocking one through
//! `Blocking`. hostlock's `tests/async_locks.rs` and the async tests of the
//! SQLite and Redis crates run them (feature `tokio`).
//!
//! Each check takes the async locker it drives and a blocking handle on the
//! same lock space (`inner`), through which it looks at what is left
//! behind; those looks run on tokio's blocking pool, as a blocking call in
//! async code should. A check panics on a finding.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hostlock::{
    AsyncLocker, AsyncRawLeaseLocker, Outcome, OverlapOptions, RawLeaseLocker, with_unique_async,
    with_unique_window_async, without_overlap_async,
};

/// Longer than any step of these checks takes on a loaded machine.
const LONG: Duration = Duration::from_secs(60);

/// Runs a blocking call of `inner` on the blocking pool and returns its
/// result.
async fn look<P, R>(inner: &P, call: impl FnOnce(&P) -> hostlock::Result<R> + Send + 'static) -> R
where
    P: Clone + Send + 'static,
    R: Send + 'static,
{
    let inner = inner.clone();
    tokio::task::spawn_blocking(move || call(&inner))
        .await
        .expect("no panic")
        .expect("the locker answers")
}

/// Polls `done` until it holds, for at most [`LONG`].
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !done().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// No waiter is queued for `key`, and no one holds it.
async fn left_clean<P>(inner: &P, key: &'static str) -> bool
where
    P: RawLeaseLocker<u64> + Clone + Send + 'static,
{
    look(inner, move |l| l.waiters(key)).await == 0 && !look(inner, move |l| l.exists(key)).await
}

/// `tasks` tasks, spread over the two handles `lockers` (as two processes
/// would have them), hold one key in turn: never two at once, every task
/// served, and nothing left behind.
pub async fn tasks_take_turns<L, P>(lockers: [AsyncLocker<L>; 2], inner: P, tasks: u64)
where
    L: AsyncRawLeaseLocker<u64> + Clone,
    P: RawLeaseLocker<u64> + Clone + Send + 'static,
{
    let inside = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let running: Vec<_> = (0..tasks)
        .map(|task| {
            let locker = lockers[(task % 2) as usize].clone();
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
    for task in running {
        tokio::time::timeout(LONG, task)
            .await
            .expect("every task served")
            .expect("no panic");
    }
    assert_eq!(served.load(Ordering::SeqCst) as u64, tasks);
    assert!(left_clean(&inner, "one").await, "no waiter and no holder");
}

/// How the rounds of [`cancelled_waits_leave_nothing`] spread their
/// timeouts: round `n` waits `n * step` modulo `longest`.
#[derive(Clone, Copy, Debug)]
pub struct Cancellations {
    /// How many waits to cancel.
    pub rounds: u64,
    /// How much longer each round's timeout is than the last one's.
    pub step: Duration,
    /// The bound the timeouts wrap around at.
    pub longest: Duration,
}

/// Waits cancelled by a timeout leave no ticket and no lock behind: one
/// cancelled while queued behind a holder, then the rounds of `spread`,
/// cancelled at other moments (while joining the queue, while a grant is on
/// its way, before the first call).
pub async fn cancelled_waits_leave_nothing<L, P>(
    locker: AsyncLocker<L>,
    inner: P,
    spread: Cancellations,
) where
    L: AsyncRawLeaseLocker<u64> + Clone,
    P: RawLeaseLocker<u64> + Clone + Send + 'static,
{
    let holder = locker.lock("k", 0, None).await.expect("free");
    let waited = tokio::time::timeout(Duration::from_millis(20), locker.lock("k", 1, None)).await;
    assert!(waited.is_err(), "the key was held");
    eventually("the cancelled waiter left the queue", async || {
        look(&inner, |l| l.waiters("k")).await == 0
    })
    .await;
    assert!(holder.unlock().await.expect("unlock"));
    eventually("the key is free", async || left_clean(&inner, "k").await).await;

    let step = spread.step.as_micros() as u64;
    let longest = spread.longest.as_micros().max(1) as u64;
    for round in 0..spread.rounds {
        let holder = if round % 2 == 0 {
            Some(locker.lock("r", 0, None).await.expect("free"))
        } else {
            None
        };
        let limit = Duration::from_micros(round * step % longest);
        let attempt = tokio::time::timeout(limit, locker.lock("r", round, None)).await;
        drop(attempt); // a guard it got is released too
        drop(holder);
    }
    eventually("every cancelled wait cleaned up after itself", async || {
        left_clean(&inner, "r").await
    })
    .await;
    let newcomer = locker.try_lock("r", 9, None).await.expect("try_lock");
    assert!(newcomer.is_some(), "the key is free for a newcomer");
}

/// The async job helpers: `with_unique_async` skips a duplicate and
/// releases after; `with_unique_window_async` keeps the key for its window,
/// also when the job panics; `without_overlap_async` never runs two at once
/// among 8 tasks of 5 runs each, and reports a key it could not get in its
/// wait as contended.
pub async fn job_helpers<L, P>(locker: AsyncLocker<L>, inner: P)
where
    L: AsyncRawLeaseLocker<u64> + Clone,
    P: RawLeaseLocker<u64> + Clone + Send + 'static,
{
    let outcome = with_unique_async(&locker, "u", None, async |lease| {
        let again = with_unique_async(&locker, "u", None, async |_| ())
            .await
            .expect("try");
        assert_eq!(again, Outcome::Skipped);
        tokio::task::yield_now().await;
        lease.fence()
    })
    .await
    .expect("ran");
    assert!(matches!(outcome, Outcome::Ran(fence) if fence > 0));
    assert!(left_clean(&inner, "u").await, "released");

    let window = Duration::from_secs(3600);
    let ran = with_unique_window_async(&locker, "w", window, async |_| 1).await;
    assert_eq!(ran.expect("ran"), Outcome::Ran(1));
    let again = with_unique_window_async(&locker, "w", window, async |_| 2).await;
    assert_eq!(again.expect("try"), Outcome::Skipped);

    let panicking = tokio::spawn({
        let locker = locker.clone();
        async move {
            let _ = with_unique_window_async(&locker, "p", window, async |_| -> () {
                panic!("the job failed")
            })
            .await;
        }
    });
    assert!(panicking.await.is_err(), "the panic goes on");
    eventually("the failed run keeps its window", async || {
        look(&inner, |l| l.exists("p")).await
            && look(&inner, |l| l.get("p"))
                .await
                .is_some_and(|lock| lock.expires_at.is_some())
    })
    .await;

    let inside = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (locker, inside, runs) = (locker.clone(), Arc::clone(&inside), Arc::clone(&runs));
            tokio::spawn(async move {
                for _ in 0..5 {
                    let options = OverlapOptions::new().ttl(Duration::from_secs(30));
                    let outcome = without_overlap_async(&locker, "o", options, async |lease| {
                        assert!(!inside.swap(true, Ordering::SeqCst), "two runs at once");
                        tokio::task::yield_now().await;
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
    assert_eq!(runs.load(Ordering::SeqCst), 40);
    assert!(left_clean(&inner, "o").await, "released");

    let held = locker.lock("c", 0, None).await.expect("free");
    let contended = without_overlap_async(
        &locker,
        "c",
        OverlapOptions::new().wait(Duration::from_millis(20)),
        async |_| (),
    )
    .await;
    assert_eq!(contended.expect("waited"), Outcome::Contended);
    drop(held);
}
