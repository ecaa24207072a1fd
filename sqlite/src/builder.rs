//! `SqliteLockerBuilder`: the settings of a locker, and opening it.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hostlock::{Clock, Error, Result, SystemClock};
use rusqlite::TransactionBehavior;

use crate::error::from_sqlite;
use crate::locker::{Inner, SqliteLocker};
use crate::schema;
use crate::session::{self, Heartbeat};

/// How long a call waits for another connection's write to end before it
/// fails with [`Error::Busy`]: 5 seconds.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a session's heartbeat may go unrefreshed before the session
/// counts as dead and its leases as free: 5 seconds.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest session timeout accepted: 30 ms.
pub const MIN_SESSION_TIMEOUT: Duration = Duration::from_millis(30);

/// Settings for a [`SqliteLocker`]; made by [`SqliteLocker::builder`].
///
/// ```
/// use hostlock::{Locker, LockValue, ManualClock};
/// use hostlock_sqlite::SqliteLocker;
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir()?;
/// let clock = ManualClock::default();
/// let locker: SqliteLocker<()> = SqliteLocker::builder(dir.path().join("locks.db"))
///     .clock(clock.clone())
///     .open()?;
/// locker.acquire("k", LockValue::new(()).expiring_at(clock.now() + Duration::from_secs(1)))?;
/// clock.advance(Duration::from_secs(2));
/// assert!(!locker.exists("k")?);
/// # use hostlock::Clock;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SqliteLockerBuilder<T> {
    path: PathBuf,
    clock: Arc<dyn Clock>,
    busy_timeout: Duration,
    session_timeout: Duration,
    value: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for SqliteLockerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteLockerBuilder")
            .field("path", &self.path)
            .field("busy_timeout", &self.busy_timeout)
            .field("session_timeout", &self.session_timeout)
            .finish_non_exhaustive()
    }
}

impl<T> SqliteLockerBuilder<T> {
    pub(crate) fn new(path: &Path) -> SqliteLockerBuilder<T> {
        SqliteLockerBuilder {
            path: path.to_owned(),
            clock: Arc::new(SystemClock),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            value: PhantomData,
        }
    }

    /// The clock that lock expiry is judged on (default: the system's wall
    /// clock). Session liveness and wait limits are always judged on real
    /// time, whatever this clock says.
    pub fn clock(mut self, clock: impl Clock + 'static) -> SqliteLockerBuilder<T> {
        self.clock = Arc::new(clock);
        self
    }

    /// How long a call waits for another connection's write to end before it
    /// fails with [`Error::Busy`] (default [`DEFAULT_BUSY_TIMEOUT`]).
    pub fn busy_timeout(mut self, timeout: Duration) -> SqliteLockerBuilder<T> {
        self.busy_timeout = timeout;
        self
    }

    /// How long this handle's heartbeat may go unrefreshed before others
    /// count its session as dead (default [`DEFAULT_SESSION_TIMEOUT`]). The
    /// heartbeat is refreshed every third of it. A lease taken through a
    /// guard is free for others at most this long after its process dies;
    /// a process stopped (or starved of CPU) this long loses its leases too.
    pub fn session_timeout(mut self, timeout: Duration) -> SqliteLockerBuilder<T> {
        self.session_timeout = timeout;
        self
    }

    /// Opens the database, creating the file (mode 0600) and the tables if
    /// needed, and starts the session and its heartbeat thread.
    ///
    /// # Errors
    /// - [`Error::InvalidArgument`]: a session timeout under
    ///   [`MIN_SESSION_TIMEOUT`].
    /// - [`Error::IsDirectory`], [`Error::NotFound`] (no parent directory),
    ///   [`Error::PermissionDenied`], [`Error::ReadOnly`]: the file cannot be
    ///   opened for writing.
    /// - [`Error::NotLockFile`]: the file is not a SQLite database.
    /// - [`Error::UnsupportedVersion`]: its hostlock tables have another
    ///   format version.
    /// - [`Error::Busy`]: another connection kept the database locked past
    ///   the busy timeout.
    /// - [`Error::Backend`]: another SQLite failure; [`Error::Thread`]: the
    ///   heartbeat thread could not start.
    pub fn open(self) -> Result<SqliteLocker<T>> {
        if self.session_timeout < MIN_SESSION_TIMEOUT {
            return Err(Error::InvalidArgument {
                argument: "session timeout",
                reason: format!(
                    "must be at least {MIN_SESSION_TIMEOUT:?}, got {:?}",
                    self.session_timeout
                ),
            });
        }
        let path = self.path;
        let busy = self.busy_timeout;
        let sqlite = |e| from_sqlite(&path, busy, e);
        let mut conn = schema::connect(&path, busy)?;
        schema::prepare(&path, busy, &mut conn)?;
        let session = {
            let txn = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite)?;
            let id: i64 = txn
                .query_row(
                    "UPDATE hostlock_meta SET value = value + 1 WHERE name = 'session' \
                     RETURNING value",
                    [],
                    |r| r.get(0),
                )
                .map_err(sqlite)?;
            session::beat(&txn, id, self.session_timeout).map_err(sqlite)?;
            txn.commit().map_err(sqlite)?;
            id
        };
        let beating = schema::connect(&path, busy)?;
        // Heartbeats need no sync of their own: a beat lost in a power cut
        // belongs to a session that the cut ended anyway.
        beating
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        let heartbeat = Heartbeat::start(&path, beating, session, self.session_timeout)?;
        Ok(SqliteLocker::from_inner(Inner::new(
            path, conn, self.clock, session, busy, heartbeat,
        )))
    }
}
