//! The rows of guards and fair waits (Q1 to Q10), for a locker that
//! implements [`RawLeaseLocker`]: the guards it gets through
//! [`LeaseLocker`], behind a trait object so that the checks stay written
//! over [`Locker`](crate::Locker) like the others.

use std::thread;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::guard::{LeaseLocker, LeaseLost, LockGuard, RawLeaseLocker};
use crate::value::LockValue;

use super::rows::Fixture;

/// A guard, whatever its locker.
pub(super) trait Held: Send {
    fn token(&self) -> &str;
    fn fence(&self) -> u64;
    fn renew(&self, ttl: Duration) -> Result<bool>;
    fn lost(&self) -> Option<LeaseLost>;
    fn wait_lost(&self, timeout: Duration) -> Option<LeaseLost>;
    fn keep_alive(&mut self, interval: Duration) -> Result<()>;
    fn unlock(self: Box<Self>) -> Result<bool>;
    fn hold_for(self: Box<Self>, ttl: Duration) -> Result<bool>;
}

impl<L> Held for LockGuard<L, String>
where
    L: RawLeaseLocker<String> + Clone + Send + 'static,
{
    fn token(&self) -> &str {
        LockGuard::token(self)
    }
    fn fence(&self) -> u64 {
        LockGuard::fence(self)
    }
    fn renew(&self, ttl: Duration) -> Result<bool> {
        LockGuard::renew(self, ttl)
    }
    fn lost(&self) -> Option<LeaseLost> {
        LockGuard::lost(self)
    }
    fn wait_lost(&self, timeout: Duration) -> Option<LeaseLost> {
        LockGuard::wait_lost(self, timeout)
    }
    fn keep_alive(&mut self, interval: Duration) -> Result<()> {
        LockGuard::keep_alive(self, interval)
    }
    fn unlock(self: Box<Self>) -> Result<bool> {
        LockGuard::unlock(*self)
    }
    fn hold_for(self: Box<Self>, ttl: Duration) -> Result<bool> {
        LockGuard::hold_for(*self, ttl)
    }
}

/// A guard, if one was granted.
type Granted = Result<Option<Box<dyn Held>>>;

/// The lease operations of a locker under test.
pub(super) struct LeaseOps<L> {
    pub(super) try_lock: fn(&L, &str, &str, Option<Duration>) -> Granted,
    pub(super) try_lock_for: fn(&L, &str, &str, Option<Duration>, Duration) -> Granted,
    pub(super) enqueue: fn(&L, &str, Option<Duration>) -> Result<u64>,
    pub(super) dequeue: fn(&L, &str, u64) -> Result<()>,
    pub(super) waiters: fn(&L, &str) -> Result<usize>,
}

impl<L> Clone for LeaseOps<L> {
    fn clone(&self) -> LeaseOps<L> {
        *self
    }
}

impl<L> Copy for LeaseOps<L> {}

impl<L> LeaseOps<L>
where
    L: LeaseLocker<String> + Send + 'static,
{
    pub(super) fn of() -> LeaseOps<L> {
        fn boxed<G: Held + 'static>(guard: Option<G>) -> Option<Box<dyn Held>> {
            guard.map(|g| Box::new(g) as Box<dyn Held>)
        }
        LeaseOps {
            try_lock: |l: &L, k, v, ttl| Ok(boxed(l.try_lock(k, v.to_owned(), ttl)?)),
            try_lock_for: |l: &L, k, v, ttl, wait| {
                Ok(boxed(l.try_lock_for(k, v.to_owned(), ttl, wait)?))
            },
            enqueue: |l: &L, k, wait| l.enqueue(k, wait),
            dequeue: |l: &L, k, t| l.dequeue(k, t),
            waiters: |l: &L, k| l.waiters(k),
        }
    }
}

const SEC: Duration = Duration::from_secs(1);

fn guard<L>(f: &Fixture<L>, key: &str, ttl: Option<Duration>) -> Box<dyn Held> {
    f.try_lock(key, "v", ttl)
        .expect("try_lock")
        .expect("the key is free")
}

/// Q1: a free key is taken with a fresh token and a new fence, and the TTL
/// on the locker's clock; a zero TTL is invalid.
pub(super) fn q1_try_lock_free<L: crate::Locker<String>>(f: &Fixture<L>) {
    let first = guard(f, "k", Some(10 * SEC));
    assert!(!first.token().is_empty());
    let got = f.locker().get("k").unwrap().expect("held");
    assert_eq!(got.expires_at, Some(f.now() + 10 * SEC));
    let second = guard(f, "j", None);
    assert_ne!(first.token(), second.token(), "a fresh token each time");
    assert!(second.fence() > first.fence(), "a new fence each time");
    assert!(
        matches!(
            f.try_lock("z", "v", Some(Duration::ZERO))
                .map(|g| g.is_some()),
            Err(Error::InvalidArgument { .. })
        ),
        "a zero TTL is invalid"
    );
}

