//! Guards: they release only their own lock, carry increasing fences, renew
//! (also in the background), report a lost lease, and wait for a key. Each
//! test runs against every locker; time moves through a `ManualClock`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

use hostlock::{
    Clock, FileLocker, LeaseLocker, LeaseLost, LockValue, Locker, ManualClock, MemoryLocker,
    RenewableLocker,
};

const SEC: Duration = Duration::from_secs(1);

trait Subject: LeaseLocker<String> + Clone + Send + Sync + 'static {}
impl<L: LeaseLocker<String> + Clone + Send + Sync + 'static> Subject for L {}

struct Fixture<L> {
    locker: L,
    clock: ManualClock,
    _dir: Option<tempfile::TempDir>,
}

fn clock() -> ManualClock {
    ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
}

fn memory() -> Fixture<MemoryLocker<String>> {
    let clock = clock();
    Fixture {
        locker: MemoryLocker::with_clock(clock.clone()),
        clock,
        _dir: None,
    }
}

fn file() -> Fixture<FileLocker<String>> {
    let clock = clock();
    let dir = tempfile::tempdir().unwrap();
    let locker = FileLocker::builder(dir.path().join("locks.redb"))
        .clock(clock.clone())
        .background_cleanup(false)
        .open()
        .unwrap();
    Fixture {
        locker,
        clock,
        _dir: Some(dir),
    }
}

fn v(s: &str) -> String {
    s.to_owned()
}

/// Waits (polling) until `done`, failing after a generous deadline.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// Regression: the guard of an expired lease must not release the lock of
/// whoever took the key after it, neither on drop nor through unlock.
fn stale_guard_leaves_the_new_holder_alone(f: Fixture<impl Subject>) {
    let old = f
        .locker
        .try_lock("k", v("old"), Some(10 * SEC))
        .unwrap()
        .unwrap();
    f.clock.advance(11 * SEC);
    assert_eq!(old.lost(), Some(LeaseLost::Expired));
    let new = f
        .locker
        .try_lock("k", v("new"), Some(10 * SEC))
        .unwrap()
        .unwrap();
    drop(old);
    assert_eq!(f.locker.get("k").unwrap().unwrap().value, "new");
    assert!(new.check().unwrap());

    f.clock.advance(11 * SEC);
    let newest = f.locker.try_lock("k", v("newest"), None).unwrap().unwrap();
    assert!(!new.unlock().unwrap(), "unlock of a lost lease reports it");
    assert_eq!(f.locker.get("k").unwrap().unwrap().value, "newest");
    assert!(newest.unlock().unwrap());
    assert!(!f.locker.exists("k").unwrap());
}

fn try_lock_takes_a_free_key_once(f: Fixture<impl Subject>) {
    let guard = f
        .locker
        .try_lock("k", v("a"), Some(10 * SEC))
        .unwrap()
        .unwrap();
    assert!(f.locker.try_lock("k", v("b"), None).unwrap().is_none());
    assert!(
        !f.locker
            .acquire("k", hostlock::LockValue::new(v("c")))
            .unwrap()
    );
    assert_eq!(guard.key(), "k");
    assert_eq!(guard.expires_at(), Some(f.clock.now() + 10 * SEC));
    let stored = f.locker.get("k").unwrap().unwrap();
    assert_eq!(stored.token.as_deref(), Some(guard.token()));
    drop(guard);
    assert!(!f.locker.exists("k").unwrap(), "dropping releases");
}

fn guards_get_fresh_tokens_and_increasing_fences(f: Fixture<impl Subject>) {
    let mut last = 0;
    let mut tokens = std::collections::HashSet::new();
    for _ in 0..20 {
        let guard = f.locker.try_lock("k", v("v"), None).unwrap().unwrap();
        assert!(guard.fence() > last);
        last = guard.fence();
        assert_eq!(guard.token().len(), 32);
        assert!(tokens.insert(guard.token().to_owned()), "tokens are fresh");
        assert_eq!(f.locker.info("k").unwrap().unwrap().fence, guard.fence());
    }
}

