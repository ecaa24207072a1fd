//! The lock stores the benches compare, behind the same three operations:
//! acquire (store a lock if the key is free or its lock expired, in one
//! transaction), release (delete it) and get (read it).
//!
//! - `memory`: `MemoryLocker`, the in-process floor.
//! - `hostlock_immediate`, `hostlock_relaxed`: `FileLocker` in each
//!   `Durability`, one handle per process, cloned for each thread.
//! - `sqlite_full`, `sqlite_normal`: a lock table in SQLite (rusqlite with its
//!   bundled SQLite) in WAL mode with `synchronous=FULL` or `NORMAL`, one
//!   connection per thread, writes in `BEGIN IMMEDIATE` transactions, a busy
//!   timeout of 5 s.
//!
//! - `sqlite_locker`: `hostlock_sqlite::SqliteLocker`, the contract's locker
//!   over SQLite (WAL, `synchronous=FULL`, `BEGIN IMMEDIATE`, a session
//!   heartbeat), one handle per thread.
//! - `redis_locker`: `hostlock_redis::RedisLocker` against a `redis-server`
//!   the bench starts on a loopback port, with `appendonly yes` and
//!   `appendfsync always` (durable like `Durability::Immediate`), one handle
//!   per thread.
//!
//! Every lock carries a 60 s expiry. A call that finds the file busy past its
//! busy timeout is retried and counted ([`busy_retries`]), so that a starved
//! caller shows in the report instead of ending the run.

// Each bench binary uses a part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId};
use hostlock::{Durability, FileLocker, LockValue, Locker, MemoryLocker};
use hostlock_redis::RedisLocker;
use hostlock_sqlite::SqliteLocker;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

/// Runs `routine` (given a count of calls, it makes them and returns how
/// long they took) as the benchmark `id` of `group`. Returns the nanoseconds
/// per call of its last `samples` runs, criterion's samples without its
/// warm-up, or `None` if a filter left the benchmark out.
pub(crate) fn per_call_samples(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    samples: usize,
    mut routine: impl FnMut(u64) -> Duration,
) -> Option<Vec<f64>> {
    let mut calls = Vec::new();
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let took = routine(iters);
            calls.push(took.as_secs_f64() * 1e9 / iters as f64);
            took
        })
    });
    if calls.is_empty() {
        return None;
    }
    // Criterion calls the routine while warming up, then once per sample.
    Some(calls.split_off(calls.len() - calls.len().min(samples)))
}

/// The expiry of every lock the benches take.
pub(crate) const TTL: Duration = Duration::from_secs(60);

/// How long a store waits for another writer before it reports busy.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

static BUSY_RETRIES: AtomicU64 = AtomicU64::new(0);

/// How many calls found the store busy past its busy timeout and were retried.
pub(crate) fn busy_retries() -> u64 {
    BUSY_RETRIES.load(Ordering::Relaxed)
}

/// One lock store under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Memory,
    HostlockImmediate,
    HostlockRelaxed,
    SqliteFull,
    SqliteNormal,
    SqliteLocker,
    RedisLocker,
}

impl Kind {
    /// The stores that persist to a file, in report order.
    pub(crate) const FILES: [Kind; 4] = [
        Kind::HostlockImmediate,
        Kind::HostlockRelaxed,
        Kind::SqliteFull,
        Kind::SqliteNormal,
    ];

    /// The lockers of the sibling crates, shared between processes.
    pub(crate) const SIBLINGS: [Kind; 2] = [Kind::SqliteLocker, Kind::RedisLocker];

