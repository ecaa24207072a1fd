//! The hostlock traits, each a thin call into one transaction of
//! [`ops`](crate::ops).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hostlock::{
    CleanableLocker, InspectableLocker, Lease, LockInfo, LockState, LockValue, Locker,
    RawLeaseLocker, RenewableLocker, Result,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{after, check_expiry, check_key, check_token, clamp, encode, time_of};
use crate::locker::SqliteLocker;
use crate::ops::Call;

/// The longest a waiter sleeps between two looks at the database: other
/// processes send no notification, so a release by one of them is noticed
/// within this long.
const MAX_POLL: Duration = Duration::from_millis(8);

/// The first pause of a waiter, doubled after each look up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(1);

impl<T: Serialize + DeserializeOwned> Locker<T> for SqliteLocker<T> {
    fn exists(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        self.inner.read(|c| Ok(c.live(key)?.is_some()))
    }

    fn get(&self, key: &str) -> Result<Option<LockValue<T>>> {
        check_key(key)?;
        self.inner.read(|c| match c.live(key)? {
            Some(row) => c.lock_value(row).map(Some),
            None => Ok(None),
        })
    }

    fn acquire(&self, key: &str, lock: LockValue<T>) -> Result<bool> {
        check_key(key)?;
        if let Some(token) = &lock.token {
            check_token(token)?;
        }
        let expires = lock.expires_at.map(check_expiry).transpose()?;
        let value = encode(&lock.value)?;
        self.inner.write(|c| {
            if c.live(key)?.is_some() {
                return Ok(false);
            }
            // A lock already expired is granted and leaves the key free.
            if expires.is_some_and(|at| at < c.now) {
                c.delete(key)?;
            } else {
                c.store(key, &value, expires, lock.token.as_deref(), None)?;
            }
            Ok(true)
        })
    }

    fn release(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        let held = self.inner.write(|c| {
            let Some(row) = c.load(key)? else {
                return Ok(false);
            };
            let live = c.is_live(&row)?;
            c.delete(key)?;
            Ok(live)
        })?;
        self.inner.notify();
        Ok(held)
    }

    fn force_release(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.inner.write(|c| c.delete(key))?;
        self.inner.notify();
        Ok(())
    }

    fn now(&self) -> SystemTime {
        time_of(clamp(self.inner.clock.now()))
    }

    fn lease_locker(&self) -> Option<Arc<dyn RawLeaseLocker<T> + Send + Sync>>
    where
        T: Send + Sync + 'static,
    {
        Some(Arc::new(self.clone()))
    }
}

impl<T: Serialize + DeserializeOwned> CleanableLocker<T> for SqliteLocker<T> {
    /// Removes the expired entries and those bound to a dead or closed
    /// session, and counts them; also removes the dead sessions and the waits
    /// that are gone (not counted). When a look finds nothing to remove, it
    /// writes nothing.
    fn cleanup(&self) -> Result<usize> {
        if !self.inner.read(|c| c.has_litter())? {
            return Ok(0);
        }
        let removed = self.inner.write(|c| c.sweep())?;
        self.inner.notify();
        Ok(removed)
    }
}