fn renew_extends_and_reports_loss(f: Fixture<impl Subject>) {
    let guard = f
        .locker
        .try_lock("k", v("v"), Some(10 * SEC))
        .unwrap()
        .unwrap();
    f.clock.advance(8 * SEC);
    assert!(guard.renew(10 * SEC).unwrap());
    assert_eq!(guard.expires_at(), Some(f.clock.now() + 10 * SEC));
    f.clock.advance(8 * SEC);
    assert!(f.locker.exists("k").unwrap(), "the renewal counts");
    assert!(guard.lost().is_none());
    f.locker.force_release("k").unwrap();
    assert!(!guard.renew(10 * SEC).unwrap());
    assert_eq!(guard.lost(), Some(LeaseLost::Taken));
    assert!(!guard.check().unwrap());
}

fn check_sees_a_force_release(f: Fixture<impl Subject>) {
    let guard = f.locker.try_lock("k", v("v"), None).unwrap().unwrap();
    assert!(guard.check().unwrap());
    f.locker.force_release("k").unwrap();
    assert!(guard.lost().is_none(), "lost() reads no storage");
    assert!(!guard.check().unwrap());
    assert_eq!(guard.lost(), Some(LeaseLost::Taken));
}

fn keep_alive_holds_a_short_lease_over_many_ttls(f: Fixture<impl Subject>) {
    let ttl = 10 * SEC;
    let mut guard = f.locker.try_lock("k", v("v"), Some(ttl)).unwrap().unwrap();
    guard.keep_alive(Duration::from_millis(5)).unwrap();
    for step in 0..20 {
        let before = guard.expires_at();
        f.clock.advance(ttl / 2);
        eventually("a renewal", || guard.expires_at() > before);
        assert!(f.locker.exists("k").unwrap(), "step {step}");
        assert!(f.locker.try_lock("k", v("other"), None).unwrap().is_none());
    }
    assert!(guard.check().unwrap(), "held over 10 TTLs");
    assert!(guard.lost().is_none());
    assert!(guard.unlock().unwrap());
}

fn keep_alive_reports_a_force_release(f: Fixture<impl Subject>) {
    for ttl in [Some(10 * SEC), None] {
        let mut guard = f.locker.try_lock("k", v("v"), ttl).unwrap().unwrap();
        guard.keep_alive(Duration::from_millis(5)).unwrap();
        assert_eq!(guard.wait_lost(Duration::from_millis(30)), None);
        f.locker.force_release("k").unwrap();
        assert_eq!(
            guard.wait_lost(Duration::from_secs(30)),
            Some(LeaseLost::Taken)
        );
    }
}

fn without_renewal_the_lease_expires(f: Fixture<impl Subject>) {
    let guard = f
        .locker
        .try_lock("k", v("v"), Some(10 * SEC))
        .unwrap()
        .unwrap();
    assert_eq!(guard.wait_lost(Duration::from_millis(20)), None);
    f.clock.advance(11 * SEC);
    assert_eq!(
        guard.wait_lost(Duration::from_secs(30)),
        Some(LeaseLost::Expired)
    );
    assert!(!guard.renew(10 * SEC).unwrap(), "too late to renew");
}

fn try_lock_for_waits_for_a_release(f: Fixture<impl Subject>) {
    let holder = f.locker.try_lock("k", v("first"), None).unwrap().unwrap();
    assert!(
        f.locker
            .try_lock_for("k", v("x"), None, Duration::from_millis(30))
            .unwrap()
            .is_none(),
        "times out while held"
    );
    let waiting = Arc::new(Barrier::new(2));
    let (locker, barrier) = (f.locker.clone(), Arc::clone(&waiting));
    let waiter = thread::spawn(move || {
        barrier.wait();
        let guard = locker
            .try_lock_for("k", v("second"), None, Duration::from_secs(30))
            .unwrap()
            .expect("got the key once released");
        (guard.fence(), locker.get("k").unwrap().unwrap().value)
    });
    waiting.wait();
    thread::sleep(Duration::from_millis(20));
    let first_fence = holder.fence();
    assert!(holder.unlock().unwrap());
    let (fence, value) = waiter.join().unwrap();
    assert!(fence > first_fence);
    assert_eq!(value, "second");
}

