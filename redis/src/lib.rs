//! hostlock's locks kept on one Redis server, shared by processes on any
//! number of hosts.
//!
//! [`RedisLocker`] implements every trait of [`hostlock`]: [`Locker`],
//! [`CleanableLocker`], [`RenewableLocker`], [`InspectableLocker`] and the
//! lease primitives [`RawLeaseLocker`], so guards
//! ([`LeaseLocker::try_lock`], [`try_lock_for`](hostlock::LeaseLocker::try_lock_for),
//! [`lock`](hostlock::LeaseLocker::lock)), fair waits, fences and the job helpers
//! ([`with_unique`](hostlock::with_unique),
//! [`without_overlap`](hostlock::without_overlap)) work on it as on
//! hostlock's own lockers. It passes every row of hostlock's conformance
//! kit against a real server.
//!
//! ```no_run
//! use hostlock::{LeaseLocker, Locker, LockValue, Outcome, with_unique};
//! use hostlock_redis::RedisLocker;
//! use std::time::Duration;
//!
//! let locker: RedisLocker<String> = RedisLocker::open("redis://127.0.0.1:6379")?;
//!
//! // A guard: released (owner-checked) when dropped, freed when its
//! // process dies, and carrying a fence for the resource it protects.
//! if let Some(guard) = locker.try_lock("invoices", "host-a".to_owned(), Some(Duration::from_secs(30)))? {
//!     println!("writing with fence {}", guard.fence());
//! }
//!
//! // A job that runs on one host at a time.
//! let outcome = with_unique(&locker, "nightly-report", Some(Duration::from_secs(600)), |_lease| {
//!     // ... the job ...
//! })?;
//! assert!(matches!(outcome, Outcome::Ran(()) | Outcome::Skipped));
//!
//! // The plain operations of the contract.
//! assert!(locker.acquire("maintenance", LockValue::new("ops".to_owned()))?);
//! let lock = locker.get("maintenance")?.expect("held"); // value, expiry and token
//! assert_eq!(lock.expires_at, None); // no expiry means none: held until released
//! locker.release("maintenance")?;
//! # Ok::<(), hostlock::Error>(())
//! ```
//!
//! # What it gets right
//!
//! The job queue's first Redis example had four faults; this crate has none
//! of them:
//!
//! - its `Get` returned neither the value nor the expiry: [`Locker::get`]
//!   returns the lock exactly as acquired, value, expiry (to the nanosecond)
//!   and token, and [`InspectableLocker::info`] the fence, acquisition time,
//!   holder pid and whether the holder is alive;
//! - a lock with no expiry became a one-minute lock: a lock with no expiry
//!   is held until released (a guard's is freed when its holder dies, see
//!   below);
//! - its `Release` deleted anyone's lock: a holder releases with
//!   [`RenewableLocker::release_if_owner`], or by dropping its guard, and
//!   the token is compared in the same atomic script that deletes, so a
//!   holder whose lease expired and was taken cannot free the new holder's
//!   lock ([`Locker::release`] stays what the contract says: the
//!   administrator's release, checking no owner);
//! - errors vanished: every failure is an [`Error`](hostlock::Error) —
//!   [`Error::Backend`](hostlock::Error::Backend) naming the server
//!   (`redis 127.0.0.1:6379`), transient for a lost connection; a value
//!   that does not decode as `T` is
//!   [`Error::ValueType`](hostlock::Error::ValueType) naming the key and
//!   the type; a key of another Redis type planted under the prefix is an
//!   error naming that key. Neither passes for a free key.
//!
//! # How it works
//!
//! Every operation is one Lua script, run atomically by the server
//! (`EVALSHA`, and `EVAL` when the server has not seen it yet, after a
//! restart say). Under a prefix (`hostlock:` by default; see
//! [`RedisLockerBuilder::prefix`]) a lock is a hash (value as JSON, expiry,
//! token, fence, acquisition time, holder pid, session), fences come from
//! one counter (`INCR`), so they grow for every key and across restarts of
//! a server that persists its data, and each key has a sorted set of
//! waiters, served in the order of their tickets.
//!
//! Waiting ([`LeaseLocker::try_lock_for`], [`LeaseLocker::lock`]) polls the
//! server, pausing 2 ms at first and up to 25 ms while the queue stands
//! still, and 2 ms again each time the waiter moves up: a waiter in another
//! process notices a release within about 25 ms, and within a few
//! milliseconds when the waiter ahead of it was just served, so a key that
//! changes hands often keeps doing so quickly however many wait; a release
//! through the same locker (or a clone) wakes its waiting threads at once.
//! There is no pub/sub.
//!
//! # Which clock decides what
//!
//! - **The expiry of locks** is judged on the locker's clock (the system
//!   clock, or the one given to [`RedisLockerBuilder::clock`]), read at each
//!   call and passed to the script. That is the contract: a lock is live
//!   while its expiry is `None` or not before now, and tests (hostlock's
//!   conformance kit among them) move a `ManualClock` to expire locks
//!   without sleeping. Hosts sharing a server must therefore keep their
//!   clocks synchronised (NTP): a host whose clock runs ahead sees others'
//!   locks expire early.
//! - **Whether a holder is alive** is judged by the server. Each locker has
//!   a session: a key whose TTL (`PEXPIRE`, on the server's clock) a
//!   heartbeat thread renews every third of the session timeout (5 s by
//!   default, see [`RedisLockerBuilder::session_timeout`]). A lease taken
//!   through a guard is bound to the session, and counts as free once the
//!   session key is gone: when the last clone of the locker drops, at once;
//!   when the process dies (SIGKILL included), is stopped, or loses the
//!   server, within the session timeout. The injected clock never ends a
//!   session: a test that moves a `ManualClock` by an hour must not kill
//!   every holder, and a host's clock jump must not either. A lock taken
//!   with plain [`Locker::acquire`] is bound to no session: only its expiry
//!   or a release ends it.
//! - **Wait limits and turns** (a waiter's `max_wait`, and the one second a
//!   waiter whose turn came has to claim it before it passes to the next)
//!   are on the server's clock too, as they concern real time across
//!   processes.
//!
//! # Limits
//!
//! - One server. Keys are named inside the scripts, so Redis Cluster is not
//!   supported. With replicas, a failover can lose a lock (replication is
//!   asynchronous): the new primary may grant a key its old primary had
//!   granted. Even on one server a holder can stall past its lease. Fences
//!   are what protect the resource: have it refuse writes that carry a fence
//!   lower than the highest it has seen. They grow as long as the server
//!   loses no write: a failover or a restart that loses the last writes can
//!   hand out a fence again.
//! - Durability is the server's: locks survive a restart when it persists
//!   every write (`appendonly yes`, `appendfsync always`); with `everysec`
//!   the last second of grants can be lost, with no persistence all of them
//!   (and fences then start again from 1). An eviction policy other than
//!   `noeviction` can drop locks and sessions: do not use one.
//! - A lease is freed at most one session timeout after its holder died; a
//!   holder stopped (or cut off from the server) for longer loses its
//!   lease, and its guard's checks and renewals report it.
//! - A call whose connection fails gets an error; the next call connects
//!   again. A connection unused for 200 ms is checked with a `PING` before
//!   use, and calls that may safely run twice (reads, touch, force release,
//!   leaving a queue) are sent again once on a new connection if the old
//!   one turns out closed; other changes are not, as their first attempt
//!   may have taken effect: look with [`Locker::get`].
//! - [`CleanableLocker::cleanup`] and [`InspectableLocker::list`] go
//!   through every lock of the prefix in one script, which blocks the
//!   server for as long: fine for thousands of locks, not for millions.
//! - Values are stored as JSON (`serde_json`), at most
//!   [`MAX_VALUE_LEN`](hostlock::MAX_VALUE_LEN) bytes once encoded.
//!
//! [`Locker`]: hostlock::Locker
//! [`Locker::acquire`]: hostlock::Locker::acquire
//! [`Locker::get`]: hostlock::Locker::get
//! [`Locker::release`]: hostlock::Locker::release
//! [`CleanableLocker`]: hostlock::CleanableLocker
//! [`CleanableLocker::cleanup`]: hostlock::CleanableLocker::cleanup
//! [`RenewableLocker`]: hostlock::RenewableLocker
//! [`RenewableLocker::release_if_owner`]: hostlock::RenewableLocker::release_if_owner
//! [`InspectableLocker`]: hostlock::InspectableLocker
//! [`InspectableLocker::info`]: hostlock::InspectableLocker::info
//! [`InspectableLocker::list`]: hostlock::InspectableLocker::list
//! [`RawLeaseLocker`]: hostlock::RawLeaseLocker
//! [`LeaseLocker::try_lock`]: hostlock::LeaseLocker::try_lock
//! [`LeaseLocker::try_lock_for`]: hostlock::LeaseLocker::try_lock_for
//! [`LeaseLocker::lock`]: hostlock::LeaseLocker::lock
//! [`LeaseLocker`]: hostlock::LeaseLocker

#![forbid(unsafe_code)]

mod builder;
mod checks;
mod impls;
mod link;
mod locker;
mod record;
mod scripts;
mod session;

pub use crate::builder::{DEFAULT_PREFIX, DEFAULT_SESSION_TIMEOUT, RedisLockerBuilder};
pub use crate::locker::RedisLocker;