    /// Every store, in report order.
    pub(crate) const ALL: [Kind; 7] = [
        Kind::Memory,
        Kind::HostlockImmediate,
        Kind::HostlockRelaxed,
        Kind::SqliteFull,
        Kind::SqliteNormal,
        Kind::SqliteLocker,
        Kind::RedisLocker,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Memory => "memory",
            Kind::HostlockImmediate => "hostlock_immediate",
            Kind::HostlockRelaxed => "hostlock_relaxed",
            Kind::SqliteFull => "sqlite_full",
            Kind::SqliteNormal => "sqlite_normal",
            Kind::SqliteLocker => "sqlite_locker",
            Kind::RedisLocker => "redis_locker",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The baseline a hostlock store is held against: SQLite with the
    /// durability closest to its own.
    pub(crate) fn baseline(self) -> Option<Kind> {
        match self {
            Kind::HostlockImmediate => Some(Kind::SqliteFull),
            Kind::HostlockRelaxed => Some(Kind::SqliteNormal),
            _ => None,
        }
    }

    /// The file this store keeps in `dir`.
    pub(crate) fn path_in(self, dir: &Path) -> PathBuf {
        let extension = match self {
            Kind::SqliteFull | Kind::SqliteNormal | Kind::SqliteLocker => "sqlite",
            _ => "redb",
        };
        dir.join(format!("{}.{extension}", self.name()))
    }

    pub(crate) fn is_sqlite(self) -> bool {
        matches!(self, Kind::SqliteFull | Kind::SqliteNormal)
    }
}

/// A store opened once per process; [`Shared::handle`] gives each thread its
/// own way in.
#[derive(Debug)]
pub(crate) enum Shared {
    Memory(MemoryLocker<u64>),
    File(FileLocker<u64>),
    Sqlite(PathBuf, Synchronous),
    SqliteLocker(PathBuf),
    /// The server's URL, and the key prefix of this store.
    RedisLocker(String, String),
}

impl Shared {
    /// Opens (creating) the store of `kind` at `path`; `path` is unused for
    /// `memory`.
    pub(crate) fn open(kind: Kind, path: &Path) -> Shared {
        match kind {
            Kind::Memory => Shared::Memory(MemoryLocker::new()),
            Kind::HostlockImmediate => Shared::File(open_hostlock(path, Durability::Immediate)),
            Kind::HostlockRelaxed => Shared::File(open_hostlock(path, Durability::Relaxed)),
            Kind::SqliteFull | Kind::SqliteNormal => {
                let sync = if kind == Kind::SqliteFull {
                    Synchronous::Full
                } else {
                    Synchronous::Normal
                };
                drop(SqliteLocks::open(path, sync));
                Shared::Sqlite(path.to_owned(), sync)
            }
            Kind::SqliteLocker => {
                drop(open_sqlite_locker(path));
                Shared::SqliteLocker(path.to_owned())
            }
            Kind::RedisLocker => {
                let url = std::env::var(REDIS_URL)
                    .unwrap_or_else(|_| panic!("{REDIS_URL} names the bench's redis-server"));
                Shared::redis(&url, path)
            }
        }
    }

    /// The Redis locker on the server at `url`, under a prefix of `path`'s
    /// own: runs of the same bench share the server, not their keys.
    pub(crate) fn redis(url: &str, path: &Path) -> Shared {
        let prefix = format!("bench:{}:", path.display());
        drop(open_redis_locker(url, &prefix));
        Shared::RedisLocker(url.to_owned(), prefix)
    }

    /// A handle for one thread: a clone of the locker, or a new SQLite
    /// connection.
    pub(crate) fn handle(&self) -> Handle {
        match self {
            Shared::Memory(locker) => Handle::Memory(locker.clone()),
            Shared::File(locker) => Handle::File(locker.clone()),
            Shared::Sqlite(path, sync) => Handle::Sqlite(SqliteLocks::open(path, *sync)),
            Shared::SqliteLocker(path) => Handle::SqliteLocker(open_sqlite_locker(path)),
            Shared::RedisLocker(url, prefix) => Handle::RedisLocker(open_redis_locker(url, prefix)),
        }
    }
}

/// Opens a hostlock file as the benches use it: no cleanup thread.
pub(crate) fn open_hostlock(path: &Path, durability: Durability) -> FileLocker<u64> {
    FileLocker::builder(path)
        .durability(durability)
        .background_cleanup(false)
        .busy_timeout(BUSY_TIMEOUT)
        .open()
        .expect("open the hostlock file")
}

/// Opens the SQLite locker at `path` with the benches' busy timeout.
pub(crate) fn open_sqlite_locker(path: &Path) -> SqliteLocker<u64> {
    SqliteLocker::builder(path)
        .busy_timeout(BUSY_TIMEOUT)
        .open()
        .expect("open the SQLite locker")
}

/// Opens a Redis locker on the bench's server, under `prefix`.
pub(crate) fn open_redis_locker(url: &str, prefix: &str) -> RedisLocker<u64> {
    RedisLocker::builder(url)
        .prefix(prefix)
        .open()
        .expect("connect to the bench's redis-server")
}

/// The environment variable that gives a bench process the URL of the
/// `redis-server` its parent started.
pub(crate) const REDIS_URL: &str = "HOSTLOCK_BENCH_REDIS_URL";

/// A `redis-server` of the bench's own, on a free loopback port, in a
/// temporary directory, every write synced (`appendfsync always`); stopped
/// on drop.
pub(crate) struct RedisServer {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    url: String,
}

impl RedisServer {
    /// Starts the server. Child processes learn its URL through
    /// [`REDIS_URL`].
    pub(crate) fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server (Debian: apt-get install redis-server)");
        let url = format!("redis://127.0.0.1:{port}/");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer {
            child,
            _dir: dir,
            url,
        }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One thread's way into a store.
#[derive(Debug)]
pub(crate) enum Handle {
    Memory(MemoryLocker<u64>),
    File(FileLocker<u64>),
    Sqlite(SqliteLocks),
    SqliteLocker(SqliteLocker<u64>),
    RedisLocker(RedisLocker<u64>),
}

impl Handle {
    /// Takes `key` for [`TTL`] unless a lock that has not expired holds it.
    pub(crate) fn acquire(&self, key: &str, value: u64) -> bool {
        match self {
            Handle::Memory(locker) => locker_acquire(locker, key, value),
            Handle::File(locker) => locker_acquire(locker, key, value),
            Handle::Sqlite(sqlite) => sqlite.acquire(key, value, expiry_ms(TTL)),
            Handle::SqliteLocker(locker) => locker_acquire(locker, key, value),
            Handle::RedisLocker(locker) => locker_acquire(locker, key, value),
        }
    }

