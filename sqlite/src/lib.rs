//! Named, expiring locks in one SQLite database file, shared by the threads
//! and processes that open it: a [hostlock] locker over [rusqlite].
//!
//! [`SqliteLocker`] keeps the whole hostlock contract (the table of
//! `docs/semantics.md`, checked row by row by `hostlock::conformance`):
//! plain locks with an expiry and an owner token, cleanup, renewal,
//! inspection, and leases: guards with a fencing token, fair (first come,
//! first served) waits across processes, and leases freed when their
//! holder's process dies.
//!
//! ```
//! use hostlock::{LeaseLocker, Locker, LockValue};
//! use hostlock_sqlite::SqliteLocker;
//! use std::time::Duration;
//!
//! let dir = tempfile::tempdir()?;
//! let locker: SqliteLocker<String> = SqliteLocker::open(dir.path().join("locks.db"))?;
//!
//! // A plain lock: taken once, until released or expired.
//! assert!(locker.acquire("nightly", LockValue::new("host-a".to_owned()).with_ttl(Duration::from_secs(60)))?);
//! assert!(!locker.acquire("nightly", LockValue::new("host-b".to_owned()))?);
//! assert!(locker.release("nightly")?);
//!
//! // A guard: released when dropped, freed if its process dies, with a fence.
//! let guard = locker.try_lock("report", "worker-1".to_owned(), Some(Duration::from_secs(30)))?
//!     .expect("free");
//! assert!(locker.try_lock("report", "worker-2".to_owned(), None)?.is_none());
//! let fence = guard.fence();
//! drop(guard);
//! let next = locker.lock("report", "worker-2".to_owned(), None)?;
//! assert!(next.fence() > fence);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The job helpers of hostlock run on it:
//!
//! ```
//! use hostlock::{Outcome, with_unique};
//! use hostlock_sqlite::SqliteLocker;
//!
//! let dir = tempfile::tempdir()?;
//! let locker: SqliteLocker<String> = SqliteLocker::open(dir.path().join("locks.db"))?;
//! let outcome = with_unique(&locker, "import", None, |lease| lease.fence())?;
//! assert!(matches!(outcome, Outcome::Ran(_)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Faults of the usual SQLite lock table, avoided
//!
//! The lock table that a job queue's "write your own locker" example sketches
//! over SQLite gets five things wrong; this crate does not:
//!
//! - It stored a lock that never expires as expiry zero, and then found it
//!   expired. Here a lock without expiry is stored as `NULL`, and lives until
//!   released.
//! - It read in a deferred transaction and wrote later, so two processes
//!   could both find a key free and both take it. Here every call that may
//!   change a lock runs in `BEGIN IMMEDIATE`: it holds the database's write
//!   lock from its first read to its commit.
//! - It swallowed every error, so a busy or broken database looked like a
//!   lock held by someone else. Here every error is returned as a
//!   [`hostlock::Error`] naming the database file: [`Error::Busy`] past the
//!   busy timeout, [`Error::NotLockFile`] for a file that is not a SQLite
//!   database, [`Error::ValueType`] for a value of another type,
//!   [`Error::Backend`] for other SQLite failures, and so on.
//! - It dropped the lock's value. Here it is stored (as JSON) and returned
//!   exactly, with the expiry to the nanosecond and the token.
//! - It counted a lock as live while `expires_at > now`. The contract counts
//!   it live while its expiry is not *before* now: a lock whose expiry is
//!   exactly now still holds.
//!
//! # Sessions and dead holders
//!
//! Each open handle (with its clones) has a session: a row with a heartbeat
//! that a background thread refreshes every third of the session timeout
//! ([`SqliteLockerBuilder::session_timeout`], default 5 s). A lease taken
//! through a guard ([`hostlock::LeaseLocker`]) is bound to the session; once
//! the heartbeat is older than the timeout (the process died, or was stopped
//! that long) the lease counts as free and its holder's queued waits as gone,
//! and [`cleanup`](hostlock::CleanableLocker::cleanup) removes them. A lock
//! taken with plain [`acquire`](hostlock::Locker::acquire) is bound to no
//! session and counts until it expires or is released. Heartbeats are judged
//! on the host's monotonic clock (on the wall clock for a heartbeat of
//! another boot or host), never on the locker's clock, so neither an injected
//! clock nor a jump of the wall clock makes a living holder look dead.
//!
//! # Fair waits
//!
//! SQLite's own busy handler lets waiting writers in no particular order, so
//! a process can starve. Waiters ([`try_lock_for`](hostlock::LeaseLocker::try_lock_for),
//! [`lock`](hostlock::LeaseLocker::lock)) therefore queue in a table, with
//! tickets in arrival order across processes, and are served in that order.
//! A waiter whose session died, or that is still queued past its wait,
//! counts as gone; one whose turn came but who does not claim it within 1 s
//! loses its place. Waiters in other processes notice a release within
//! 8 ms, and within 1 or 2 ms when the waiter ahead of them was just
//! served; those sharing the releasing handle, at once.
//!
//! Joining the queue is itself a write, so the locker does not use that busy
//! handler either: its sleeps grow to 100 ms, and a process that releases a
//! key and takes it again at once writes with gaps of microseconds, which
//! such sleepers almost never hit; they could not even join the queue. A
//! connection that finds another writer at work tries again every 20 µs at
//! first and every 250 µs at most, up to the busy timeout.
//!
//! # Limits
//!
//! - One host, or a shared file system on which SQLite's locking works:
//!   not NFS or other network file systems whose locks are unreliable.
//!   Across hosts, session heartbeats are compared on the wall clock, which
//!   must then be synchronised (NTP) well within the session timeout.
//! - Values go through JSON (serde_json): a value must encode as JSON (no
//!   maps with non-string keys) and decode back to itself, and is at most
//!   [`hostlock::MAX_VALUE_LEN`] bytes once encoded.
//! - Wait limits and turn grace are judged on the wall clock: a jump of it
//!   can end a wait early or late, but never lets two holders in.
//!
//! [`Error::Busy`]: hostlock::Error::Busy
//! [`Error::NotLockFile`]: hostlock::Error::NotLockFile
//! [`Error::ValueType`]: hostlock::Error::ValueType
//! [`Error::Backend`]: hostlock::Error::Backend
//! [hostlock]: https://docs.rs/hostlock
//! [rusqlite]: https://docs.rs/rusqlite
#![forbid(unsafe_code)]

mod builder;
mod codec;
mod error;
mod impls;
mod locker;
mod ops;
mod schema;
mod session;

pub use crate::builder::{
    DEFAULT_BUSY_TIMEOUT, DEFAULT_SESSION_TIMEOUT, MIN_SESSION_TIMEOUT, SqliteLockerBuilder,
};
pub use crate::locker::SqliteLocker;
