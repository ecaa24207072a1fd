//! Awaitable waits, guards and job helpers for tokio programs (feature
//! `tokio`).
//!
//! [`AsyncLocker`] wraps a locker that implements [`AsyncRawLeaseLocker`]:
//! [`FileLocker`](crate::FileLocker) and [`MemoryLocker`](crate::MemoryLocker)
//! do natively, and [`Blocking`] adapts any other lease locker (the SQLite
//! and Redis lockers of the sibling crates, or your own). No call blocks a
//! runtime thread:
//!
//! - a `FileLocker`'s writes go to its handle's commit thread, and the task
//!   is woken with the answer, so the writes of many tasks share commits as
//!   those of many threads do; its reads are served from the engine's cache
//!   on the task's thread;
//! - a `MemoryLocker` takes its mutex for a moment, as any async code may;
//! - [`Blocking`] runs each call on tokio's blocking pool.
//!
//! A wait is cancelled by dropping its future (under `tokio::time::timeout`
//! or `select!`): the waiter leaves the queue at once, and a lock granted to
//! a dropped future is released. [`AsyncGuard`]s are `Send + 'static`, so
//! they live across `.await`s; dropping one releases its lock without
//! waiting.
//!
//! ```
//! use hostlock::{AsyncLocker, FileLocker};
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let dir = tempfile::tempdir()?;
//! let locker = AsyncLocker::new(FileLocker::<String>::open(dir.path().join("locks.redb"))?);
//! let guard = locker.lock("nightly", "worker-1".to_owned(), None).await?;
//! let waiting = locker.try_lock_for("nightly", "worker-2".to_owned(), None, Duration::from_millis(20));
//! assert!(waiting.await?.is_none(), "held by the first guard");
//! guard.unlock().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::error::Result;
use crate::guard::{Lease, check_ttl, random_token};
use crate::info::LockInfo;

mod blocking;
mod guard;
mod jobs;
mod rooms;

pub use self::blocking::Blocking;
pub use self::guard::AsyncGuard;
pub use self::jobs::{with_unique_async, with_unique_window_async, without_overlap_async};

