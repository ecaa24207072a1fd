//! Job helpers: run a job only once at a time per key, at most once per
//! window, or never overlapping with another run of the same key.
//!
//! Every helper takes the lock through a guard, so a duplicate never releases
//! the running job's lock, a crashed job's lock is free at once (its session
//! ends), and a job that panics releases its lock before the panic goes on.
//! The job gets the guard: its [fence](LockGuard::fence) for the writes it
//! makes, and [`check`](LockGuard::check) / [`lost`](LockGuard::lost) to see
//! that the lease still holds. The lock carries `T::default()` as its value.

use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use crate::error::Result;
use crate::guard::{LeaseLocker, LockGuard};

/// What a job helper did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a job that did not run is reported here"]
pub enum Outcome<R> {
    /// The job ran and returned this.
    Ran(R),
    /// Another run holds the key (or, for a window, ran within it): the job
    /// did not run.
    Skipped,
    /// The key stayed taken for as long as the helper was told to wait: the
    /// job did not run.
    Contended,
}

impl<R> Outcome<R> {
    /// The job's output, if it ran.
    pub fn ran(self) -> Option<R> {
        match self {
            Outcome::Ran(output) => Some(output),
            Outcome::Skipped | Outcome::Contended => None,
        }
    }
}

/// Runs `job` unless another run holds `key`, holding the key while it runs.
///
/// With `ttl: None` the key is held until the job ends (or its process dies);
/// with a TTL, at most that long. A duplicate returns [`Outcome::Skipped`]
/// at once.
///
/// ```
/// use hostlock::{with_unique, MemoryLocker, Outcome};
///
/// let locker: MemoryLocker<String> = MemoryLocker::new();
/// let outcome = with_unique(&locker, "import", None, |lease| {
///     // A duplicate arriving now is skipped.
///     let again = with_unique(&locker, "import", None, |_| unreachable!())?;
///     assert_eq!(again, Outcome::Skipped);
///     Ok::<_, hostlock::Error>(lease.fence())
/// })?;
/// assert!(matches!(outcome, Outcome::Ran(Ok(_))));
/// # Ok::<(), hostlock::Error>(())
/// ```
///
/// # Errors
/// An invalid key, or a storage error while taking the key. Releasing it
/// afterwards reports no error: a lock not released expires, or is freed
/// with its holder's session.
pub fn with_unique<L, T, R>(
    locker: &L,
    key: &str,
    ttl: Option<Duration>,
    job: impl FnOnce(&LockGuard<L, T>) -> R,
) -> Result<Outcome<R>>
where
    L: LeaseLocker<T>,
    T: Default,
{
    match locker.try_lock(key, T::default(), ttl)? {
        Some(guard) => Ok(Outcome::Ran(job(&guard))),
        None => Ok(Outcome::Skipped),
    }
}

/// Runs `job` at most once per `window` for `key`: unless a run started
/// within the window before, or is running. The key stays held for `window`
/// after the job ends, also when the job fails or panics, and also past the
/// process's exit. While the job runs the key is bound to its holder, so a
/// process that dies mid-run frees it at once.
///
/// ```
/// use hostlock::{with_unique_window, MemoryLocker, Outcome};
/// use std::time::Duration;
///
/// let locker: MemoryLocker<()> = MemoryLocker::new();
/// let hour = Duration::from_secs(3600);
/// assert_eq!(with_unique_window(&locker, "digest", hour, |_| 1)?, Outcome::Ran(1));
/// assert_eq!(with_unique_window(&locker, "digest", hour, |_| 2)?, Outcome::Skipped);
/// # Ok::<(), hostlock::Error>(())
/// ```
///
/// # Errors
/// An invalid key, or a storage error while taking the key or setting its
/// window.
pub fn with_unique_window<L, T, R>(
    locker: &L,
    key: &str,
    window: Duration,
    job: impl FnOnce(&LockGuard<L, T>) -> R,
) -> Result<Outcome<R>>
where
    L: LeaseLocker<T>,
    T: Default,
{
    let Some(guard) = locker.try_lock(key, T::default(), None)? else {
        return Ok(Outcome::Skipped);
    };
    let ran = panic::catch_unwind(AssertUnwindSafe(|| job(&guard)));
    let held = guard.hold_for(window);
    match ran {
        Ok(output) => held.map(|_| Outcome::Ran(output)),
        Err(panic) => panic::resume_unwind(panic),
    }
}

/// How [`without_overlap`] waits and holds its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverlapOptions {
    ttl: Option<Duration>,
    wait: Option<Duration>,
}

impl Default for OverlapOptions {
    fn default() -> OverlapOptions {
        OverlapOptions::new()
    }
}

impl OverlapOptions {
    /// Wait as long as it takes; hold the key with no TTL (until the job ends
    /// or its process dies).
    pub fn new() -> OverlapOptions {
        OverlapOptions {
            ttl: None,
            wait: None,
        }
    }

    /// Hold the key with a lease of `ttl`, renewed in the background (every
    /// third of it) while the job runs.
    pub fn ttl(mut self, ttl: Duration) -> OverlapOptions {
        self.ttl = Some(ttl);
        self
    }

    /// Wait at most `wait` for the key, then return [`Outcome::Contended`].
    pub fn wait(mut self, wait: Duration) -> OverlapOptions {
        self.wait = Some(wait);
        self
    }

    /// Do not wait: return [`Outcome::Contended`] if the key is taken.
    pub fn try_once(self) -> OverlapOptions {
        self.wait(Duration::ZERO)
    }
}

/// Runs `job` once no other run of `key` is running: waits its turn (in
/// arrival order, across threads and processes), runs, and releases.
///
/// ```
/// use hostlock::{without_overlap, MemoryLocker, OverlapOptions, Outcome};
/// use std::time::Duration;
///
/// let locker: MemoryLocker<()> = MemoryLocker::new();
/// let options = OverlapOptions::new().ttl(Duration::from_secs(60));
/// let outcome = without_overlap(&locker, "rebuild-index", options, |lease| {
///     assert!(lease.check().unwrap());
///     "done"
/// })?;
/// assert_eq!(outcome, Outcome::Ran("done"));
/// # Ok::<(), hostlock::Error>(())
/// ```
///
/// # Errors
/// An invalid key, or a storage error while waiting for or taking the key.
pub fn without_overlap<L, T, R>(
    locker: &L,
    key: &str,
    options: OverlapOptions,
    job: impl FnOnce(&LockGuard<L, T>) -> R,
) -> Result<Outcome<R>>
where
    L: LeaseLocker<T> + Clone + Send + 'static,
    T: Default + Clone + 'static,
{
    let value = T::default();
    let guard = match options.wait {
        Some(wait) => locker.try_lock_for(key, value, options.ttl, wait)?,
        None => Some(locker.lock(key, value, options.ttl)?),
    };
    let Some(mut guard) = guard else {
        return Ok(Outcome::Contended);
    };
    if let Some(ttl) = options.ttl {
        let interval = (ttl / 3).max(Duration::from_millis(1));
        guard.keep_alive(interval)?;
    }
    Ok(Outcome::Ran(job(&guard)))
}
