//! Group commit: the writes of many threads of one handle share
//! transactions, and each thread still gets its own, correct result.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use hostlock::{Faults, FileLocker, LockValue, Locker};

const THREADS: usize = 8;

/// The tests count this process's threads, so they run one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
const CYCLES: usize = 25;

#[test]
fn threads_share_commits_and_keep_their_own_results() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let locker: FileLocker<usize> = FileLocker::builder(dir.path().join("locks.redb"))
        .background_cleanup(false)
        .faults(faults.clone())
        .open()
        .unwrap();
    let syncs_before = faults.syncs();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (locker, barrier) = (locker.clone(), &barrier);
            s.spawn(move || {
                barrier.wait();
                for c in 0..CYCLES {
                    let own = format!("t{t}-{c}");
                    assert!(locker.acquire(&own, LockValue::new(t)).unwrap());
                    // Every thread also contends for one shared key.
                    let shared = locker.acquire("shared", LockValue::new(t)).unwrap();
                    if shared {
                        assert_eq!(locker.get("shared").unwrap().unwrap().value, t);
                        assert!(locker.release("shared").unwrap());
                    }
                    assert!(!locker.acquire(&own, LockValue::new(t)).unwrap());
                    assert!(locker.release(&own).unwrap());
                    assert!(!locker.release(&own).unwrap());
                }
            });
        }
    });
    assert!(!locker.exists("shared").unwrap());
    // A commit of one operation costs two syncs; shared commits cost fewer
    // per operation. Only the changes count: refused acquires and releases
    // of free keys commit nothing.
    let changes = THREADS * CYCLES * 2;
    let syncs = faults.syncs() - syncs_before;
    eprintln!("{changes} changes in {syncs} syncs");
    assert!(
        (syncs as usize) < 2 * changes,
        "{syncs} syncs for {changes} changes: no commit was shared"
    );
    assert!(locker.check().unwrap().problems.is_empty());
}

/// A clock that panics while `fail` is set.
#[derive(Debug, Clone, Default)]
struct Flaky {
    fail: Arc<std::sync::atomic::AtomicBool>,
}

impl hostlock::Clock for Flaky {
    fn now(&self) -> std::time::SystemTime {
        assert!(
            !self.fail.load(std::sync::atomic::Ordering::SeqCst),
            "the clock broke"
        );
        std::time::SystemTime::now()
    }
}

/// A panic in the caller's clock, which runs inside the handle's write
/// transactions, fails the calls it hit at once with an error, and the
/// handle goes on serving.
#[test]
fn a_panicking_clock_fails_its_calls_and_the_handle_goes_on() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let clock = Flaky::default();
    let locker: FileLocker<u32> = FileLocker::builder(dir.path().join("locks.redb"))
        .clock(clock.clone())
        .background_cleanup(false)
        .busy_timeout(Duration::from_secs(30))
        .open()
        .unwrap();
    clock.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let started = std::time::Instant::now();
    let callers: Vec<_> = (0..8)
        .map(|i| {
            let locker = locker.clone();
            thread::spawn(move || locker.acquire(&format!("k{i}"), LockValue::new(i)))
        })
        .collect();
    for caller in callers {
        let err = caller.join().unwrap().unwrap_err();
        assert!(matches!(err, hostlock::Error::Panicked { .. }), "{err:?}");
        assert!(err.to_string().contains("the clock broke"), "{err}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "answered, not left to the busy timeout"
    );
    clock.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(locker.acquire("k0", LockValue::new(0)).unwrap());
}

fn commit_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "hostlock-commit")
        .count()
}

/// Dropping the last clone of a handle stops and joins its threads, so none
/// touches the file after the drop returns.
#[test]
fn dropping_the_last_handle_joins_its_threads() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let before = commit_threads();
    for _ in 0..5 {
        let locker: FileLocker<u32> = FileLocker::open(dir.path().join("locks.redb")).unwrap();
        let clones: Vec<_> = (0..4).map(|_| locker.clone()).collect();
        let workers: Vec<_> = clones
            .into_iter()
            .enumerate()
            .map(|(i, l)| thread::spawn(move || l.acquire(&format!("k{i}"), LockValue::new(1))))
            .collect();
        for worker in workers {
            worker.join().unwrap().unwrap();
        }
        // A thread takes its name once it runs; a lone caller's acquire
        // runs on the caller's thread, so the committer may not have run yet.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while commit_threads() <= before {
            assert!(
                std::time::Instant::now() < deadline,
                "the handle's commit thread never showed"
            );
            thread::sleep(Duration::from_millis(1));
        }
        drop(locker);
        assert_eq!(
            commit_threads(),
            before,
            "joined when the last clone dropped"
        );
    }
}
