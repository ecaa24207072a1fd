//! Job helpers: run a job only once at a time per key, at most once per
//! window, or never overlapping with another run of the same key.
//!
//! The helpers accept any [`Locker`], as the job queues whose lockers this
//! crate's contract comes from accept theirs, and do the most the locker
//! allows. A locker that grants leases (its [`Locker::lease_locker`] says
//! so; every locker of this crate does) runs the job under a
//! [`LockGuard`](crate::LockGuard): the lock has a fence, waits are served in
//! arrival order, a TTL is renewed while the job runs, a duplicate never
//! releases the running job's lock, and a crashed job's lock is free at once.
//! Any other locker is driven through its five calls: the key is taken with
//! [`acquire`](Locker::acquire) under a random token, waits poll with
//! back-off, there is no fence, a TTL is not renewed, and a crashed job's lock
//! stays until its TTL ends (forever without one).
//!
//! Either way the job gets a [`JobLease`]: its key, its fence if any, and
//! [`check`](JobLease::check) to see that the lock is still its own. The
//! lock carries `T::default()` as its value, and a job that panics releases
//! its lock before the panic goes on.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::error::Result;
use crate::guard::{
    LeaseLocker, LeaseLost, LockGuard, RawLeaseLocker, check_ttl, random_token, random_u64,
};
use crate::locker::Locker;
use crate::value::{LockValue, expiry_after};

/// The guard of a lease locker, as the job helpers hold it.
type SharedGuard<T> = LockGuard<Arc<dyn RawLeaseLocker<T> + Send + Sync>, T>;

/// The lock a job helper holds while its job runs, as the job sees it.
///
/// ```
/// use hostlock::{with_unique, MemoryLocker, Outcome};
///
/// let locker: MemoryLocker<()> = MemoryLocker::new();
/// let outcome = with_unique(&locker, "export", None, |lease| {
///     assert_eq!(lease.key(), "export");
///     assert!(lease.check().unwrap());
///     lease.fence() // MemoryLocker grants leases: there is a fence
/// })?;
/// assert!(matches!(outcome, Outcome::Ran(Some(_))));
/// # Ok::<(), hostlock::Error>(())
/// ```
pub struct JobLease<'a, T> {
    held: Held<'a, T>,
}

enum Held<'a, T> {
    Lease(SharedGuard<T>),
    Plain {
        locker: &'a dyn Locker<T>,
        key: String,
        token: String,
        expires_at: Option<SystemTime>,
    },
}

impl<T> std::fmt::Debug for JobLease<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobLease")
            .field("key", &self.key())
            .field("fence", &self.fence())
            .field("expires_at", &self.expires_at())
            .finish_non_exhaustive()
    }
}

impl<T> JobLease<'_, T> {
    /// The key the job holds.
    pub fn key(&self) -> &str {
        match &self.held {
            Held::Lease(guard) => guard.key(),
            Held::Plain { key, .. } => key,
        }
    }

    /// The lock's owner token: random, and the job's alone.
    pub fn token(&self) -> &str {
        match &self.held {
            Held::Lease(guard) => guard.token(),
            Held::Plain { token, .. } => token,
        }
    }

    /// The lock's fencing token, greater than every fence handed out before
    /// for this key: pass it with the writes the job makes, so that a store
    /// can refuse those of a holder whose lease has passed. `None` with a
    /// locker that grants no leases.
    pub fn fence(&self) -> Option<u64> {
        match &self.held {
            Held::Lease(guard) => Some(guard.fence()),
            Held::Plain { .. } => None,
        }
    }

    /// When the lock expires, as it stands (a renewed lease moves it);
    /// `None` if it never does.
    pub fn expires_at(&self) -> Option<SystemTime> {
        match &self.held {
            Held::Lease(guard) => guard.expires_at(),
            Held::Plain { expires_at, .. } => *expires_at,
        }
    }

    /// Asks the locker whether the lock is still the job's own: live, with
    /// the job's token.
    ///
    /// # Errors
    /// A storage error.
    pub fn check(&self) -> Result<bool> {
        match &self.held {
            Held::Lease(guard) => guard.check(),
            Held::Plain {
                locker, key, token, ..
            } => holds(*locker, key, token),
        }
    }

    /// Why the lease was lost, if the locker has noticed: a lease locker's
    /// keep-alive or [`check`](Self::check) notices. Always `None` with a
    /// locker that grants no leases; ask [`check`](Self::check) instead.
    pub fn lost(&self) -> Option<LeaseLost> {
        match &self.held {
            Held::Lease(guard) => guard.lost(),
            Held::Plain { .. } => None,
        }
    }
}