/// Q2: a held key, or a free one with waiters, is refused to a newcomer.
pub(super) fn q2_try_lock_refused<L: crate::Locker<String>>(f: &Fixture<L>) {
    let held = guard(f, "k", None);
    assert!(f.try_lock("k", "w", None).unwrap().is_none());
    drop(held);
    let ticket = f.enqueue("k", None).unwrap();
    assert!(
        f.try_lock("k", "w", None).unwrap().is_none(),
        "a newcomer never jumps the queue"
    );
    f.dequeue("k", ticket).unwrap();
    assert!(f.try_lock("k", "w", None).unwrap().is_some());
}

/// Q3: a waiter is served once the key is released; a zero wait does not
/// queue.
pub(super) fn q3_try_lock_for_waits<L: crate::Locker<String> + Sync>(f: &Fixture<L>) {
    let held = guard(f, "k", None);
    assert!(
        f.try_lock_for("k", "w", None, Duration::ZERO)
            .unwrap()
            .is_none()
    );
    assert_eq!(f.waiters("k").unwrap(), 0, "a zero wait does not queue");
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            f.try_lock_for("k", "w", None, 30 * SEC)
                .map(|g| g.is_some())
        });
        while f.waiters("k").unwrap() == 0 {
            thread::sleep(Duration::from_millis(1));
        }
        assert!(held.unlock().unwrap());
        assert!(
            waiter.join().expect("the waiter").unwrap(),
            "served after the release"
        );
    });
    assert_eq!(f.waiters("k").unwrap(), 0);
}

/// Q4: a waiter still queued past its wait counts as gone.
pub(super) fn q4_waiter_past_its_wait<L: crate::Locker<String>>(f: &Fixture<L>) {
    let _ticket = f.enqueue("k", Some(Duration::from_millis(30))).unwrap();
    assert!(f.try_lock("k", "w", None).unwrap().is_none());
    thread::sleep(Duration::from_millis(60));
    assert!(
        f.try_lock("k", "w", None).unwrap().is_some(),
        "the waiter is gone"
    );
}

/// Q5: a guard's unlock releases its lock.
pub(super) fn q5_unlock_releases<L: crate::Locker<String>>(f: &Fixture<L>) {
    let held = guard(f, "k", Some(10 * SEC));
    assert!(held.unlock().unwrap());
    assert!(!f.locker().exists("k").unwrap());
    drop(guard(f, "j", None));
    assert!(!f.locker().exists("j").unwrap(), "a dropped guard releases");
}

/// Q6: a stale guard releases nothing of the new holder's.
pub(super) fn q6_stale_guard<L: crate::Locker<String>>(f: &Fixture<L>) {
    let old = guard(f, "k", Some(10 * SEC));
    f.advance(11 * SEC);
    let new = guard(f, "k", Some(10 * SEC));
    assert!(!old.unlock().unwrap(), "the stale guard's lock was taken");
    assert!(f.locker().exists("k").unwrap(), "the new holder keeps it");
    assert!(new.unlock().unwrap());
}

/// Q7: renewal moves the expiry; a zero TTL is invalid.
pub(super) fn q7_renew<L: crate::Locker<String>>(f: &Fixture<L>) {
    let held = guard(f, "k", Some(10 * SEC));
    f.advance(5 * SEC);
    assert!(held.renew(10 * SEC).unwrap());
    let got = f.locker().get("k").unwrap().expect("held");
    assert_eq!(got.expires_at, Some(f.now() + 10 * SEC));
    assert!(matches!(
        held.renew(Duration::ZERO),
        Err(Error::InvalidArgument { .. })
    ));
}

/// Q8: a renewal of a lost lock fails and says why.
pub(super) fn q8_renew_lost<L: crate::Locker<String>>(f: &Fixture<L>) {
    let held = guard(f, "k", Some(10 * SEC));
    f.locker().force_release("k").unwrap();
    assert!(!held.renew(10 * SEC).unwrap());
    assert_eq!(held.lost(), Some(LeaseLost::Taken));
    let expired = guard(f, "j", Some(10 * SEC));
    f.advance(11 * SEC);
    assert!(!expired.renew(10 * SEC).unwrap());
    assert_eq!(expired.lost(), Some(LeaseLost::Expired));
}

/// Q9: a keep-alive notices a lost lock.
pub(super) fn q9_keep_alive_notices<L: crate::Locker<String>>(f: &Fixture<L>) {
    let mut held = guard(f, "k", None);
    held.keep_alive(Duration::from_millis(5)).unwrap();
    f.locker().force_release("k").unwrap();
    assert_eq!(held.wait_lost(30 * SEC), Some(LeaseLost::Taken));
}

/// Q10: `hold_for` keeps the lock past its guard; a zero hold releases.
pub(super) fn q10_hold_for<L: crate::Locker<String>>(f: &Fixture<L>) {
    let held = guard(f, "k", None);
    assert!(held.hold_for(60 * SEC).unwrap());
    assert!(f.locker().exists("k").unwrap(), "kept past the guard");
    f.advance(61 * SEC);
    assert!(!f.locker().exists("k").unwrap(), "until the hold ends");
    let zero = guard(f, "j", None);
    assert!(zero.hold_for(Duration::ZERO).unwrap());
    assert!(!f.locker().exists("j").unwrap(), "a zero hold releases");
    assert!(
        f.locker()
            .acquire("j", LockValue::new("x".to_owned()))
            .unwrap()
    );
}
