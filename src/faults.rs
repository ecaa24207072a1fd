//! Storage that fails on demand, for testing how a program copes with a full
//! disk or a failing device. Built with the `fault-injection` feature.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// What an injected failure looks like to the storage engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// `ENOSPC`: no space left on the device.
    DiskFull,
    /// `EIO`: the device reported an input/output error.
    Io,
}

impl Fault {
    fn error(self) -> io::Error {
        match self {
            Fault::DiskFull => io::Error::from_raw_os_error(28),
            Fault::Io => io::Error::from_raw_os_error(5),
        }
    }

    fn code(self) -> u8 {
        match self {
            Fault::DiskFull => 1,
            Fault::Io => 2,
        }
    }

    fn from_code(code: u8) -> Option<Fault> {
        match code {
            1 => Some(Fault::DiskFull),
            2 => Some(Fault::Io),
            _ => None,
        }
    }
}

/// A switch board for failures of a [`FileLocker`](crate::FileLocker)'s
/// storage, given to [`FileLockerBuilder::faults`](crate::FileLockerBuilder::faults).
///
/// Clones share one board, so a test keeps a clone and arms it while the
/// locker runs. Writes (including growing the file) and syncs are counted
/// separately; each kind can be made to fail after a number of successes,
/// and keeps failing, as a full disk does, until [`heal`](Faults::heal).
///
/// ```
/// use hostlock::{Error, Fault, Faults, FileLocker, Locker, LockValue};
///
/// let dir = tempfile::tempdir()?;
/// let faults = Faults::new();
/// let locker: FileLocker<u32> = FileLocker::builder(dir.path().join("locks.redb"))
///     .faults(faults.clone())
///     .open()?;
/// assert!(locker.acquire("kept", LockValue::new(1))?);
///
/// faults.fail_writes_after(0, Fault::DiskFull);
/// let err = locker.acquire("lost", LockValue::new(2)).unwrap_err();
/// assert!(matches!(err, Error::NoSpace { .. }), "{err}");
///
/// faults.heal();
/// assert!(locker.exists("kept")?);
/// assert!(!locker.exists("lost")?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct Faults {
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    writes: Counter,
    syncs: Counter,
    injected: AtomicU64,
}

/// One kind of operation: how many were seen, and how many more may succeed.
struct Counter {
    seen: AtomicU64,
    budget: AtomicU64,
    fault: AtomicU8,
}

impl Default for Counter {
    fn default() -> Counter {
        Counter {
            seen: AtomicU64::new(0),
            budget: AtomicU64::new(u64::MAX),
            fault: AtomicU8::new(0),
        }
    }
}

impl Counter {
    fn arm(&self, after: u64, fault: Fault) {
        self.fault.store(fault.code(), Ordering::SeqCst);
        self.budget.store(after, Ordering::SeqCst);
    }

    fn heal(&self) {
        self.budget.store(u64::MAX, Ordering::SeqCst);
        self.fault.store(0, Ordering::SeqCst);
    }

    /// Counts one operation; the fault to inject if its budget is spent.
    fn pass(&self) -> Option<Fault> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        let spent = self
            .budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                0 => None,
                u64::MAX => Some(u64::MAX),
                n => Some(n - 1),
            })
            .is_err();
        if spent {
            Fault::from_code(self.fault.load(Ordering::SeqCst))
        } else {
            None
        }
    }
}

impl Faults {
    /// A board with nothing armed: every operation succeeds.
    pub fn new() -> Faults {
        Faults::default()
    }

    /// After `after` more successful writes, every write to the file (and
    /// every change of its length) fails with `fault`, until [`heal`](Faults::heal).
    pub fn fail_writes_after(&self, after: u64, fault: Fault) {
        self.state.writes.arm(after, fault);
    }

    /// After `after` more successful syncs, every sync of the file fails with
    /// `fault`, until [`heal`](Faults::heal).
    pub fn fail_syncs_after(&self, after: u64, fault: Fault) {
        self.state.syncs.arm(after, fault);
    }

    /// Lets every operation succeed again.
    pub fn heal(&self) {
        self.state.writes.heal();
        self.state.syncs.heal();
    }

    /// How many writes (and length changes) the storage was asked for.
    pub fn writes(&self) -> u64 {
        self.state.writes.seen.load(Ordering::SeqCst)
    }

    /// How many syncs the storage was asked for.
    pub fn syncs(&self) -> u64 {
        self.state.syncs.seen.load(Ordering::SeqCst)
    }

    /// How many operations were made to fail.
    pub fn injected(&self) -> u64 {
        self.state.injected.load(Ordering::SeqCst)
    }

    /// Called before a write or length change: the error to return instead.
    pub(crate) fn on_write(&self) -> io::Result<()> {
        self.inject(self.state.writes.pass())
    }

    /// Called before a sync: the error to return instead.
    pub(crate) fn on_sync(&self) -> io::Result<()> {
        self.inject(self.state.syncs.pass())
    }

    fn inject(&self, fault: Option<Fault>) -> io::Result<()> {
        match fault {
            None => Ok(()),
            Some(fault) => {
                self.state.injected.fetch_add(1, Ordering::SeqCst);
                Err(fault.error())
            }
        }
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults")
            .field("writes", &self.writes())
            .field("syncs", &self.syncs())
            .field("injected", &self.injected())
            .finish()
    }
}
