//! The hostlock traits, each method a thin call into the locker's
//! operations.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hostlock::{
    CleanableLocker, InspectableLocker, Lease, LockInfo, LockValue, Locker, RawLeaseLocker,
    RenewableLocker, Result,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::locker::RedisLocker;

impl<T: Serialize + DeserializeOwned> Locker<T> for RedisLocker<T> {
    fn exists(&self, key: &str) -> Result<bool> {
        self.inner.exists(key)
    }

    fn get(&self, key: &str) -> Result<Option<LockValue<T>>> {
        self.inner.get(key)
    }

    fn acquire(&self, key: &str, lock: LockValue<T>) -> Result<bool> {
        self.inner.acquire(key, &lock)
    }

    fn release(&self, key: &str) -> Result<bool> {
        self.inner.release(key)
    }

    fn force_release(&self, key: &str) -> Result<()> {
        self.inner.force_release(key)
    }

    /// The time on the locker's clock (the one given to the builder), which
    /// judges the expiry of locks.
    fn now(&self) -> SystemTime {
        self.inner.clock_now()
    }

    fn lease_locker(&self) -> Option<Arc<dyn RawLeaseLocker<T> + Send + Sync>>
    where
        T: Send + Sync + 'static,
    {
        Some(Arc::new(self.clone()))
    }
}

impl<T: Serialize + DeserializeOwned> CleanableLocker<T> for RedisLocker<T> {
    /// Removes every lock that expired on the locker's clock, or whose
    /// holder's session ended, and counts them; also drops the waiters that
    /// are gone (not counted).
    fn cleanup(&self) -> Result<usize> {
        self.inner.cleanup()
    }
}

impl<T: Serialize + DeserializeOwned> RenewableLocker<T> for RedisLocker<T> {
    fn touch(&self, key: &str, token: &str, expires_at: SystemTime) -> Result<bool> {
        self.inner.touch(key, token, expires_at)
    }

    fn release_if_owner(&self, key: &str, token: &str) -> Result<bool> {
        self.inner.release_if_owner(key, token)
    }
}

impl<T: Serialize + DeserializeOwned> InspectableLocker<T> for RedisLocker<T> {
    fn info(&self, key: &str) -> Result<Option<LockInfo<T>>> {
        self.inner.info(key)
    }

    fn list(&self, include_expired: bool) -> Result<Vec<Result<LockInfo<T>>>> {
        self.inner.list(include_expired)
    }
}

impl<T: Serialize + DeserializeOwned> RawLeaseLocker<T> for RedisLocker<T> {
    /// Grants the lease bound to this locker's session: it counts as free
    /// once the session ends (the last clone dropped, or the process died
    /// and the session key's TTL ran out on the server).
    fn acquire_lease(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
        token: &str,
        ticket: Option<u64>,
    ) -> Result<Option<Lease>> {
        self.inner.acquire_lease(key, &value, ttl, token, ticket)
    }

    fn detach(&self, key: &str, token: &str, expires_at: Option<SystemTime>) -> Result<bool> {
        self.inner.detach(key, token, expires_at)
    }

    /// A waiter is bound to this locker's session too, and its wait limit
    /// is judged on the server's clock.
    fn enqueue(&self, key: &str, max_wait: Option<Duration>) -> Result<u64> {
        self.inner.enqueue(key, max_wait)
    }

    fn dequeue(&self, key: &str, ticket: u64) -> Result<()> {
        self.inner.dequeue(key, ticket)
    }

    fn waiters(&self, key: &str) -> Result<usize> {
        self.inner.waiters(key)
    }

    /// Polls the server, pausing 2 ms at first and up to 25 ms, and 2 ms
    /// again each time the waiter moves up the queue; a release through this
    /// locker or a clone wakes the wait at once.
    fn wait_for_release(&self, key: &str, ticket: Option<u64>, timeout: Duration) {
        self.inner.wait_for_release(key, ticket, timeout);
    }
}
