//! The contract of `docs/semantics.md` as a test kit, for authors of other
//! lockers (cargo feature `conformance`).
//!
//! [`run`] checks a locker against every row of the table that holds for any
//! locker: 49 checks, one per row (two for T1), the job helpers' J1 to J6
//! among them, each on a fresh locker that your factory makes. The kit owns the clock: it hands the factory a
//! [`ManualClock`] and moves time only through it, so the locker must read
//! the time from that clock and nowhere else. A row that fails does not stop
//! the others; the [`Report`] names every failed row with what went wrong.
//!
//! ```
//! use hostlock::{MemoryLocker, conformance};
//!
//! let report = conformance::run(|clock| MemoryLocker::with_clock(clock));
//! report.assert_passed(); // panics, listing the failed rows, if any failed
//! assert_eq!(report.passed().len(), 49);
//! ```
//!
//! For a locker that keeps files, give each locker a file of its own:
//!
//! ```
//! use hostlock::{FileLocker, conformance};
//!
//! let dir = tempfile::tempdir()?;
//! let mut made = 0;
//! let report = conformance::run(|clock| {
//!     made += 1;
//!     FileLocker::builder(dir.path().join(format!("{made}.redb")))
//!         .clock(clock)
//!         .background_cleanup(false)
//!         .open()
//!         .expect("a new lock file") // a panic here fails the row
//! });
//! report.assert_passed();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Lockers with fewer traits
//!
//! [`run`] needs [`CleanableLocker`], [`RenewableLocker`] and
//! [`InspectableLocker`] besides [`Locker`]. A [`Suite`] runs the rows of
//! the traits you name: [`Suite::new`] the rows every [`Locker`] must pass,
//! [`cleanable`](Suite::cleanable), [`renewable`](Suite::renewable) and
//! [`inspectable`](Suite::inspectable) add the rows of those traits. The
//! others are reported as skipped. Where a row of [`Locker`] can look further
//! with a named trait (a `cleanup` after an acquire that replaced an expired
//! entry must find nothing), it does.
//!
//! ```
//! use hostlock::conformance::Suite;
//! use hostlock::{Locker, LockValue, MemoryLocker, Result};
//!
//! /// A locker with the five basic operations only.
//! struct Basic(MemoryLocker<String>);
//!
//! impl Locker<String> for Basic {
//!     fn exists(&self, key: &str) -> Result<bool> {
//!         self.0.exists(key)
//!     }
//!     fn get(&self, key: &str) -> Result<Option<LockValue<String>>> {
//!         self.0.get(key)
//!     }
//!     fn acquire(&self, key: &str, lock: LockValue<String>) -> Result<bool> {
//!         self.0.acquire(key, lock)
//!     }
//!     fn release(&self, key: &str) -> Result<bool> {
//!         self.0.release(key)
//!     }
//!     fn force_release(&self, key: &str) -> Result<()> {
//!         self.0.force_release(key)
//!     }
//!     // The time of the clock the locker reads: the job helpers' TTLs
//!     // count from it.
//!     fn now(&self) -> std::time::SystemTime {
//!         self.0.now()
//!     }
//! }
//!
//! let report = Suite::new().run(|clock| Basic(MemoryLocker::with_clock(clock)));
//! report.assert_passed();
//! assert_eq!(report.passed().len(), 31);
//! assert_eq!(report.skipped().len(), 29); // cleanup, touch, release_if_owner, info, guards
//! ```
//!
//! # What the checks assume
//!
//! - Values are `String`s: the locker implements `Locker<String>`, and the
//!   other traits for `String` too.
//! - Each check starts the clock at 2023-11-14 22:13:20 UTC and moves it
//!   forwards and backwards, as far as [`latest_expiry`](crate::latest_expiry).
//! - Row A7 races 8 scoped threads for one key on a shared `&L`, so the
//!   locker is `Sync`.
//! - The job helpers' rows (J1 to J6) count a TTL from [`Locker::now`]: a
//!   locker that reads an injected clock must return that clock's time
//!   there. J5 and J6 wait in real time, a few tens of milliseconds.
//! - Failures are panics (a failed assertion, or a panic of the locker or the
//!   factory), caught with [`catch_unwind`](std::panic::catch_unwind): the
//!   kit needs `panic = "unwind"`, the default, and the panic hook still
//!   prints each one as it happens. A locker that blocks forever blocks the run.
//! - Rows V1 to V4 expect [`Error::InvalidArgument`](crate::Error::InvalidArgument)
//!   for the keys, tokens and expiries outside the limits
//!   [`MAX_KEY_LEN`](crate::MAX_KEY_LEN), [`MAX_TOKEN_LEN`](crate::MAX_TOKEN_LEN)
//!   and [`latest_expiry`](crate::latest_expiry).
//!
//! Rows H1, H2, D1 and M1 concern [`FileLocker`](crate::FileLocker) (sessions,
//! durability, other processes); the tests named in `docs/semantics.md` check
//! those. The Q rows concern guards and fair waits: [`Suite::leases`] adds
//! them for a locker that implements [`RawLeaseLocker`](crate::RawLeaseLocker)
//! (Q4b, the grace of an unclaimed turn, is checked by `tests/fair_waits.rs`).
//!
//! ```
//! use hostlock::MemoryLocker;
//! use hostlock::conformance::Suite;
//!
//! let report = Suite::new()
//!     .cleanable()
//!     .renewable()
//!     .inspectable()
//!     .leases()
//!     .run(|clock| MemoryLocker::with_clock(clock));
//! report.assert_passed();
//! assert_eq!(report.passed().len(), 60);
//! ```

