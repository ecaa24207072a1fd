//! `MemoryLocker` for async code: every call takes the locker's mutex for
//! a moment and answers at once; a wait is woken by each release, and looks
//! again every few milliseconds for expiries.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use super::{EXPIRY_POLL, MemoryLocker};
use crate::aio::AsyncRawLeaseLocker;
use crate::error::Result;
use crate::guard::{Lease, RawLeaseLocker};
use crate::info::{InspectableLocker, LockInfo};
use crate::locker::RenewableLocker;

impl<T> AsyncRawLeaseLocker<T> for MemoryLocker<T>
where
    T: Clone + Send + 'static,
{
    fn acquire_lease(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
        token: &str,
        ticket: Option<u64>,
    ) -> impl Future<Output = Result<Option<Lease>>> + Send {
        std::future::ready(RawLeaseLocker::acquire_lease(
            self, key, value, ttl, token, ticket,
        ))
    }

    fn touch(
        &self,
        key: &str,
        token: &str,
        expires_at: SystemTime,
    ) -> impl Future<Output = Result<bool>> + Send {
        std::future::ready(RenewableLocker::touch(self, key, token, expires_at))
    }

    fn release_if_owner(
        &self,
        key: &str,
        token: &str,
    ) -> impl Future<Output = Result<bool>> + Send {
        std::future::ready(RenewableLocker::release_if_owner(self, key, token))
    }

    fn detach(
        &self,
        key: &str,
        token: &str,
        expires_at: Option<SystemTime>,
    ) -> impl Future<Output = Result<bool>> + Send {
        std::future::ready(RawLeaseLocker::detach(self, key, token, expires_at))
    }

    fn info(&self, key: &str) -> impl Future<Output = Result<Option<LockInfo<T>>>> + Send {
        std::future::ready(InspectableLocker::info(self, key))
    }

    fn enqueue(
        &self,
        key: &str,
        max_wait: Option<Duration>,
    ) -> impl Future<Output = Result<u64>> + Send {
        std::future::ready(RawLeaseLocker::enqueue(self, key, max_wait))
    }

    fn dequeue(&self, key: &str, ticket: u64) -> impl Future<Output = Result<()>> + Send {
        std::future::ready(RawLeaseLocker::dequeue(self, key, ticket))
    }

    fn wait_for_release(
        &self,
        key: &str,
        ticket: Option<u64>,
        timeout: Duration,
    ) -> impl Future<Output = ()> + Send {
        let key = key.to_owned();
        let deadline = Instant::now().checked_add(timeout);
        // An expiry is no notification: look again every few ms.
        self.shared.released_signal.wait_until(
            deadline,
            || EXPIRY_POLL,
            move || {
                let mut state = self.state();
                state.live(&key, self.clock_now()).is_none() && state.turn(&key, ticket)
            },
        )
    }

    fn now(&self) -> SystemTime {
        self.clock_now()
    }

    fn release_in_background(&self, key: &str, token: &str) {
        let _ = RenewableLocker::release_if_owner(self, key, token);
    }

    fn dequeue_in_background(&self, key: &str, ticket: u64) {
        let _ = RawLeaseLocker::dequeue(self, key, ticket);
    }

    fn detach_in_background(&self, key: &str, token: &str, expires_at: Option<SystemTime>) {
        let _ = RawLeaseLocker::detach(self, key, token, expires_at);
    }
}
