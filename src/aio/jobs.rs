//! The job helpers for async code: the same three as the blocking ones,
//! taking async closures, on an [`AsyncLocker`].

use std::time::Duration;

use super::{AsyncGuard, AsyncLocker, AsyncRawLeaseLocker};
use crate::error::Result;
use crate::jobs::{Outcome, OverlapOptions};

/// Runs `job` unless another run holds `key`, holding the key while it
/// runs, as [`with_unique`](crate::with_unique) does. The key is released
/// (and the release awaited) when the job ends; if the job panics, or the
/// future is dropped, it is released without waiting.
///
/// ```
/// use hostlock::{with_unique_async, AsyncLocker, MemoryLocker, Outcome};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let locker = AsyncLocker::new(MemoryLocker::<()>::new());
/// let outcome = with_unique_async(&locker, "import", None, async |lease| {
///     let again = with_unique_async(&locker, "import", None, async |_| ()).await?;
///     assert_eq!(again, Outcome::Skipped);
///     Ok::<_, hostlock::Error>(lease.fence())
/// }).await?;
/// assert!(matches!(outcome, Outcome::Ran(Ok(_))));
/// # Ok::<(), hostlock::Error>(())
/// # }).unwrap();
/// ```
///
/// # Errors
/// An invalid key, a zero `ttl`, or a storage error while taking the key.
pub async fn with_unique_async<L, T, R>(
    locker: &AsyncLocker<L>,
    key: &str,
    ttl: Option<Duration>,
    job: impl AsyncFnOnce(&AsyncGuard<L, T>) -> R,
) -> Result<Outcome<R>>
where
    L: AsyncRawLeaseLocker<T> + Clone,
    T: Default,
{
    let Some(guard) = locker.try_lock(key, T::default(), ttl).await? else {
        return Ok(Outcome::Skipped);
    };
    let output = job(&guard).await;
    // A lock not released expires, or is freed with its holder's session.
    let _ = guard.unlock().await;
    Ok(Outcome::Ran(output))
}

/// Runs `job` at most once per `window` for `key`, as
/// [`with_unique_window`](crate::with_unique_window) does: the key stays
/// held for `window` after the job ends, also when the job panics or its
/// future is dropped.
///
/// # Errors
/// An invalid key, or a storage error while taking the key or setting its
/// window.
pub async fn with_unique_window_async<L, T, R>(
    locker: &AsyncLocker<L>,
    key: &str,
    window: Duration,
    job: impl AsyncFnOnce(&AsyncGuard<L, T>) -> R,
) -> Result<Outcome<R>>
where
    L: AsyncRawLeaseLocker<T> + Clone,
    T: Default,
{
    let Some(guard) = locker.try_lock(key, T::default(), None).await? else {
        return Ok(Outcome::Skipped);
    };
    let mut held = Window {
        guard: Some(guard),
        window,
    };
    let output = match &held.guard {
        Some(guard) => job(guard).await,
        None => unreachable!("the guard is taken only below"),
    };
    let guard = held.guard.take().map(|guard| guard.hold_for(window));
    match guard {
        Some(hold) => hold.await.map(|_| Outcome::Ran(output)),
        None => Ok(Outcome::Ran(output)),
    }
}

/// A guard whose drop (on a panic or a cancellation of the job) keeps the
/// key for the window instead of releasing it.
struct Window<L: AsyncRawLeaseLocker<T>, T> {
    guard: Option<AsyncGuard<L, T>>,
    window: Duration,
}

impl<L: AsyncRawLeaseLocker<T>, T> Drop for Window<L, T> {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            guard.hold_on_drop(self.window);
        }
    }
}

/// Runs `job` once no other run of `key` is running, as
/// [`without_overlap`](crate::without_overlap) does: waits its turn in
/// arrival order, renews a TTL in a task while the job runs, and releases.
///
/// ```
/// use hostlock::{without_overlap_async, AsyncLocker, MemoryLocker, OverlapOptions, Outcome};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let locker = AsyncLocker::new(MemoryLocker::<()>::new());
/// let options = OverlapOptions::new().ttl(Duration::from_secs(60));
/// let outcome = without_overlap_async(&locker, "rebuild", options, async |lease| {
///     lease.check().await.unwrap()
/// }).await?;
/// assert_eq!(outcome, Outcome::Ran(true));
/// # Ok::<(), hostlock::Error>(())
/// # }).unwrap();
/// ```
///
/// # Errors
/// An invalid key, a zero TTL, no runtime for the keep-alive task, or a
/// storage error while waiting for or taking the key.
pub async fn without_overlap_async<L, T, R>(
    locker: &AsyncLocker<L>,
    key: &str,
    options: OverlapOptions,
    job: impl AsyncFnOnce(&AsyncGuard<L, T>) -> R,
) -> Result<Outcome<R>>
where
    L: AsyncRawLeaseLocker<T> + Clone,
    T: Default + Clone + 'static,
{
    let value = T::default();
    let guard = match options.wait_limit() {
        Some(wait) => {
            locker
                .try_lock_for(key, value, options.ttl_limit(), wait)
                .await?
        }
        None => Some(locker.lock(key, value, options.ttl_limit()).await?),
    };
    let Some(mut guard) = guard else {
        return Ok(Outcome::Contended);
    };
    if let Some(ttl) = options.ttl_limit() {
        let interval = (ttl / 3).max(Duration::from_millis(1));
        guard.keep_alive(interval)?;
    }
    let output = job(&guard).await;
    let _ = guard.unlock().await;
    Ok(Outcome::Ran(output))
}