use std::any::Any;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use crate::clock::ManualClock;
use crate::info::InspectableLocker;
use crate::locker::{CleanableLocker, Locker, RenewableLocker};

mod jobs;
mod leases;
mod report;
mod rows;

pub use self::report::{Failure, Report, Row};

use self::rows::{Caps, Fixture};

/// Checks the locker that `make` builds against every row: the rows of
/// [`Locker`], [`CleanableLocker`], [`RenewableLocker`] and
/// [`InspectableLocker`].
///
/// `make` is called once per row with the clock of that row, and must return
/// a locker with no locks that reads the time from that clock. Each locker is
/// dropped when its row ends. A failed check, or a panic in `make`, goes
/// into the report: `run` itself does not panic.
///
/// The same as `Suite::new().cleanable().renewable().inspectable().run(make)`.
pub fn run<L, F>(make: F) -> Report
where
    L: CleanableLocker<String> + RenewableLocker<String> + InspectableLocker<String> + Sync,
    F: FnMut(ManualClock) -> L,
{
    Suite::new().cleanable().renewable().inspectable().run(make)
}

/// The rows to check, by the traits the locker implements.
///
/// [`Suite::new`] has the rows of [`Locker`]; each builder method adds the
/// rows of one more trait, and is there only when the locker implements it.
///
/// ```
/// use hostlock::MemoryLocker;
/// use hostlock::conformance::Suite;
///
/// let report = Suite::new()
///     .cleanable()
///     .renewable()
///     .run(|clock| MemoryLocker::with_clock(clock));
/// report.assert_passed();
/// let skipped: Vec<&str> = report.skipped().iter().map(|row| row.id).collect();
/// // N1, I1 and I2 need InspectableLocker; the Q rows, `.leases()`.
/// assert_eq!(skipped[..3], ["N1", "I1", "I2"]);
/// assert_eq!(skipped.len(), 14);
/// ```
pub struct Suite<L> {
    caps: Caps<L>,
}

impl<L: Locker<String> + Sync> Suite<L> {
    /// The rows that every [`Locker`] must pass.
    pub fn new() -> Suite<L> {
        Suite { caps: Caps::none() }
    }

    /// Runs the rows, each on a locker that `make` builds with that row's
    /// clock, and reports which passed, failed or were skipped.
    ///
    /// `make` must return a locker with no locks that reads the time from the
    /// clock it is given. A panic in `make` fails the row it was called for.
    pub fn run<F>(&self, mut make: F) -> Report
    where
        F: FnMut(ManualClock) -> L,
    {
        let mut report = Report::default();
        for check in rows::checks::<L>() {
            if !self.caps.has(check.need) {
                report.skipped.push(check.row);
                continue;
            }
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                let clock = ManualClock::new(rows::start());
                let locker = make(clock.clone());
                (check.run)(&Fixture::new(locker, clock, self.caps));
            }));
            match outcome {
                Ok(()) => report.passed.push(check.row),
                Err(payload) => report.failed.push(Failure {
                    row: check.row,
                    message: panic_message(payload.as_ref()),
                }),
            }
        }
        report
    }
}

impl<L: CleanableLocker<String>> Suite<L> {
    /// Adds the rows of [`CleanableLocker`] (C1, C2), and the `cleanup`
    /// checks of other rows.
    pub fn cleanable(mut self) -> Suite<L> {
        self.caps.cleanup = Some(L::cleanup);
        self
    }
}

impl<L: RenewableLocker<String>> Suite<L> {
    /// Adds the rows of [`RenewableLocker`] (T1 to T6, O1 to O6), and the
    /// `touch` and `release_if_owner` checks of other rows.
    pub fn renewable(mut self) -> Suite<L> {
        self.caps.touch = Some(L::touch);
        self.caps.release_if_owner = Some(L::release_if_owner);
        self
    }
}

impl<L: InspectableLocker<String>> Suite<L> {
    /// Adds the rows of [`InspectableLocker`] (N1, I1, I2), and the `info`
    /// checks of other rows.
    pub fn inspectable(mut self) -> Suite<L> {
        self.caps.info = Some(L::info);
        // Every entry of the suite's own must be shown: an entry listed as
        // its error fails the row.
        self.caps.list = Some(|locker: &L, all| locker.list(all)?.into_iter().collect());
        self
    }
}

impl<L: crate::LeaseLocker<String> + Send + Sync + 'static> Suite<L> {
    /// Adds the rows of guards and fair waits (Q1 to Q10): for a locker that
    /// implements [`RawLeaseLocker`](crate::RawLeaseLocker) (and so gets
    /// [`LeaseLocker`](crate::LeaseLocker)'s `try_lock`, `try_lock_for` and
    /// `lock`). Q3, Q4 and Q9 wait in real time, a few tens of milliseconds.
    pub fn leases(mut self) -> Suite<L> {
        self.caps.leases = Some(leases::LeaseOps::of());
        self
    }
}

impl<L: Locker<String> + Sync> Default for Suite<L> {
    /// The same as [`Suite::new`].
    fn default() -> Suite<L> {
        Suite::new()
    }
}

impl<L> fmt::Debug for Suite<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Suite")
            .field("traits", &self.caps.names())
            .finish()
    }
}

/// The message a panic carried.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "the row panicked with a value that is not a message".to_owned()
    }
}