impl<T: Serialize + DeserializeOwned> RenewableLocker<T> for SqliteLocker<T> {
    fn touch(&self, key: &str, token: &str, expires_at: SystemTime) -> Result<bool> {
        check_key(key)?;
        check_token(token)?;
        let at = check_expiry(expires_at)?;
        self.inner.write(|c| {
            if at <= c.now {
                return Ok(false);
            }
            match c.live(key)? {
                Some(row) if Call::owned(&row, token) => {
                    c.set_expiry(key, Some(at), false)?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }

    fn release_if_owner(&self, key: &str, token: &str) -> Result<bool> {
        check_key(key)?;
        check_token(token)?;
        let released = self.inner.write(|c| match c.load(key)? {
            Some(row) if Call::owned(&row, token) => {
                let live = c.is_live(&row)?;
                c.delete(key)?;
                Ok(Some(live))
            }
            _ => Ok(None),
        })?;
        if released.is_some() {
            self.inner.notify();
        }
        Ok(released.unwrap_or(false))
    }
}

impl<T: Serialize + DeserializeOwned> InspectableLocker<T> for SqliteLocker<T> {
    fn info(&self, key: &str) -> Result<Option<LockInfo<T>>> {
        check_key(key)?;
        self.inner.read(|c| match c.load(key)? {
            Some(row) => {
                let state = c.state(&row)?;
                c.info(&row, state).map(Some)
            }
            None => Ok(None),
        })
    }

    fn list(&self, include_expired: bool) -> Result<Vec<Result<LockInfo<T>>>> {
        self.inner.read(|c| {
            let mut out = Vec::new();
            for row in c.all()? {
                let state = c.state(&row)?;
                if include_expired || state == LockState::Live {
                    out.push(c.info(&row, state));
                }
            }
            Ok(out)
        })
    }
}

impl<T: Serialize + DeserializeOwned> RawLeaseLocker<T> for SqliteLocker<T> {
    fn acquire_lease(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
        token: &str,
        ticket: Option<u64>,
    ) -> Result<Option<Lease>> {
        check_key(key)?;
        check_token(token)?;
        let value = encode(&value)?;
        self.inner.write(|c| {
            if c.live(key)?.is_some() || !c.turn(key, ticket)? {
                return Ok(None);
            }
            let expires = ttl.map(|ttl| after(c.now, ttl));
            let fence = c.store(key, &value, expires, Some(token), Some(c.session))?;
            Ok(Some(Lease::new(fence, expires.map(time_of))))
        })
    }

    fn detach(&self, key: &str, token: &str, expires_at: Option<SystemTime>) -> Result<bool> {
        check_key(key)?;
        check_token(token)?;
        let at = expires_at.map(check_expiry).transpose()?;
        self.inner.write(|c| {
            if at.is_some_and(|at| at <= c.now) {
                return Ok(false);
            }
            match c.live(key)? {
                Some(row) if Call::owned(&row, token) => {
                    c.set_expiry(key, at, true)?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }

    fn enqueue(&self, key: &str, max_wait: Option<Duration>) -> Result<u64> {
        check_key(key)?;
        self.inner.write(|c| c.enqueue(key, max_wait))
    }

    fn dequeue(&self, key: &str, ticket: u64) -> Result<()> {
        check_key(key)?;
        let ticket = i64::try_from(ticket).unwrap_or(i64::MAX);
        self.inner.write(|c| c.dequeue(key, ticket))?;
        self.inner.notify();
        Ok(())
    }

    fn waiters(&self, key: &str) -> Result<usize> {
        check_key(key)?;
        self.inner.read(|c| c.waiters(key))
    }

    /// Looks at the database with a back-off from 1 ms to 8 ms (reads, which
    /// do not hold up writers), and returns once the key may be this
    /// waiter's. The back-off starts again from 1 ms each time the waiter
    /// moves up the queue, so that the next in line looks often. A release
    /// through a handle of this process wakes the wait at once. An error
    /// returns too: the next attempt reports it.
    fn wait_for_release(&self, key: &str, ticket: Option<u64>, timeout: Duration) {
        let until = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let mut pause = FIRST_POLL;
        let mut was_ahead = None;
        loop {
            let seen = self.inner.releases();
            let look = self
                .inner
                .read(|c| Ok((c.may_take(key, ticket)?, c.ahead(key, ticket)?)));
            let ahead = match look {
                Ok((false, ahead)) => ahead,
                _ => return,
            };
            // Waiters ahead were served or left: the turn is nearer.
            if was_ahead.is_some_and(|before| ahead < before) {
                pause = FIRST_POLL;
            }
            was_ahead = Some(ahead);
            let now = Instant::now();
            if now >= until {
                return;
            }
            self.inner.wait_release(seen, until.min(now + pause));
            pause = (pause * 2).min(MAX_POLL);
        }
    }
}