/// The primitives an async locker implements, the awaitable counterparts of
/// [`RawLeaseLocker`](crate::RawLeaseLocker)'s: what [`AsyncLocker`] and
/// [`AsyncGuard`] are built on.
///
/// The futures must not block the thread that polls them. A future dropped
/// before it completes must leave nothing behind: a lease it may have been
/// granted is released, a ticket it may have been given leaves the queue.
/// The `*_in_background` methods start an operation and return at once,
/// without blocking: they are what a guard or a wait dropped in async code
/// calls.
pub trait AsyncRawLeaseLocker<T>: Send + Sync + 'static {
    /// As [`RawLeaseLocker::acquire_lease`](crate::RawLeaseLocker::acquire_lease).
    fn acquire_lease(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
        token: &str,
        ticket: Option<u64>,
    ) -> impl Future<Output = Result<Option<Lease>>> + Send;

    /// As [`RenewableLocker::touch`](crate::RenewableLocker::touch).
    fn touch(
        &self,
        key: &str,
        token: &str,
        expires_at: SystemTime,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// As [`RenewableLocker::release_if_owner`](crate::RenewableLocker::release_if_owner).
    fn release_if_owner(&self, key: &str, token: &str)
    -> impl Future<Output = Result<bool>> + Send;

    /// As [`RawLeaseLocker::detach`](crate::RawLeaseLocker::detach).
    fn detach(
        &self,
        key: &str,
        token: &str,
        expires_at: Option<SystemTime>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// As [`InspectableLocker::info`](crate::InspectableLocker::info).
    fn info(&self, key: &str) -> impl Future<Output = Result<Option<LockInfo<T>>>> + Send;

    /// As [`RawLeaseLocker::enqueue`](crate::RawLeaseLocker::enqueue).
    fn enqueue(
        &self,
        key: &str,
        max_wait: Option<Duration>,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// As [`RawLeaseLocker::enqueue_lease`](crate::RawLeaseLocker::enqueue_lease):
    /// joins the queue leaving the lease this waiter will ask for, so that a
    /// release may hand it the key. The default forgets the request and
    /// calls [`enqueue`](Self::enqueue).
    fn enqueue_lease(
        &self,
        key: &str,
        max_wait: Option<Duration>,
        value: &T,
        ttl: Option<Duration>,
        token: &str,
    ) -> impl Future<Output = Result<u64>> + Send {
        let _ = (value, ttl, token);
        self.enqueue(key, max_wait)
    }

    /// As [`RawLeaseLocker::dequeue`](crate::RawLeaseLocker::dequeue).
    fn dequeue(&self, key: &str, ticket: u64) -> impl Future<Output = Result<()>> + Send;

    /// As [`RawLeaseLocker::wait_for_release`](crate::RawLeaseLocker::wait_for_release):
    /// resolves once `key` may be free for `ticket`, or after `timeout`.
    fn wait_for_release(
        &self,
        key: &str,
        ticket: Option<u64>,
        timeout: Duration,
    ) -> impl Future<Output = ()> + Send;

    /// The time on the locker's clock.
    fn now(&self) -> SystemTime;

    /// Starts releasing the lock under `key` if its token is `token`, and
    /// returns at once.
    fn release_in_background(&self, key: &str, token: &str);

    /// Starts taking `ticket` out of `key`'s queue, and returns at once.
    fn dequeue_in_background(&self, key: &str, ticket: u64);

    /// Starts a [`detach`](Self::detach), and returns at once.
    fn detach_in_background(&self, key: &str, token: &str, expires_at: Option<SystemTime>);
}

/// A lease locker for async code: the awaitable `try_lock`,
/// `try_lock_for` and `lock`, over any [`AsyncRawLeaseLocker`]. Cheap to
/// clone when the locker is.
///
/// ```
/// use hostlock::{AsyncLocker, MemoryLocker};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let locker = AsyncLocker::new(MemoryLocker::new());
/// let guard = locker.try_lock("report", 1, None).await?.expect("free");
/// assert!(locker.try_lock("report", 2, None).await?.is_none());
/// drop(guard); // released without blocking the runtime
/// # Ok::<(), hostlock::Error>(())
/// # }).unwrap();
/// ```
///
/// Of the tasks waiting for one key through one `AsyncLocker` (or its
/// clones), only the first in line asks the locker whether its turn has
/// come; the others sleep until the tasks ahead of them are served. Waiting
/// tasks cost no storage reads.
#[derive(Debug, Clone)]
pub struct AsyncLocker<L> {
    locker: L,
    rooms: Arc<rooms::Rooms>,
}

impl<L> AsyncLocker<L> {
    /// Awaitable locks over `locker`.
    pub fn new(locker: L) -> AsyncLocker<L> {
        AsyncLocker {
            locker,
            rooms: Arc::default(),
        }
    }

    /// The locker underneath, for its other calls.
    pub fn inner(&self) -> &L {
        &self.locker
    }

    /// Takes `key` if it is free right now (and no one waits for it).
    ///
    /// # Errors
    /// An invalid key, a zero TTL, or a storage error.
    pub async fn try_lock<T>(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
    ) -> Result<Option<AsyncGuard<L, T>>>
    where
        L: AsyncRawLeaseLocker<T> + Clone,
    {
        check_ttl(ttl)?;
        let token = random_token();
        let lease = self
            .locker
            .acquire_lease(key, value, ttl, &token, None)
            .await?;
        Ok(lease.map(|lease| AsyncGuard::new(self.locker.clone(), key, token, ttl, lease)))
    }

    /// Takes `key`, waiting up to `wait` for it, in arrival order with every
    /// other waiter (threads, tasks and processes). Dropping the future
    /// leaves the queue at once, and releases a lock it was granted.
    ///
    /// # Errors
    /// An invalid key, a zero TTL, or a storage error.
    pub async fn try_lock_for<T>(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
        wait: Duration,
    ) -> Result<Option<AsyncGuard<L, T>>>
    where
        L: AsyncRawLeaseLocker<T> + Clone,
        T: Clone,
    {
        check_ttl(ttl)?;
        if let Some(guard) = self.try_lock(key, value.clone(), ttl).await? {
            return Ok(Some(guard));
        }
        if wait.is_zero() {
            return Ok(None);
        }
        let deadline = Instant::now().checked_add(wait);
        let limit = deadline.is_some().then_some(wait);
        let token = random_token();
        let number = self
            .locker
            .enqueue_lease(key, limit, &value, ttl, &token)
            .await?;
        let ticket = Ticket {
            locker: &self.locker,
            rooms: &self.rooms,
            key,
            number,
            value: std::marker::PhantomData,
        };
        self.rooms.enter(key, ticket.number);
        loop {
            let left = |deadline: Option<Instant>| match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            // Behind another task of this room: its turn comes first.
            let first = self.rooms.first(key, ticket.number);
            if tokio::time::timeout(left(deadline), first).await.is_err() {
                return Ok(None);
            }
            let lease = self
                .locker
                .acquire_lease(key, value.clone(), ttl, &token, Some(ticket.number))
                .await?;
            if let Some(lease) = lease {
                // Granted: it left the queue, and leaves the room.
                self.rooms.leave(key, ticket.number);
                std::mem::forget(ticket);
                let guard = AsyncGuard::new(self.locker.clone(), key, token, ttl, lease);
                return Ok(Some(guard));
            }
            let left = left(deadline);
            if left.is_zero() {
                return Ok(None);
            }
            self.locker
                .wait_for_release(key, Some(ticket.number), left)
                .await;
        }
    }

    /// Takes `key`, waiting as long as it takes.
    ///
    /// # Errors
    /// An invalid key, a zero TTL, or a storage error.
    pub async fn lock<T>(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
    ) -> Result<AsyncGuard<L, T>>
    where
        L: AsyncRawLeaseLocker<T> + Clone,
        T: Clone,
    {
        loop {
            if let Some(guard) = self
                .try_lock_for(key, value.clone(), ttl, Duration::MAX)
                .await?
            {
                return Ok(guard);
            }
        }
    }
}

/// A place in a key's queue, left without waiting when dropped: when the
/// wait gives up, fails, or is cancelled.
struct Ticket<'a, L: AsyncRawLeaseLocker<T>, T> {
    locker: &'a L,
    rooms: &'a rooms::Rooms,
    key: &'a str,
    number: u64,
    value: std::marker::PhantomData<fn(T)>,
}

impl<L: AsyncRawLeaseLocker<T>, T> Drop for Ticket<'_, L, T> {
    fn drop(&mut self) {
        self.locker.dequeue_in_background(self.key, self.number);
        self.rooms.leave(self.key, self.number);
    }
}
