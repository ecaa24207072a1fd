//! Named, expiring locks shared by the threads and processes of one host,
//! kept in one embedded file, with no server to run.
//!
//! A lock lives under a string key and carries a value of your type, an
//! optional expiry and an optional owner token. Whoever acquires a free key
//! holds it until they release it or it expires; everyone else is told
//! `false`.
//!
//! # Lockers
//!
//! - [`FileLocker`]: the locks live in one file (a [redb] database) that every
//!   process of the host may open at the same time. Changes are durable when a
//!   call returns, and locks survive restarts.
//! - [`MemoryLocker`]: the same contract inside one process.
//!
//! Both implement [`Locker`] (exists, get, acquire, release, force_release),
//! [`CleanableLocker`] (remove expired locks), [`RenewableLocker`]
//! (owner-checked touch and release), [`InspectableLocker`] (info, list) and
//! [`LeaseLocker`] (guards and fair waits). `docs/semantics.md` states the contract
//! as a table.
//! With the `conformance` feature, `hostlock::conformance` checks a locker of
//! your own against that table, row by row.
//!
//! # Run a job only once at a time
//!
//! ```
//! use hostlock::{FileLocker, Locker, LockValue, RenewableLocker};
//! use std::time::Duration;
//!
//! let dir = tempfile::tempdir()?;
//! let locker: FileLocker<String> = FileLocker::open(dir.path().join("jobs.redb"))?;
//!
//! let mine = LockValue::new("worker-1".to_string())
//!     .with_ttl(Duration::from_secs(300))
//!     .with_token("worker-1-run-42");
//! if locker.acquire("send-invoices", mine)? {
//!     // ... run the job, renewing the lease if it runs long:
//!     let later = std::time::SystemTime::now() + Duration::from_secs(300);
//!     assert!(locker.touch("send-invoices", "worker-1-run-42", later)?);
//!     // Release only if the lock is still ours.
//!     assert!(locker.release_if_owner("send-invoices", "worker-1-run-42")?);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guards
//!
//! [`LeaseLocker`] (implemented by both lockers) hands out [`LockGuard`]s:
//! a lock with a fresh random owner token and a fencing token, released
//! (owner-checked) when the guard drops, renewable in the background, and
//! reporting a lost lease. Blocking waits are served in arrival order.
//!
//! ```
//! use hostlock::{FileLocker, LeaseLocker};
//! use std::time::Duration;
//!
//! let dir = tempfile::tempdir()?;
//! let locker: FileLocker<u32> = FileLocker::open(dir.path().join("locks.redb"))?;
//! let ttl = Some(Duration::from_secs(30));
//! let mut guard = locker.try_lock("nightly", 1, ttl)?.expect("free");
//! guard.keep_alive(Duration::from_secs(10))?;
//! assert!(locker.try_lock_for("nightly", 2, ttl, Duration::from_millis(10))?.is_none());
//! let first = guard.fence();
//! drop(guard);
//! let next = locker.lock("nightly", 2, ttl)?;
//! assert!(next.fence() > first);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Expiry under test
//!
//! Lockers read the time from a [`Clock`]. Tests inject a [`ManualClock`] and
//! move it, instead of sleeping until a lock expires:
//!
//! ```
//! use hostlock::{CleanableLocker, Locker, LockValue, ManualClock, MemoryLocker};
//! use std::time::Duration;
//!
//! let clock = ManualClock::default();
//! let locker = MemoryLocker::with_clock(clock.clone());
//! let lease = LockValue::new(()).expiring_at(clock.now() + Duration::from_secs(10));
//! assert!(locker.acquire("k", lease)?);
//!
//! clock.advance(Duration::from_secs(11));
//! assert!(!locker.exists("k")?); // expired: as if there were no lock
//! assert_eq!(locker.cleanup()?, 1);
//! # use hostlock::Clock;
//! # Ok::<(), hostlock::Error>(())
//! ```
//!
//! # Errors
//!
//! Every fallible call returns [`Result`], whose [`Error`] names the file, key
//! or argument at fault. Contention is never an error.
//!
//! [redb]: https://docs.rs/redb

#![forbid(unsafe_code)]

#[cfg(feature = "tokio")]
mod aio;
mod clock;
mod error;
#[cfg(feature = "fault-injection")]
mod faults;
mod file;
mod guard;
mod info;
mod jobs;
mod locker;
mod memory;
mod shared;
#[cfg(feature = "tokio")]
mod signal;
mod value;

#[cfg(feature = "conformance")]
pub mod conformance;

/// Entry points for the fuzz targets in `fuzz/`; not part of the public API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(feature = "tokio")]
pub use crate::aio::{
    AsyncGuard, AsyncLocker, AsyncRawLeaseLocker, Blocking, with_unique_async,
    with_unique_window_async, without_overlap_async,
};
pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::error::{Error, Result};
#[cfg(feature = "fault-injection")]
pub use crate::faults::{Fault, Faults};
pub use crate::file::{
    DEFAULT_BUSY_TIMEOUT, DEFAULT_CACHE_SIZE, DEFAULT_CLEANUP_INTERVAL, DEFAULT_MODE, Durability,
    FileLocker, FileLockerBuilder, IntegrityReport,
};
pub use crate::guard::{Lease, LeaseLocker, LeaseLost, LockGuard, RawLeaseLocker};
pub use crate::info::{Holder, InspectableLocker, LockInfo, LockState};
pub use crate::jobs::{
    JobLease, Outcome, OverlapOptions, with_unique, with_unique_window, without_overlap,
};
pub use crate::locker::{CleanableLocker, Locker, RenewableLocker};
pub use crate::memory::MemoryLocker;
pub use crate::value::{LockValue, MAX_KEY_LEN, MAX_TOKEN_LEN, MAX_VALUE_LEN, latest_expiry};