    /// Deletes the lock under `key`; whether it was held.
    pub(crate) fn release(&self, key: &str) -> bool {
        match self {
            Handle::Memory(locker) => locker_release(locker, key),
            Handle::File(locker) => locker_release(locker, key),
            Handle::Sqlite(sqlite) => sqlite.release(key),
            Handle::SqliteLocker(locker) => locker_release(locker, key),
            Handle::RedisLocker(locker) => locker_release(locker, key),
        }
    }

    /// The value of the lock that holds `key`, if any.
    pub(crate) fn get(&self, key: &str) -> Option<u64> {
        match self {
            Handle::Memory(locker) => locker.get(key).expect("get").map(|lock| lock.value),
            Handle::File(locker) => locker.get(key).expect("get").map(|lock| lock.value),
            Handle::Sqlite(sqlite) => sqlite.get(key),
            Handle::SqliteLocker(locker) => locker.get(key).expect("get").map(|lock| lock.value),
            Handle::RedisLocker(locker) => locker.get(key).expect("get").map(|lock| lock.value),
        }
    }
}

fn locker_acquire(locker: &impl Locker<u64>, key: &str, value: u64) -> bool {
    loop {
        match locker.acquire(key, LockValue::new(value).with_ttl(TTL)) {
            Ok(taken) => return taken,
            Err(hostlock::Error::Busy { .. }) => {
                BUSY_RETRIES.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("acquire {key}: {e}"),
        }
    }
}

fn locker_release(locker: &impl Locker<u64>, key: &str) -> bool {
    loop {
        match locker.release(key) {
            Ok(held) => return held,
            Err(hostlock::Error::Busy { .. }) => {
                BUSY_RETRIES.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("release {key}: {e}"),
        }
    }
}

/// Milliseconds since the epoch, `after` from now.
pub(crate) fn expiry_ms(after: Duration) -> i64 {
    let at = SystemTime::now() + after;
    let ms = at
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    i64::try_from(ms).expect("a time in range")
}

/// SQLite's `synchronous` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Synchronous {
    /// The WAL is synced at every commit: durable like `Durability::Immediate`.
    Full,
    /// The WAL is synced at checkpoints only: a power cut can lose the last
    /// commits but not tear the file.
    Normal,
}

/// The SQLite lock table: one connection.
pub(crate) struct SqliteLocks {
    conn: Connection,
}

impl std::fmt::Debug for SqliteLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLocks")
            .field("path", &self.conn.path())
            .finish()
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS locks (
        key TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL,
        expires_at INTEGER  -- ms since the epoch; NULL: never
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS locks_by_expiry ON locks (expires_at);
";

// Inserts the lock unless a live one holds the key; replaces an expired one.
const ACQUIRE: &str = "
    INSERT INTO locks (key, value, expires_at) VALUES (?1, ?2, ?3)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
    WHERE locks.expires_at IS NOT NULL AND locks.expires_at <= ?4";

const RELEASE: &str = "DELETE FROM locks WHERE key = ?1";

const GET: &str = "
    SELECT value FROM locks
    WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)";

const CLEANUP: &str = "DELETE FROM locks WHERE expires_at <= ?1";

impl SqliteLocks {
    /// Opens a connection to the lock table at `path`, creating it.
    pub(crate) fn open(path: &Path, sync: Synchronous) -> SqliteLocks {
        let conn = Connection::open(path).expect("open the SQLite file");
        conn.busy_timeout(BUSY_TIMEOUT).expect("busy timeout");
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .expect("WAL mode");
        assert_eq!(mode, "wal");
        let sync = match sync {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)
            .expect("synchronous");
        let locks = SqliteLocks { conn };
        locks.write(|conn| conn.execute_batch(SCHEMA));
        locks
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction and commits it; retries
    /// the whole of it while the database is busy past the busy timeout.
    pub(crate) fn write<R>(&self, mut f: impl FnMut(&Connection) -> rusqlite::Result<R>) -> R {
        loop {
            match self.try_write(&mut f) {
                Ok(result) => return result,
                Err(e) if is_busy(&e) => {
                    BUSY_RETRIES.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => panic!("SQLite write: {e}"),
            }
        }
    }

    fn try_write<R>(
        &self,
        f: &mut impl FnMut(&Connection) -> rusqlite::Result<R>,
    ) -> rusqlite::Result<R> {
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let result = f(&self.conn).and_then(|result| {
            self.conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(result)
        });
        if result.is_err() && !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        result
    }

    pub(crate) fn acquire(&self, key: &str, value: u64, expires_at: i64) -> bool {
        let value = i64::try_from(value).expect("a value in range");
        self.write(|conn| {
            let now = expiry_ms(Duration::ZERO);
            let changed = conn
                .prepare_cached(ACQUIRE)?
                .execute(params![key, value, expires_at, now])?;
            Ok(changed == 1)
        })
    }

    pub(crate) fn release(&self, key: &str) -> bool {
        self.write(|conn| Ok(conn.prepare_cached(RELEASE)?.execute([key])? == 1))
    }

    pub(crate) fn get(&self, key: &str) -> Option<u64> {
        let now = expiry_ms(Duration::ZERO);
        let value: Option<i64> = self
            .conn
            .prepare_cached(GET)
            .and_then(|mut get| {
                get.query_row(params![key, now], |row| row.get(0))
                    .optional()
            })
            .expect("SQLite get");
        value.map(|value| u64::try_from(value).expect("a stored value"))
    }

    /// Stores every `(key, expires_at)` of `locks` in one transaction.
    pub(crate) fn insert_many(&self, locks: impl Iterator<Item = (String, i64)> + Clone) {
        self.write(|conn| {
            let mut insert = conn.prepare_cached(
                "INSERT OR REPLACE INTO locks (key, value, expires_at) VALUES (?1, 0, ?2)",
            )?;
            for (key, expires_at) in locks.clone() {
                insert.execute(params![key, expires_at])?;
            }
            Ok(())
        });
    }

    /// Moves the WAL into the database file and empties it, so that the
    /// database file's size is the data's.
    pub(crate) fn checkpoint(&self) {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .expect("checkpoint");
    }

    /// Deletes every lock that expired by `now_ms`; how many.
    pub(crate) fn cleanup(&self, now_ms: i64) -> usize {
        self.write(|conn| conn.prepare_cached(CLEANUP)?.execute([now_ms]))
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(failure, _)
            if matches!(failure.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// The size of the file at `path`, in bytes.
pub(crate) fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).expect("file metadata").len()
}

/// `bytes` for a table: "12.3 MiB".
pub(crate) fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{size:.1} {}", UNITS[unit])
    }
}

/// `d` for a table, in the unit that suits it.
pub(crate) fn format_duration(d: Duration) -> String {
    let ns = d.as_secs_f64() * 1e9;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A rate for a table: "1,234" or "1.23 M".
pub(crate) fn format_rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2} M", per_second / 1e6)
    } else {
        let whole = per_second.round() as u64;
        let digits = whole.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    }
}

/// The median of `values` (which it sorts); NaN when empty.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// A number read from the environment variable `name`, or `default`.
pub(crate) fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {text:?}")),
        Err(_) => default,
    }
}

/// The load average line of `/proc/loadavg`, to print beside results.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}