/// Whether the live lock under `key` carries `token`.
fn holds<T>(locker: &dyn Locker<T>, key: &str, token: &str) -> Result<bool> {
    Ok(locker
        .get(key)?
        .is_some_and(|lock| lock.token.as_deref() == Some(token)))
}

/// Releases a plain locker's lock if it still carries `token`. Between the
/// look and the release the lock could expire and be taken by another; a
/// locker that grants leases releases in one step instead.
fn release_own<T>(locker: &dyn Locker<T>, key: &str, token: &str) -> Result<bool> {
    if holds(locker, key, token)? {
        locker.release(key)
    } else {
        Ok(false)
    }
}

/// Takes `key` on a plain locker for `ttl` under a fresh token, if free.
fn acquire_plain<'a, T: Default>(
    locker: &'a dyn Locker<T>,
    key: &str,
    ttl: Option<Duration>,
) -> Result<Option<JobLease<'a, T>>> {
    let token = random_token();
    let mut lock = LockValue::new(T::default()).with_token(token.clone());
    if let Some(ttl) = ttl {
        lock = lock.expiring_at(expiry_after(locker.now(), ttl));
    }
    let expires_at = lock.expires_at;
    if !locker.acquire(key, lock)? {
        return Ok(None);
    }
    Ok(Some(JobLease {
        held: Held::Plain {
            locker,
            key: key.to_owned(),
            token,
            expires_at,
        },
    }))
}

/// Runs `job`; a plain locker's lock is released if the job panics, before
/// the panic goes on (a guard releases its own as it unwinds).
fn run<T, R>(lease: &JobLease<'_, T>, job: impl FnOnce(&JobLease<'_, T>) -> R) -> R {
    match panic::catch_unwind(AssertUnwindSafe(|| job(lease))) {
        Ok(output) => output,
        Err(panic) => {
            if let Held::Plain {
                locker, key, token, ..
            } = &lease.held
            {
                let _ = release_own(*locker, key, token);
            }
            panic::resume_unwind(panic)
        }
    }
}

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
/// With `ttl: None` the key is held until the job ends (with a lease
/// locker, also until its process dies); with a TTL, at most that long. A
/// duplicate returns [`Outcome::Skipped`] at once.
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
/// assert!(matches!(outcome, Outcome::Ran(Ok(Some(_)))));
/// # Ok::<(), hostlock::Error>(())
/// ```
///
/// # Errors
/// An invalid key, a zero `ttl`, or a storage error while taking the key.
/// Releasing it afterwards reports no error: a lock not released expires,
/// or (with a lease locker) is freed with its holder's session.
pub fn with_unique<L, T, R>(
    locker: &L,
    key: &str,
    ttl: Option<Duration>,
    job: impl FnOnce(&JobLease<'_, T>) -> R,
) -> Result<Outcome<R>>
where
    L: Locker<T>,
    T: Default + Send + Sync + 'static,
{
    check_ttl(ttl)?;
    let Some(lease) = take(locker, key, ttl)? else {
        return Ok(Outcome::Skipped);
    };
    let output = run(&lease, job);
    release(lease);
    Ok(Outcome::Ran(output))
}

/// Takes `key` if it is free right now: under a guard if `locker` grants
/// leases, by `acquire` otherwise.
fn take<'a, L, T>(
    locker: &'a L,
    key: &str,
    ttl: Option<Duration>,
) -> Result<Option<JobLease<'a, T>>>
where
    L: Locker<T>,
    T: Default + Send + Sync + 'static,
{
    match locker.lease_locker() {
        Some(leases) => Ok(leases
            .try_lock(key, T::default(), ttl)?
            .map(|guard| JobLease {
                held: Held::Lease(guard),
            })),
        None => acquire_plain(locker, key, ttl),
    }
}

/// Gives the key back after the job. Errors are not reported: a lock not
/// released expires, or is freed with its holder's session.
fn release<T>(lease: JobLease<'_, T>) {
    match lease.held {
        Held::Lease(guard) => drop(guard),
        Held::Plain {
            locker, key, token, ..
        } => {
            let _ = release_own(locker, &key, &token);
        }
    }
}

