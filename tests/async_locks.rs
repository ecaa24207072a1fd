//! The async API (feature `tokio`) on every locker: `FileLocker` and
//! `MemoryLocker` natively, and a blocking locker through `Blocking`. Waits
//! that leave other tasks running, arrival order among a thousand tasks,
//! cancellation that leaves no ticket and no lock, guards across `.await`,
//! keep-alive as a task, waits across processes, and the job helpers.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use hostlock::{
    AsyncLocker, AsyncRawLeaseLocker, Blocking, Durability, FileLocker, LeaseLocker, LeaseLost,
    Locker, MemoryLocker, RawLeaseLocker,
};
use hostlock_testkit::aio::{self, Cancellations};
use tokio::runtime::{Builder, Runtime};

const LONG: Duration = Duration::from_secs(60);

fn current_thread() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn four_workers() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn file_locker(dir: &tempfile::TempDir, durability: Durability) -> FileLocker<u64> {
    FileLocker::builder(dir.path().join("locks.redb"))
        .durability(durability)
        .open()
        .expect("open a lock file")
}

/// Polls `done` until it holds, for at most a minute.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

// ---- a wait leaves the runtime's thread to other tasks ---------------------

async fn waits_without_blocking<L>(locker: AsyncLocker<L>)
where
    L: AsyncRawLeaseLocker<u64> + Clone,
{
    let held = locker.lock("k", 1, None).await.expect("free");
    let ticks = Arc::new(AtomicUsize::new(0));
    let ticking = tokio::spawn({
        let ticks = Arc::clone(&ticks);
        async move {
            loop {
                ticks.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let waiter = tokio::spawn({
        let locker = locker.clone();
        async move { locker.lock("k", 2, None).await.map(|g| g.fence()) }
    });
    // On one thread, the ticker runs only if the waiter does not block it.
    let before = ticks.load(Ordering::SeqCst);
    eventually("other tasks run while one waits", || {
        ticks.load(Ordering::SeqCst) >= before + 20
    })
    .await;
    assert!(!waiter.is_finished(), "the key is still held");
    let first = held.fence();
    assert!(held.unlock().await.expect("unlock"));
    let next = tokio::time::timeout(LONG, waiter)
        .await
        .expect("served")
        .expect("no panic")
        .expect("granted");
    assert!(next > first);
    ticking.abort();
}

#[test]
fn a_wait_on_a_current_thread_runtime_lets_other_tasks_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = file_locker(&dir, Durability::Immediate);
    let rt = current_thread();
    rt.block_on(waits_without_blocking(AsyncLocker::new(file)));
    rt.block_on(waits_without_blocking(
        AsyncLocker::new(MemoryLocker::new()),
    ));
    // A blocking locker runs on the pool, which a current-thread runtime
    // has too.
    rt.block_on(waits_without_blocking(AsyncLocker::new(Blocking(
        MemoryLocker::new(),
    ))));
}

// ---- a thousand tasks, one key ----------------------------------------------

/// `tasks` tasks queue for one key in a known order (each joins the queue
/// before the next starts), then are served: never two at once, and in
/// that order.
async fn served_in_arrival_order<L, P>(locker: AsyncLocker<L>, probe: P, tasks: usize)
where
    L: AsyncRawLeaseLocker<u64> + Clone,
    P: RawLeaseLocker<u64>,
{
    let holder = locker.lock("one", 0, None).await.expect("free");
    let inside = Arc::new(AtomicBool::new(false));
    let order = Arc::new(Mutex::new(Vec::with_capacity(tasks)));
    let mut handles = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let (task_locker, inside, order) =
            (locker.clone(), Arc::clone(&inside), Arc::clone(&order));
        handles.push(tokio::spawn(async move {
            let guard = task_locker
                .lock("one", i as u64, None)
                .await
                .expect("granted");
            assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
            order.lock().unwrap().push(i);
            tokio::task::yield_now().await;
            inside.store(false, Ordering::SeqCst);
            guard.unlock().await.expect("unlock");
        }));
        let queued = || probe.waiters("one").expect("waiters") == i + 1;
        eventually("the task joined the queue", queued).await;
    }
    holder.unlock().await.expect("unlock");
    for handle in handles {
        tokio::time::timeout(LONG, handle)
            .await
            .expect("every task served")
            .expect("no panic");
    }
    let order = order.lock().unwrap();
    assert_eq!(*order, (0..tasks).collect::<Vec<_>>(), "arrival order");
}

#[test]
fn a_thousand_tasks_on_four_threads_take_one_key_in_arrival_order() {
    let rt = four_workers();
    let memory = MemoryLocker::new();
    rt.block_on(served_in_arrival_order(
        AsyncLocker::new(memory.clone()),
        memory,
        1000,
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let file = file_locker(&dir, Durability::Relaxed);
    rt.block_on(served_in_arrival_order(
        AsyncLocker::new(file.clone()),
        file,
        1000,
    ));
}

// ---- cancellation ---------------------------------------------------------------

/// Cancelled at every moment of a wait (in the queue, while the grant is on
/// its way): 300 timeouts sweeping 0 to 1.5 ms.
const CANCELLATIONS: Cancellations = Cancellations {
    rounds: 300,
    step: Duration::from_micros(37),
    longest: Duration::from_micros(1500),
};

#[test]
fn cancellation_under_timeout_leaves_no_ticket_and_no_lock() {
    let rt = four_workers();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = file_locker(&dir, Durability::Immediate);
    rt.block_on(aio::cancelled_waits_leave_nothing(
        AsyncLocker::new(file.clone()),
        file,
        CANCELLATIONS,
    ));
    let memory = MemoryLocker::new();
    rt.block_on(aio::cancelled_waits_leave_nothing(
        AsyncLocker::new(memory.clone()),
        memory,
        CANCELLATIONS,
    ));
    let blocking = MemoryLocker::new();
    rt.block_on(aio::cancelled_waits_leave_nothing(
        AsyncLocker::new(Blocking(blocking.clone())),
        blocking,
        CANCELLATIONS,
    ));
}

// ---- guards ---------------------------------------------------------------------

#[test]
fn guards_cross_awaits_and_tasks_and_tell_of_a_loss() {
    fn assert_send_static<G: Send + 'static>(_: &G) {}
    let dir = tempfile::tempdir().expect("temp dir");
    let file = file_locker(&dir, Durability::Immediate);
    let rt = four_workers();
    rt.block_on(async {
        let locker = AsyncLocker::new(file.clone());
        let mut guard = locker
            .lock("k", 1, Some(Duration::from_millis(300)))
            .await
            .expect("free");
        assert_send_static(&guard);
        guard.keep_alive(Duration::from_millis(50)).expect("a task");
        // Held across a sleep well past its TTL: the task renews it.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(guard.check().await.expect("check"), "renewed");
        // Moved into another task, which sees its loss.
        let watcher = tokio::spawn(async move { guard.wait_lost().await });
        Locker::force_release(&file, "k").expect("force release");
        let why = tokio::time::timeout(LONG, watcher)
            .await
            .expect("the loss is noticed")
            .expect("no panic");
        assert_eq!(why, LeaseLost::Taken);

        // A dropped guard releases without being awaited.
        let dropped = locker.lock("d", 1, None).await.expect("free");
        drop(dropped);
        eventually("a dropped guard's lock is released", || {
            !Locker::exists(&file, "d").expect("exists")
        })
        .await;
    });
}

// ---- across processes -------------------------------------------------------------

#[test]
fn child_entry() {
    let Some(role) = common::role() else {
        return;
    };
    let path = std::path::PathBuf::from(common::setting(common::FILE));
    let locker: FileLocker<u64> = FileLocker::open(&path).expect("open");
    assert_eq!(role, "hold");
    let guard = locker
        .try_lock("shared", 7, None)
        .expect("try_lock")
        .expect("free");
    println!("held");
    std::thread::sleep(Duration::from_millis(300));
    drop(guard);
}

#[test]
fn an_async_waiter_is_served_after_another_process_releases() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("locks.redb");
    let mut child = common::Reaped(
        common::child("hold", &path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the holder"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    // The test harness prints its own words first, "held" ends a line.
    let mut lines = std::io::BufReader::new(stdout).lines();
    let held = lines.any(|line| line.is_ok_and(|line| line.trim_end().ends_with("held")));
    assert!(held, "the holder says it holds");
    let file: FileLocker<u64> = FileLocker::open(&path).expect("open");
    let rt = current_thread();
    rt.block_on(async {
        let locker = AsyncLocker::new(file.clone());
        assert!(
            locker
                .try_lock("shared", 1, None)
                .await
                .expect("try")
                .is_none()
        );
        let started = Instant::now();
        let guard = tokio::time::timeout(LONG, locker.lock("shared", 1, None))
            .await
            .expect("served")
            .expect("granted");
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "waited for the holder"
        );
        assert_eq!(guard.key(), "shared");
    });
    // Read the child's output to its end, so that it never writes to a
    // closed pipe.
    lines.for_each(drop);
    assert!(child.0.wait().expect("wait").success());
}

// ---- the job helpers -------------------------------------------------------------

#[test]
fn the_job_helpers_run_on_every_locker() {
    let rt = four_workers();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = file_locker(&dir, Durability::Immediate);
    rt.block_on(aio::job_helpers(AsyncLocker::new(file.clone()), file));
    let memory = MemoryLocker::new();
    rt.block_on(aio::job_helpers(AsyncLocker::new(memory.clone()), memory));
    let blocking = MemoryLocker::new();
    rt.block_on(aio::job_helpers(
        AsyncLocker::new(Blocking(blocking.clone())),
        blocking,
    ));
}

#[test]
fn blocking_helpers_see_the_locks_of_async_ones() {
    // The two APIs share one lock space.
    let locker: MemoryLocker<u64> = MemoryLocker::new();
    let rt = current_thread();
    let guard = rt
        .block_on(AsyncLocker::new(locker.clone()).lock("k", 1, None))
        .expect("free");
    assert!(locker.try_lock("k", 2, None).expect("try").is_none());
    drop(guard);
    assert!(locker.try_lock("k", 2, None).expect("try").is_some());
}

/// An async waiter on `FileLocker` leaves its request too: a release in
/// another handle hands it the key, which it claims without a write; a
/// claim future dropped before it was polled claims nothing, so the
/// waiter's leaving passes the key on.
#[test]
fn a_release_hands_the_key_to_an_async_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let (holder, waiter) = (
        file_locker(&dir, Durability::Immediate),
        file_locker(&dir, Durability::Immediate),
    );
    four_workers().block_on(async {
        for claim in [true, false] {
            let held = holder.try_lock("k", 1, Some(LONG)).unwrap().unwrap();
            let ticket = AsyncRawLeaseLocker::enqueue_lease(
                &waiter,
                "k",
                None,
                &2,
                Some(LONG),
                "async-token",
            )
            .await
            .unwrap();
            assert!(held.unlock().unwrap());
            let handed = hostlock::InspectableLocker::info(&holder, "k")
                .unwrap()
                .expect("handed");
            assert_eq!(handed.value, 2, "the waiter's value, stored by the release");
            let claiming = AsyncRawLeaseLocker::acquire_lease(
                &waiter,
                "k",
                2,
                Some(LONG),
                "async-token",
                Some(ticket),
            );
            if claim {
                let lease = claiming.await.unwrap().expect("claimed");
                assert_eq!(lease.fence, handed.fence);
                let released =
                    AsyncRawLeaseLocker::release_if_owner(&waiter, "k", "async-token").await;
                assert!(released.unwrap());
            } else {
                drop(claiming);
                AsyncRawLeaseLocker::dequeue(&waiter, "k", ticket)
                    .await
                    .unwrap();
            }
            assert!(
                hostlock::InspectableLocker::info(&holder, "k")
                    .unwrap()
                    .is_none(),
                "free again (claim: {claim})"
            );
        }
    });
}

/// A `Blocking` call whose caller goes after the pool sent the result and
/// before the caller read it still undoes itself: a lease granted then is
/// released, not held by no one for good.
#[test]
fn a_blocking_grant_whose_caller_goes_before_reading_it_is_released() {
    let inner = MemoryLocker::<u64>::new();
    let locker = Blocking(inner.clone());
    four_workers().block_on(async {
        for attempt in 0..100 {
            let key = format!("k{attempt}");
            let mut granting = Box::pin(AsyncRawLeaseLocker::acquire_lease(
                &locker, &key, 1, None, "token", None,
            ));
            // Polled exactly once, the call starts on the pool; should the
            // pool have answered within that one poll, the caller read the
            // grant, and another key is tried.
            let first = std::future::poll_fn(|cx| Poll::Ready(granting.as_mut().poll(cx))).await;
            if let Poll::Ready(read) = first {
                assert!(read.unwrap().is_some());
                continue;
            }
            eventually("granted on the pool", || inner.exists(&key).unwrap()).await;
            // The result is sent now, unread.
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(granting);
            eventually("the unread grant was released", || {
                !inner.exists(&key).unwrap()
            })
            .await;
            return;
        }
        panic!("the pool answered within the first poll every time");
    });
}