fn lock_waits_for_an_expiry(f: Fixture<impl Subject>) {
    let _stale = f
        .locker
        .try_lock("k", v("stale"), Some(10 * SEC))
        .unwrap()
        .unwrap();
    let locker = f.locker.clone();
    let waiter = thread::spawn(move || locker.lock("k", v("next"), None).unwrap().fence());
    thread::sleep(Duration::from_millis(20));
    f.clock.advance(11 * SEC);
    assert!(waiter.join().unwrap() > 0);
}

fn keep_alive_rejects_a_zero_interval(f: Fixture<impl Subject>) {
    let mut guard = f.locker.try_lock("k", v("v"), None).unwrap().unwrap();
    assert!(matches!(
        guard.keep_alive(Duration::ZERO),
        Err(hostlock::Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        f.locker.try_lock("", v("v"), None),
        Err(hostlock::Error::InvalidArgument { .. })
    ));
}

/// Zero and tiny durations never leave a lock that nobody holds: a zero TTL
/// is refused, and a hold that ends before it is kept releases the lock.
fn zero_and_tiny_durations_leave_no_ownerless_lock(f: Fixture<impl Subject>) {
    use hostlock::{Outcome, with_unique_window};
    for result in [
        f.locker
            .try_lock("k", v("v"), Some(Duration::ZERO))
            .map(drop),
        f.locker
            .try_lock_for("k", v("v"), Some(Duration::ZERO), Duration::from_millis(1))
            .map(drop),
    ] {
        assert!(
            matches!(
                result,
                Err(hostlock::Error::InvalidArgument {
                    argument: "ttl",
                    ..
                })
            ),
            "{result:?}"
        );
    }
    assert!(!f.locker.exists("k").unwrap(), "nothing was taken");
    let guard = f.locker.try_lock("k", v("v"), None).unwrap().unwrap();
    assert!(matches!(
        guard.renew(Duration::ZERO),
        Err(hostlock::Error::InvalidArgument { .. })
    ));
    assert!(
        guard.hold_for(Duration::ZERO).unwrap(),
        "it was the guard's"
    );
    assert!(!f.locker.exists("k").unwrap(), "a zero hold releases");

    // A window that has passed by the time the job ends: released.
    for window in [Duration::ZERO, Duration::from_nanos(1)] {
        let outcome = with_unique_window(&f.locker, "w", window, |_| {
            f.clock.advance(Duration::from_millis(1));
        })
        .unwrap();
        assert_eq!(outcome, Outcome::Ran(()));
        // Free at once (zero), or at the window's end: never held for good.
        f.clock.advance(Duration::from_millis(1));
        assert!(
            !f.locker.exists("w").unwrap(),
            "{window:?}: free after the window"
        );
        assert!(f.locker.try_lock("w", v("v"), None).unwrap().is_some());
    }
}

macro_rules! suite {
    ($($locker:ident),*) => {$(
        mod $locker {
            suite!(@tests $locker:
                stale_guard_leaves_the_new_holder_alone,
                try_lock_takes_a_free_key_once,
                guards_get_fresh_tokens_and_increasing_fences,
                renew_extends_and_reports_loss,
                check_sees_a_force_release,
                keep_alive_holds_a_short_lease_over_many_ttls,
                keep_alive_reports_a_force_release,
                without_renewal_the_lease_expires,
                try_lock_for_waits_for_a_release,
                lock_waits_for_an_expiry,
                keep_alive_rejects_a_zero_interval,
                zero_and_tiny_durations_leave_no_ownerless_lock
            );
        }
    )*};
    (@tests $locker:ident: $($test:ident),*) => {$(
        #[test]
        fn $test() {
            super::$test(super::$locker());
        }
    )*};
}

suite!(memory, file);

#[test]
fn file_guards_see_renewals_from_other_handles() {
    let f = file();
    let path = f.locker.path().to_owned();
    let other: FileLocker<String> = FileLocker::builder(&path)
        .clock(f.clock.clone())
        .background_cleanup(false)
        .open()
        .unwrap();
    let guard = f
        .locker
        .try_lock("k", v("v"), Some(10 * SEC))
        .unwrap()
        .unwrap();
    assert!(
        other
            .touch("k", guard.token(), f.clock.now() + 60 * SEC)
            .unwrap()
    );
    f.clock.advance(30 * SEC);
    assert!(guard.check().unwrap(), "the lock was renewed elsewhere");
}

#[test]
fn persisted_and_held_locks_outlive_their_handle() {
    let f = file();
    let path = f.locker.path().to_owned();
    let holder: FileLocker<String> = FileLocker::builder(&path)
        .clock(f.clock.clone())
        .background_cleanup(false)
        .bind_to_session(true)
        .open()
        .unwrap();
    let forever = holder.try_lock("forever", v("v"), None).unwrap().unwrap();
    assert!(forever.persist().unwrap());
    let window = holder.try_lock("window", v("v"), None).unwrap().unwrap();
    assert!(window.hold_for(60 * SEC).unwrap());
    // Bound to the session, neither released nor persisted. (A guard would
    // keep the handle open: it owns a clone of it.)
    assert!(holder.acquire("bound", LockValue::new(v("v"))).unwrap());
    drop(holder); // its session ends
    assert!(f.locker.exists("forever").unwrap());
    assert_eq!(f.locker.get("forever").unwrap().unwrap().expires_at, None);
    assert!(f.locker.exists("window").unwrap());
    assert!(
        !f.locker.exists("bound").unwrap(),
        "a bound lock went with its session"
    );
    f.clock.advance(61 * SEC);
    assert!(!f.locker.exists("window").unwrap());
    assert!(f.locker.exists("forever").unwrap());
}

/// A clock that moves on by a millisecond each time it is read, so a
/// window of a microsecond has passed by the time any decision reads it.
#[derive(Debug, Clone, Default)]
struct Ticking(Arc<AtomicU64>);

impl hostlock::Clock for Ticking {
    fn now(&self) -> std::time::SystemTime {
        let ms = self.0.fetch_add(1, Ordering::SeqCst);
        UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
    }
}

#[test]
fn a_window_that_passed_before_it_was_kept_releases_on_every_locker() {
    use hostlock::{Outcome, with_unique_window};
    let dir = tempfile::tempdir().unwrap();
    let memory = MemoryLocker::<String>::with_clock(Ticking::default());
    let file: FileLocker<String> = FileLocker::builder(dir.path().join("locks.redb"))
        .clock(Ticking::default())
        .background_cleanup(false)
        .open()
        .unwrap();
    let window = Duration::from_micros(1);
    let outcome = with_unique_window(&memory, "w", window, |_| ()).unwrap();
    assert_eq!(outcome, Outcome::Ran(()));
    assert!(
        memory.try_lock("w", v("v"), None).unwrap().is_some(),
        "memory"
    );
    let outcome = with_unique_window(&file, "w", window, |_| ()).unwrap();
    assert_eq!(outcome, Outcome::Ran(()));
    assert!(file.try_lock("w", v("v"), None).unwrap().is_some(), "file");
}

/// A guard owns a clone of its locker: it is `Send + 'static`, can be kept
/// in a struct, and can move to another thread, which releases it there.
#[test]
fn guards_own_their_locker_and_move_across_threads() {
    struct Job {
        guard: hostlock::LockGuard<FileLocker<String>, String>,
    }
    fn send_static<G: Send + 'static>(_: &G) {}
    let f = file();
    let job = Job {
        guard: f.locker.try_lock("k", v("v"), None).unwrap().unwrap(),
    };
    send_static(&job.guard);
    let memory = MemoryLocker::<String>::new();
    let in_memory = memory.try_lock("k", v("v"), None).unwrap().unwrap();
    send_static(&in_memory);
    let released = thread::spawn(move || job.guard.unlock().unwrap())
        .join()
        .unwrap();
    assert!(released);
    assert!(!f.locker.exists("k").unwrap());
}