/// Runs `job` at most once per `window` for `key`: unless a run started
/// within the window before, or is running. The key stays held for `window`
/// after the job ends, also when the job fails or panics, and also past the
/// process's exit.
///
/// With a lease locker the key is bound to its holder while the job runs,
/// so a process that dies mid-run frees it at once, and the window is set in
/// one step when the job ends. With a plain locker the key is held with no
/// expiry while the job runs (a process that dies mid-run leaves it held
/// until someone force-releases it), and the window is set after the job by
/// releasing the key and taking it again: a run that starts in between goes
/// ahead, and holds the key instead.
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
    job: impl FnOnce(&JobLease<'_, T>) -> R,
) -> Result<Outcome<R>>
where
    L: Locker<T>,
    T: Default + Send + Sync + 'static,
{
    let Some(lease) = take(locker, key, None)? else {
        return Ok(Outcome::Skipped);
    };
    let ran = panic::catch_unwind(AssertUnwindSafe(|| job(&lease)));
    let held = hold_window(lease, window);
    match ran {
        Ok(output) => held.map(|()| Outcome::Ran(output)),
        Err(panic) => panic::resume_unwind(panic),
    }
}

/// Leaves the key held for `window` from now.
fn hold_window<T: Default>(lease: JobLease<'_, T>, window: Duration) -> Result<()> {
    match lease.held {
        Held::Lease(guard) => guard.hold_for(window).map(drop),
        Held::Plain {
            locker, key, token, ..
        } => {
            if !release_own(locker, &key, &token)? || window.is_zero() {
                return Ok(());
            }
            let lock = LockValue::new(T::default())
                .with_token(token)
                .expiring_at(expiry_after(locker.now(), window));
            // Refused only if another run took the key in between: it holds
            // it now.
            locker.acquire(&key, lock).map(drop)
        }
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

    #[cfg(feature = "tokio")]
    pub(crate) fn ttl_limit(&self) -> Option<Duration> {
        self.ttl
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn wait_limit(&self) -> Option<Duration> {
        self.wait
    }
}

/// Runs `job` once no other run of `key` is running: waits its turn, runs,
/// and releases.
///
/// With a lease locker, waits are served in arrival order (across threads
/// and processes), and a TTL is renewed in the background (every third of
/// it) while the job runs. With a plain locker the helper polls, with
/// back-off from 1 ms to 50 ms, in no order, and a TTL is not renewed: a job
/// that runs past it may overlap the next run.
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
/// An invalid key, a zero TTL, or a storage error while waiting for or
/// taking the key.
pub fn without_overlap<L, T, R>(
    locker: &L,
    key: &str,
    options: OverlapOptions,
    job: impl FnOnce(&JobLease<'_, T>) -> R,
) -> Result<Outcome<R>>
where
    L: Locker<T>,
    T: Default + Clone + Send + Sync + 'static,
{
    check_ttl(options.ttl)?;
    let lease = match locker.lease_locker() {
        Some(leases) => wait_lease(&leases, key, options)?,
        None => wait_plain(locker, key, options)?,
    };
    let Some(lease) = lease else {
        return Ok(Outcome::Contended);
    };
    let output = run(&lease, job);
    release(lease);
    Ok(Outcome::Ran(output))
}

/// Waits for `key` in the queue of a lease locker, and keeps the lease
/// alive once it is granted.
fn wait_lease<T: Default + Clone + Send + Sync + 'static>(
    leases: &Arc<dyn RawLeaseLocker<T> + Send + Sync>,
    key: &str,
    options: OverlapOptions,
) -> Result<Option<JobLease<'static, T>>> {
    let value = T::default();
    let guard = match options.wait {
        Some(wait) => leases.try_lock_for(key, value, options.ttl, wait)?,
        None => Some(leases.lock(key, value, options.ttl)?),
    };
    let Some(mut guard) = guard else {
        return Ok(None);
    };
    if let Some(ttl) = options.ttl {
        let interval = (ttl / 3).max(Duration::from_millis(1));
        guard.keep_alive(interval)?;
    }
    Ok(Some(JobLease {
        held: Held::Lease(guard),
    }))
}

/// The longest pause between two tries of a plain locker.
const MAX_POLL: Duration = Duration::from_millis(50);

/// Waits for `key` on a plain locker by trying again after a pause that
/// doubles up to [`MAX_POLL`], with jitter so that waiters spread out.
fn wait_plain<'a, T: Default>(
    locker: &'a dyn Locker<T>,
    key: &str,
    options: OverlapOptions,
) -> Result<Option<JobLease<'a, T>>> {
    // A wait too long to reach is a wait without end.
    let deadline = options
        .wait
        .and_then(|wait| Instant::now().checked_add(wait));
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(lease) = acquire_plain(locker, key, options.ttl)? {
            return Ok(Some(lease));
        }
        let jittered = pause / 2 + pause.mul_f64((random_u64() % 1024) as f64 / 2048.0);
        let nap = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                jittered.min(left)
            }
            None => jittered,
        };
        thread::sleep(nap);
        pause = (pause * 2).min(MAX_POLL);
    }
}
