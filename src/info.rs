//! What inspection reports about a stored lock.

use std::time::SystemTime;

use crate::error::Result;
use crate::locker::Locker;

/// Everything stored about one lock, for operators and tools.
///
/// ```
/// use hostlock::{InspectableLocker, Locker, LockState, LockValue, MemoryLocker};
///
/// let locker = MemoryLocker::new();
/// locker.acquire("report", LockValue::new("worker-1").with_token("secret"))?;
/// let info = locker.info("report")?.expect("held");
/// assert_eq!(info.value, "worker-1");
/// assert!(info.has_token);
/// assert_eq!(info.state, LockState::Live);
/// assert_eq!(info.holder.pid, std::process::id());
/// # Ok::<(), hostlock::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockInfo<T> {
    /// The key the lock is held under.
    pub key: String,
    /// The holder's value.
    pub value: T,
    /// When the lock expires; `None` if it never does.
    pub expires_at: Option<SystemTime>,
    /// Whether the lock has an owner token. The token itself is not shown:
    /// it is what lets its holder renew and release the lock.
    pub has_token: bool,
    /// The fencing token handed out when the lock was acquired: greater than
    /// every fence handed out before it for this key.
    pub fence: u64,
    /// When the lock was acquired, on the acquiring locker's clock.
    pub acquired_at: SystemTime,
    /// Who acquired it.
    pub holder: Holder,
    /// Whether the lock counts.
    pub state: LockState,
}

impl<T> LockInfo<T> {
    /// What a locker reports about the lock under `key` holding `value`, in
    /// `state`: for implementors of [`InspectableLocker`]. The other fields
    /// start empty (fence 0, no expiry, no token, acquired at the Unix epoch,
    /// no holder known); set those the locker knows.
    ///
    /// ```
    /// use hostlock::{Holder, LockInfo, LockState};
    /// use std::time::{Duration, SystemTime};
    ///
    /// let mut info = LockInfo::new("report".to_owned(), "worker-1", LockState::Live);
    /// info.fence = 42;
    /// info.has_token = true;
    /// info.expires_at = Some(SystemTime::now() + Duration::from_secs(30));
    /// info.holder = Holder::new(std::process::id(), Some(true));
    /// assert_eq!(info.fence, 42);
    /// ```
    pub fn new(key: String, value: T, state: LockState) -> LockInfo<T> {
        LockInfo {
            key,
            value,
            expires_at: None,
            has_token: false,
            fence: 0,
            acquired_at: SystemTime::UNIX_EPOCH,
            holder: Holder::new(0, None),
            state,
        }
    }
}

/// The process that acquired a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// Its process id when it acquired the lock.
    pub pid: u32,
    /// Whether the holder is known to be alive: `Some(true)` while the locker
    /// session that took the lock is open, `Some(false)` once it has ended,
    /// `None` for a lock not bound to a session (its liveness is unknown; it
    /// counts until it expires).
    pub alive: Option<bool>,
}

impl Holder {
    /// The holder `pid`, alive or not as far as the locker knows (`None`: a
    /// lock not bound to a session, whose liveness is unknown).
    pub fn new(pid: u32, alive: Option<bool>) -> Holder {
        Holder { pid, alive }
    }
}

/// Whether a stored lock counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockState {
    /// It holds its key.
    Live,
    /// Its expiry has passed; it counts as free and awaits cleanup.
    Expired,
    /// It was bound to a locker session that has ended (the locker closed or
    /// its process died); it counts as free and awaits cleanup.
    HolderGone,
}

/// A locker that can show what it stores.
pub trait InspectableLocker<T>: Locker<T> {
    /// The entry under `key`, live or expired, or `None` if there is none.
    ///
    /// # Errors
    /// An invalid key, a storage error, or a value that does not decode as `T`.
    fn info(&self, key: &str) -> Result<Option<LockInfo<T>>>;

    /// Every live lock, ordered by key; with `include_expired`, the expired
    /// entries not yet removed as well.
    ///
    /// An entry that cannot be shown is listed as its error, in its place: a
    /// value that does not decode as `T` ([`Error::ValueType`](crate::Error::ValueType),
    /// say, stored by a program of another value type), or a damaged record
    /// ([`Error::Corrupted`](crate::Error::Corrupted)). One such entry does
    /// not hide the others.
    ///
    /// # Errors
    /// A storage error.
    fn list(&self, include_expired: bool) -> Result<Vec<Result<LockInfo<T>>>>;
}
