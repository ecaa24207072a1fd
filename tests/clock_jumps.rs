//! The wall clock jumping forward and backward under held locks, on every
//! locker: what happens to existing leases is what docs/semantics.md
//! ("Clock jumps") says, and no jump, however far, panics.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hostlock::{
    CleanableLocker, Error, FileLocker, LeaseLocker, LeaseLost, LockValue, ManualClock,
    MemoryLocker, latest_expiry,
};

const SEC: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Runs the scenario `$check` on a fresh locker of each kind, with a clock
/// at `start()`.
macro_rules! on_each_locker {
    ($check:ident) => {{
        let clock = ManualClock::new(start());
        $check(&MemoryLocker::<u32>::with_clock(clock.clone()), &clock);

        let clock = ManualClock::new(start());
        let dir = tempfile::tempdir().unwrap();
        let file: FileLocker<u32> = FileLocker::builder(dir.path().join("locks.redb"))
            .clock(clock.clone())
            .background_cleanup(false)
            .open()
            .unwrap();
        $check(&file, &clock);
    }};
}

fn lease(clock: &ManualClock, ttl: Duration) -> LockValue<u32> {
    use hostlock::Clock;
    LockValue::new(1).expiring_at(clock.now() + ttl)
}

#[test]
fn a_forward_jump_ends_leases_early() {
    on_each_locker!(a_forward_jump_ends_leases_early_on);
}

fn a_forward_jump_ends_leases_early_on<L: LeaseLocker<u32> + CleanableLocker<u32>>(
    locker: &L,
    clock: &ManualClock,
) {
    assert!(locker.acquire("plain", lease(clock, 60 * SEC)).unwrap());
    let guard = locker
        .try_lock("guarded", 2, Some(60 * SEC))
        .unwrap()
        .unwrap();
    clock.advance(HOUR);
    // Both leases ran out by the clock: free for the next taker.
    assert!(!locker.exists("plain").unwrap());
    assert!(!locker.exists("guarded").unwrap());
    assert!(!guard.renew(60 * SEC).unwrap());
    assert_eq!(guard.lost(), Some(LeaseLost::Expired));
    assert!(locker.acquire("plain", lease(clock, 60 * SEC)).unwrap());
    let next = locker
        .try_lock("guarded", 3, Some(60 * SEC))
        .unwrap()
        .unwrap();
    assert!(next.fence() > guard.fence());
    // The old guard releases nothing of the new holder's.
    assert!(!guard.unlock().unwrap());
    assert!(locker.exists("guarded").unwrap());
    drop(next);
    assert_eq!(locker.cleanup().unwrap(), 0, "nothing expired is left");
}

#[test]
fn a_backward_jump_lengthens_leases() {
    on_each_locker!(a_backward_jump_lengthens_leases_on);
}

fn a_backward_jump_lengthens_leases_on<L: LeaseLocker<u32> + CleanableLocker<u32>>(
    locker: &L,
    clock: &ManualClock,
) {
    assert!(locker.acquire("plain", lease(clock, 10 * SEC)).unwrap());
    let expires = locker.get("plain").unwrap().unwrap().expires_at;
    clock.set(start() - HOUR);
    clock.advance(30 * SEC);
    // The stored expiry is a time of day: an hour away now.
    assert!(locker.exists("plain").unwrap());
    assert_eq!(locker.get("plain").unwrap().unwrap().expires_at, expires);
    assert!(!locker.acquire("plain", lease(clock, SEC)).unwrap());
    assert_eq!(locker.cleanup().unwrap(), 0);
    // A lease taken now runs from the new time.
    let guard = locker
        .try_lock("guarded", 2, Some(10 * SEC))
        .unwrap()
        .unwrap();
    assert_eq!(guard.expires_at(), Some(start() - HOUR + 40 * SEC));
    clock.set(start() + 11 * SEC);
    assert!(!locker.exists("plain").unwrap());
    assert!(!locker.exists("guarded").unwrap());
    assert_eq!(locker.cleanup().unwrap(), 2);
}

