//! The tables, and opening a database file: creating it private, switching
//! it to WAL, creating or checking the tables.
//!
//! The tables are prefixed `hostlock_`, so they can live in an application's
//! own database beside its tables:
//!
//! - `hostlock_meta (name, value)`: `format` (the version of these tables),
//!   and the counters `fence`, `ticket` and `session`, each the last one
//!   handed out anywhere in the file.
//! - `hostlock_locks`: one row per stored lock: its JSON `value`,
//!   `expires_at` (NULL: never) and `acquired_at` as biased nanoseconds (see
//!   the codec), `token`, `fence`, the holder's `pid`, and the `session` it is
//!   bound to (NULL for a lock that counts until it expires).
//! - `hostlock_sessions`: one row per open handle, with its heartbeat.
//! - `hostlock_queue (key, ticket, session, wait_limit, turn_since)`: the
//!   waiters, in ticket order per key; the times are wall-clock nanoseconds.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use hostlock::{Error, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::error::{from_io, from_sqlite};

/// The version of the tables this build reads and writes.
pub(crate) const FORMAT: u32 = 1;

const CREATE: &str = "
CREATE TABLE hostlock_meta (
    name TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE hostlock_locks (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    expires_at INTEGER,
    token TEXT,
    fence INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    session INTEGER
);
CREATE INDEX hostlock_locks_by_expiry ON hostlock_locks (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE INDEX hostlock_locks_by_session ON hostlock_locks (session)
    WHERE session IS NOT NULL;
CREATE TABLE hostlock_sessions (
    id INTEGER PRIMARY KEY NOT NULL,
    pid INTEGER NOT NULL,
    boot TEXT,
    beat_mono INTEGER NOT NULL,
    beat_wall INTEGER NOT NULL,
    timeout INTEGER NOT NULL
);
CREATE TABLE hostlock_queue (
    key TEXT NOT NULL,
    ticket INTEGER NOT NULL,
    session INTEGER NOT NULL,
    wait_limit INTEGER,
    turn_since INTEGER,
    PRIMARY KEY (key, ticket)
) WITHOUT ROWID;
INSERT INTO hostlock_meta (name, value) VALUES
    ('format', 1), ('fence', 0), ('ticket', 0), ('session', 0);
";

/// The first pause of a connection that finds another writer at work.
const FIRST_BUSY_PAUSE: Duration = Duration::from_micros(20);

/// The longest pause between two attempts to take the write lock while
/// another connection writes, as in hostlock's own file store.
const MAX_BUSY_PAUSE: Duration = Duration::from_micros(250);

/// Opens a connection to the database at `path`, creating the file (mode
/// 0600) if it does not exist, in WAL mode with full syncs, waiting up to
/// `busy` for another writer (see [`poll_when_busy`]).
pub(crate) fn connect(path: &Path, busy: Duration) -> Result<Connection> {
    if path.is_dir() {
        return Err(Error::IsDirectory {
            path: path.to_owned(),
        });
    }
    // Create it ourselves, private, rather than let SQLite create it with
    // the umask's mode; opening it for writing also says early and clearly
    // whether this process may write it.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| from_io(path, "open", e))?;
    let sqlite = |e| from_sqlite(path, busy, e);
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    poll_when_busy(&mut conn, busy).map_err(sqlite)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(sqlite)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Backend {
            store: crate::error::store_name(path),
            detail: format!("cannot switch the database to WAL mode (it stays in {mode} mode)"),
            transient: false,
        });
    }
    // Every change is on disk when its call returns (contract row D1).
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite)?;
    Ok(conn)
}

/// Has `conn` wait up to `timeout` for a lock that another connection holds,
/// trying again every 20 µs at first and every 250 µs at most.
///
/// SQLite's own busy handler sleeps 1 ms, then 2, 5, 10 and so on up to
/// 100 ms between attempts. A process that writes without pause (a holder
/// releasing a key and taking it again, say) leaves gaps of a few
/// microseconds between its transactions, which such sleepers almost never
/// hit: they wait out their busy timeout while it goes on, and cannot even
/// join a key's queue. Polling often gives every writer its chance.
pub(crate) fn poll_when_busy(conn: &mut Connection, timeout: Duration) -> rusqlite::Result<()> {
    let mut since = Instant::now();
    let mut pause = FIRST_BUSY_PAUSE;
    conn.busy_handler(Some(move |count: i32| {
        // The count restarts at zero for every new wait.
        if count == 0 {
            since = Instant::now();
            pause = FIRST_BUSY_PAUSE;
        }
        let left = timeout.saturating_sub(since.elapsed());
        if left.is_zero() {
            return false;
        }
        thread::sleep(pause.min(left));
        pause = (pause * 2).min(MAX_BUSY_PAUSE);
        true
    }))
}

/// Creates the tables in a database that has none, or checks the format of
/// those it has.
pub(crate) fn prepare(path: &Path, busy: Duration, conn: &mut Connection) -> Result<()> {
    let sqlite = |e| from_sqlite(path, busy, e);
    let txn = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    let exists: Option<String> = txn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'hostlock_meta'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sqlite)?;
    if exists.is_none() {
        txn.execute_batch(CREATE).map_err(sqlite)?;
        return txn.commit().map_err(sqlite);
    }
    let format: Option<i64> = txn
        .query_row(
            "SELECT value FROM hostlock_meta WHERE name = 'format'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sqlite)?;
    match format {
        Some(found) if found == i64::from(FORMAT) => Ok(()),
        Some(found) => Err(Error::UnsupportedVersion {
            path: path.to_owned(),
            found: u32::try_from(found).unwrap_or(u32::MAX),
            supported: FORMAT,
        }),
        None => Err(Error::Corrupted {
            path: path.to_owned(),
            detail: "the table hostlock_meta has no format version".to_owned(),
        }),
    }
}
