//! The locker traits and their contract.
//!
//! `docs/semantics.md` gives the contract as a table, one row per operation
//! and state; the conformance kit (`src/conformance/`) checks every row, and
//! `tests/conformance.rs` runs it against every locker.

use std::sync::Arc;
use std::time::SystemTime;

use crate::error::Result;
use crate::guard::RawLeaseLocker;
use crate::value::LockValue;

/// A store of named locks.
///
/// A lock is *live* at time `now` when its expiry is `None` or not before
/// `now`, and *expired* otherwise. An expired lock behaves exactly as if there
/// were no lock.
///
/// Every method validates its key: an empty key or one longer than
/// [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes is
/// [`Error::InvalidArgument`](crate::Error::InvalidArgument).
///
/// Code written against the trait works with every locker:
///
/// ```
/// use hostlock::{Locker, LockValue, MemoryLocker};
///
/// fn run_once(locker: &impl Locker<String>, job: &str) -> hostlock::Result<bool> {
///     if !locker.acquire(job, LockValue::new("me".to_string()))? {
///         return Ok(false); // someone else runs it
///     }
///     // ... run the job ...
///     locker.release(job)?;
///     Ok(true)
/// }
///
/// assert!(run_once(&MemoryLocker::new(), "reindex")?);
/// # Ok::<(), hostlock::Error>(())
/// ```
pub trait Locker<T> {
    /// Whether a live lock is held under `key`.
    ///
    /// # Errors
    /// An invalid key, or a storage error.
    fn exists(&self, key: &str) -> Result<bool>;

    /// The live lock under `key`, exactly as it was acquired, or `None`.
    ///
    /// # Errors
    /// An invalid key, a storage error, or a stored value that does not
    /// decode as a `T`.
    fn get(&self, key: &str) -> Result<Option<LockValue<T>>>;

    /// Takes the lock under `key` if no live lock is held there.
    ///
    /// Returns `Ok(true)` when the lock was taken (replacing any expired entry)
    /// and `Ok(false)`, changing nothing, when a live lock is held. The check
    /// and the write are one atomic step across threads and processes.
    /// A lock that is already expired when acquired is granted and leaves the
    /// key free.
    ///
    /// # Errors
    /// An invalid key, an empty token, an expiry outside the storable range,
    /// or a storage error.
    fn acquire(&self, key: &str, lock: LockValue<T>) -> Result<bool>;

    /// Removes the entry under `key`. Returns `Ok(true)` only when it was a
    /// live lock.
    ///
    /// This checks no owner: see
    /// [`RenewableLocker::release_if_owner`] for the release a holder should use.
    ///
    /// # Errors
    /// An invalid key, or a storage error.
    fn release(&self, key: &str) -> Result<bool>;

    /// Removes whatever entry is under `key`, live or expired; `Ok(())` also
    /// when there was none.
    ///
    /// # Errors
    /// An invalid key, or a storage error.
    fn force_release(&self, key: &str) -> Result<()>;

    /// The time on the locker's clock: what it judges expiry by. The system
    /// clock by default; a locker that reads an injected
    /// [`Clock`](crate::Clock) returns that clock's time. Guards and the job
    /// helpers compute expiries from it.
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    /// This locker's lease primitives, if it grants leases; `None` by
    /// default.
    ///
    /// The job helpers ([`with_unique`](crate::with_unique) and the others)
    /// accept any `Locker`. Through this method they find out whether it
    /// can do more than the five calls above: with a lease locker they run
    /// the job under a [`LockGuard`](crate::LockGuard) (a fence, fair waits,
    /// keep-alive, a lock freed when its holder dies); without one they take
    /// the key with [`acquire`](Self::acquire) and wait by polling. A locker
    /// that implements [`RawLeaseLocker`] returns `Some(Arc::new(self.clone()))`.
    ///
    /// ```
    /// use hostlock::{Locker, MemoryLocker};
    ///
    /// let locker: MemoryLocker<()> = MemoryLocker::new();
    /// assert!(locker.lease_locker().is_some());
    /// ```
    fn lease_locker(&self) -> Option<Arc<dyn RawLeaseLocker<T> + Send + Sync>>
    where
        T: Send + Sync + 'static,
    {
        None
    }
}

/// A locker that can drop its expired entries.
///
/// ```
/// use hostlock::{CleanableLocker, Locker, LockValue, ManualClock, MemoryLocker};
/// use std::time::Duration;
///
/// let clock = ManualClock::default();
/// let locker = MemoryLocker::with_clock(clock.clone());
/// let soon = clock.now() + Duration::from_secs(1);
/// locker.acquire("a", LockValue::new(1).expiring_at(soon))?;
/// locker.acquire("b", LockValue::new(2))?;
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(locker.cleanup()?, 1); // "a" expired; "b" never expires
/// # use hostlock::Clock;
/// # Ok::<(), hostlock::Error>(())
/// ```
pub trait CleanableLocker<T>: Locker<T> {
    /// Removes every expired entry and returns how many were removed. Live and
    /// never-expiring locks are never touched.
    ///
    /// # Errors
    /// A storage error.
    fn cleanup(&self) -> Result<usize>;
}

/// A locker whose holders prove ownership with the lock's token.
///
/// A holder keeps its lease alive with [`touch`](Self::touch) and gives it
/// up with [`release_if_owner`](Self::release_if_owner); neither can affect a
/// lock that someone else took after the holder's lease expired.
///
/// ```
/// use hostlock::{Locker, LockValue, MemoryLocker, RenewableLocker};
/// use std::time::{Duration, SystemTime};
///
/// let locker = MemoryLocker::new();
/// let lease = LockValue::new(()).with_ttl(Duration::from_secs(10)).with_token("mine");
/// assert!(locker.acquire("k", lease)?);
/// let later = SystemTime::now() + Duration::from_secs(60);
/// assert!(!locker.touch("k", "not-mine", later)?);
/// assert!(locker.touch("k", "mine", later)?);
/// assert!(!locker.release_if_owner("k", "not-mine")?);
/// assert!(locker.release_if_owner("k", "mine")?);
/// # Ok::<(), hostlock::Error>(())
/// ```
pub trait RenewableLocker<T>: Locker<T> {
    /// Moves the expiry of the live lock under `key` to `expires_at`, if that
    /// lock's token is exactly `token` and `expires_at` is after now.
    ///
    /// Returns `Ok(false)`, changing nothing, otherwise: no lock, an expired
    /// lock, another token, a lock without a token, or a new expiry that is
    /// not in the future.
    ///
    /// # Errors
    /// An invalid key, an empty token, an expiry outside the storable range,
    /// or a storage error.
    fn touch(&self, key: &str, token: &str, expires_at: SystemTime) -> Result<bool>;

    /// Removes the lock under `key` if its token is exactly `token`.
    ///
    /// Returns `Ok(true)` when a live lock was removed. An expired entry with
    /// that token is removed too, but returns `Ok(false)`: the lease had been
    /// lost. A lock with another token (or none) is left alone.
    ///
    /// # Errors
    /// An invalid key, an empty token, or a storage error.
    fn release_if_owner(&self, key: &str, token: &str) -> Result<bool>;
}
