//! `SqliteLocker`: the handle, what its clones share, and how a call runs
//! against the database (one transaction per call).

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hostlock::{Clock, Result};
use rusqlite::{Connection, TransactionBehavior};

use crate::builder::SqliteLockerBuilder;
use crate::codec::clamp;
use crate::error::from_sqlite;
use crate::ops::Call;
use crate::session::{Beat, Heartbeat};

/// A store of named locks in one SQLite database file, shared by the
/// threads and processes that open it.
///
/// It implements every trait of the hostlock contract: [`Locker`],
/// [`CleanableLocker`], [`RenewableLocker`], [`InspectableLocker`] and
/// [`RawLeaseLocker`], so [`LeaseLocker`]'s guards and fair waits and the job
/// helpers ([`with_unique`], [`without_overlap`]) work on it. Values are
/// stored as JSON.
///
/// A handle is cheap to clone: clones share one connection and one session.
/// The session (and its heartbeat thread) ends when the last clone, or the
/// last guard holding one, is dropped.
///
/// ```
/// use hostlock::{Locker, LockValue};
/// use hostlock_sqlite::SqliteLocker;
///
/// let dir = tempfile::tempdir()?;
/// let locker: SqliteLocker<String> = SqliteLocker::open(dir.path().join("locks.db"))?;
/// assert!(locker.acquire("report", LockValue::new("worker-1".to_owned()))?);
/// assert!(!locker.acquire("report", LockValue::new("worker-2".to_owned()))?);
/// assert_eq!(locker.get("report")?.expect("held").value, "worker-1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`Locker`]: hostlock::Locker
/// [`CleanableLocker`]: hostlock::CleanableLocker
/// [`RenewableLocker`]: hostlock::RenewableLocker
/// [`InspectableLocker`]: hostlock::InspectableLocker
/// [`RawLeaseLocker`]: hostlock::RawLeaseLocker
/// [`LeaseLocker`]: hostlock::LeaseLocker
/// [`with_unique`]: hostlock::with_unique
/// [`without_overlap`]: hostlock::without_overlap
pub struct SqliteLocker<T> {
    pub(crate) inner: Arc<Inner>,
    value: PhantomData<fn() -> T>,
}

impl<T> Clone for SqliteLocker<T> {
    fn clone(&self) -> SqliteLocker<T> {
        SqliteLocker {
            inner: Arc::clone(&self.inner),
            value: PhantomData,
        }
    }
}

impl<T> fmt::Debug for SqliteLocker<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteLocker")
            .field("path", &self.inner.path)
            .field("session", &self.inner.session)
            .finish_non_exhaustive()
    }
}

impl<T> SqliteLocker<T> {
    /// Opens the lock database at `path` with the default settings, creating
    /// it (readable and writable by its owner only) if it does not exist.
    ///
    /// # Errors
    /// See [`SqliteLockerBuilder::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteLocker<T>> {
        SqliteLocker::builder(path).open()
    }

    /// A builder for a locker on `path`, to set the clock, the busy timeout
    /// or the session timeout.
    ///
    /// ```
    /// use hostlock_sqlite::SqliteLocker;
    /// use std::time::Duration;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let locker: SqliteLocker<u32> = SqliteLocker::builder(dir.path().join("locks.db"))
    ///     .busy_timeout(Duration::from_secs(2))
    ///     .session_timeout(Duration::from_secs(3))
    ///     .open()?;
    /// # drop(locker);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(path: impl AsRef<Path>) -> SqliteLockerBuilder<T> {
        SqliteLockerBuilder::new(path.as_ref())
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub(crate) fn from_inner(inner: Inner) -> SqliteLocker<T> {
        SqliteLocker {
            inner: Arc::new(inner),
            value: PhantomData,
        }
    }
}

/// What the clones of a handle share.
///
/// One connection behind a mutex, not a pool: SQLite lets one writer at a
/// time into a database file whatever the number of connections, and every
/// call here is a short write transaction (or a read of a few rows), so a
/// pool would only add connections queueing for the same write lock, each
/// with its own statement cache and file descriptors. The heartbeat has a
/// connection of its own, so that it never waits behind a call.
pub(crate) struct Inner {
    pub(crate) path: PathBuf,
    conn: Mutex<Connection>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) session: i64,
    pub(crate) busy: Duration,
    /// Counts releases, so that waiting threads of this process wake at once.
    released: Mutex<u64>,
    wake: Condvar,
    heartbeat: Option<Heartbeat>,
}

impl Inner {
    pub(crate) fn new(
        path: PathBuf,
        conn: Connection,
        clock: Arc<dyn Clock>,
        session: i64,
        busy: Duration,
        heartbeat: Heartbeat,
    ) -> Inner {
        Inner {
            path,
            conn: Mutex::new(conn),
            clock,
            session,
            busy,
            released: Mutex::new(0),
            wake: Condvar::new(),
            heartbeat: Some(heartbeat),
        }
    }

    // A panic inside a call (the injected clock's, say) unwinds through the
    // transaction, which rolls back as it drops: the connection is left
    // clean, so a poisoned mutex is still safe to use.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`: no other writer
    /// acts between its reads and its writes), reading the locker's clock
    /// once the write lock is held. Commits if `f` returns `Ok`, rolls back
    /// otherwise.
    pub(crate) fn write<R>(&self, f: impl FnOnce(&Call<'_>) -> Result<R>) -> Result<R> {
        self.run(TransactionBehavior::Immediate, f)
    }

    /// Runs `f` on a consistent snapshot, without taking the write lock.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Call<'_>) -> Result<R>) -> Result<R> {
        self.run(TransactionBehavior::Deferred, f)
    }

    fn run<R>(
        &self,
        behavior: TransactionBehavior,
        f: impl FnOnce(&Call<'_>) -> Result<R>,
    ) -> Result<R> {
        let sqlite = |e| from_sqlite(&self.path, self.busy, e);
        let mut conn = self.conn();
        let txn = conn.transaction_with_behavior(behavior).map_err(sqlite)?;
        let call = Call {
            db: &txn,
            path: &self.path,
            busy: self.busy,
            session: self.session,
            now: clamp(self.clock.now()),
            beat: Beat::now(),
        };
        let out = f(&call)?;
        txn.commit().map_err(sqlite)?;
        Ok(out)
    }

    /// Wakes the threads of this process waiting for a key.
    pub(crate) fn notify(&self) {
        let mut generation = self.released.lock().unwrap_or_else(PoisonError::into_inner);
        *generation = generation.wrapping_add(1);
        self.wake.notify_all();
    }

    /// The number of releases so far, to wait for the next with
    /// [`wait_release`](Self::wait_release).
    pub(crate) fn releases(&self) -> u64 {
        *self.released.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until a release after `seen` in this process, or `until`.
    pub(crate) fn wait_release(&self, seen: u64, until: Instant) {
        let generation = self.released.lock().unwrap_or_else(PoisonError::into_inner);
        let left = until.saturating_duration_since(Instant::now());
        if *generation != seen || left.is_zero() {
            return;
        }
        let _ = self
            .wake
            .wait_timeout(generation, left)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.heartbeat.take());
        // The session ends: its waits leave the queues, and the leases still
        // bound to it (of guards leaked with `mem::forget`) count as gone
        // from now on. An error here changes nothing that matters: a session
        // whose heartbeat stops is judged dead within its timeout anyway.
        let conn = self.conn();
        let _ = conn.execute(
            "DELETE FROM hostlock_queue WHERE session = ?1",
            [self.session],
        );
        let _ = conn.execute(
            "DELETE FROM hostlock_sessions WHERE id = ?1",
            [self.session],
        );
    }
}
