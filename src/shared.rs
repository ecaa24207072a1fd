//! Every locker trait for `Arc<L>`, `L` unsized included, so that a
//! `Arc<dyn RawLeaseLocker<T> + Send + Sync>` (what
//! [`Locker::lease_locker`] returns) is a locker of its own, with guards.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::Result;
use crate::guard::{Lease, RawLeaseLocker};
use crate::info::{InspectableLocker, LockInfo};
use crate::locker::{CleanableLocker, Locker, RenewableLocker};
use crate::value::LockValue;

impl<T, L: Locker<T> + ?Sized> Locker<T> for Arc<L> {
    fn exists(&self, key: &str) -> Result<bool> {
        (**self).exists(key)
    }

    fn get(&self, key: &str) -> Result<Option<LockValue<T>>> {
        (**self).get(key)
    }

    fn acquire(&self, key: &str, lock: LockValue<T>) -> Result<bool> {
        (**self).acquire(key, lock)
    }

    fn release(&self, key: &str) -> Result<bool> {
        (**self).release(key)
    }

    fn force_release(&self, key: &str) -> Result<()> {
        (**self).force_release(key)
    }

    fn now(&self) -> SystemTime {
        (**self).now()
    }

    fn lease_locker(&self) -> Option<Arc<dyn RawLeaseLocker<T> + Send + Sync>>
    where
        T: Send + Sync + 'static,
    {
        (**self).lease_locker()
    }
}

impl<T, L: CleanableLocker<T> + ?Sized> CleanableLocker<T> for Arc<L> {
    fn cleanup(&self) -> Result<usize> {
        (**self).cleanup()
    }
}

impl<T, L: RenewableLocker<T> + ?Sized> RenewableLocker<T> for Arc<L> {
    fn touch(&self, key: &str, token: &str, expires_at: SystemTime) -> Result<bool> {
        (**self).touch(key, token, expires_at)
    }

    fn release_if_owner(&self, key: &str, token: &str) -> Result<bool> {
        (**self).release_if_owner(key, token)
    }
}

impl<T, L: InspectableLocker<T> + ?Sized> InspectableLocker<T> for Arc<L> {
    fn info(&self, key: &str) -> Result<Option<LockInfo<T>>> {
        (**self).info(key)
    }

    fn list(&self, include_expired: bool) -> Result<Vec<Result<LockInfo<T>>>> {
        (**self).list(include_expired)
    }
}

impl<T, L: RawLeaseLocker<T> + ?Sized> RawLeaseLocker<T> for Arc<L> {
    fn acquire_lease(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
        token: &str,
        ticket: Option<u64>,
    ) -> Result<Option<Lease>> {
        (**self).acquire_lease(key, value, ttl, token, ticket)
    }

    fn detach(&self, key: &str, token: &str, expires_at: Option<SystemTime>) -> Result<bool> {
        (**self).detach(key, token, expires_at)
    }

    fn enqueue(&self, key: &str, max_wait: Option<Duration>) -> Result<u64> {
        (**self).enqueue(key, max_wait)
    }

    fn enqueue_lease(
        &self,
        key: &str,
        max_wait: Option<Duration>,
        value: &T,
        ttl: Option<Duration>,
        token: &str,
    ) -> Result<u64> {
        (**self).enqueue_lease(key, max_wait, value, ttl, token)
    }

    fn dequeue(&self, key: &str, ticket: u64) -> Result<()> {
        (**self).dequeue(key, ticket)
    }

    fn waiters(&self, key: &str) -> Result<usize> {
        (**self).waiters(key)
    }

    fn wait_for_release(&self, key: &str, ticket: Option<u64>, timeout: Duration) {
        (**self).wait_for_release(key, ticket, timeout)
    }
}