#[test]
fn renewing_after_a_backward_jump_may_shorten_a_lease() {
    on_each_locker!(renewing_after_a_backward_jump_may_shorten_a_lease_on);
}

fn renewing_after_a_backward_jump_may_shorten_a_lease_on<
    L: LeaseLocker<u32> + CleanableLocker<u32>,
>(
    locker: &L,
    clock: &ManualClock,
) {
    let guard = locker.try_lock("k", 1, Some(HOUR)).unwrap().unwrap();
    clock.set(start() - HOUR);
    // A renewal sets the expiry to now + ttl on the current clock.
    assert!(guard.renew(10 * SEC).unwrap());
    assert_eq!(guard.expires_at(), Some(start() - HOUR + 10 * SEC));
    clock.set(start());
    assert!(!locker.exists("k").unwrap());
    assert!(!guard.check().unwrap());
    assert_eq!(guard.lost(), Some(LeaseLost::Expired));
}

#[test]
fn fences_grow_whatever_the_clock_does() {
    on_each_locker!(fences_grow_whatever_the_clock_does_on);
}

fn fences_grow_whatever_the_clock_does_on<L: LeaseLocker<u32> + CleanableLocker<u32>>(
    locker: &L,
    clock: &ManualClock,
) {
    let mut last = 0;
    for step in [HOUR, SEC, 3 * HOUR] {
        let guard = locker.try_lock("k", 1, Some(SEC)).unwrap().unwrap();
        assert!(guard.fence() > last);
        last = guard.fence();
        drop(guard);
        clock.set(start() - step);
    }
}

#[test]
fn clocks_before_the_epoch_or_past_the_last_expiry_do_not_panic() {
    on_each_locker!(clocks_before_the_epoch_or_past_the_last_expiry_do_not_panic_on);
}

fn clocks_before_the_epoch_or_past_the_last_expiry_do_not_panic_on<
    L: LeaseLocker<u32> + CleanableLocker<u32>,
>(
    locker: &L,
    clock: &ManualClock,
) {
    assert!(locker.acquire("forever", LockValue::new(1)).unwrap());
    for now in [
        UNIX_EPOCH - 10 * HOUR,
        UNIX_EPOCH,
        latest_expiry(),
        latest_expiry() + 1000 * HOUR,
    ] {
        clock.set(now);
        // A lock without expiry is live at any time.
        assert!(locker.exists("forever").unwrap());
        assert_eq!(locker.cleanup().unwrap(), 0);
        // A TTL from a clock outside the storable range is refused or
        // capped, never wrapped around.
        match locker.try_lock("ttl", 2, Some(SEC)) {
            Ok(Some(guard)) => {
                let at = guard.expires_at().unwrap();
                assert!(at >= UNIX_EPOCH && at <= latest_expiry(), "{at:?}");
                assert!(guard.unlock().is_ok());
            }
            Ok(None) => {}
            Err(e) => assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}"),
        }
        match locker.acquire("ttl", LockValue::new(3).with_ttl(HOUR)) {
            Ok(_) => assert!(locker.release("ttl").is_ok()),
            Err(e) => assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}"),
        }
    }
}

#[test]
fn a_kept_alive_lease_reports_its_loss_after_a_forward_jump() {
    on_each_locker!(a_kept_alive_lease_reports_its_loss_after_a_forward_jump_on);
}

fn a_kept_alive_lease_reports_its_loss_after_a_forward_jump_on<L>(locker: &L, clock: &ManualClock)
where
    L: LeaseLocker<u32> + CleanableLocker<u32> + Clone + Send + Sync + 'static,
{
    let mut guard = locker.try_lock("k", 1, Some(60 * SEC)).unwrap().unwrap();
    guard.keep_alive(Duration::from_millis(5)).unwrap();
    clock.advance(HOUR);
    // The keeper's next renewal finds the lease expired by the clock. The
    // wait is a bound, not a measurement.
    assert_eq!(
        guard.wait_lost(Duration::from_secs(30)),
        Some(LeaseLost::Expired)
    );
    assert!(!locker.exists("k").unwrap());
}
