//! Sessions: how a handle shows that its process is alive, and how others
//! judge that it is not.
//!
//! Every open handle has a row in `hostlock_sessions` with a heartbeat that a
//! background thread refreshes every third of the session timeout. A
//! session whose heartbeat is older than its timeout is dead: its leases
//! and queued waits count as gone.
//!
//! Liveness is judged on real time, never on the locker's injected clock
//! (which tests move by hours). A heartbeat records two readings: the
//! host's monotonic clock, with the host's boot id, and the wall clock. An
//! observer on the same host and boot compares monotonic readings, which
//! jumps of the wall clock do not move (a wall clock set forward must not
//! make a living holder look dead); a heartbeat from another boot (before
//! a reboot) or another host is judged on the wall clock.

use std::path::Path;
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hostlock::{Error, Result};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::from_sqlite;

/// The real-time readings a heartbeat records and an observer compares.
#[derive(Debug, Clone)]
pub(crate) struct Beat {
    /// This boot of this host, if the system tells (Linux).
    pub(crate) boot: Option<&'static str>,
    /// The monotonic clock, in nanoseconds.
    pub(crate) mono: i64,
    /// The wall clock, in nanoseconds since the Unix epoch.
    pub(crate) wall: i64,
}

impl Beat {
    /// The readings now.
    pub(crate) fn now() -> Beat {
        let mono = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let mono = mono
            .tv_sec
            .saturating_mul(1_000_000_000)
            .saturating_add(mono.tv_nsec);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        Beat {
            boot: boot_id(),
            mono,
            wall,
        }
    }

    /// Whether a heartbeat recorded as `then` (with its boot id) is older
    /// than `timeout` nanoseconds, seen from these readings.
    pub(crate) fn is_stale(&self, then_boot: Option<&str>, then: (i64, i64), timeout: i64) -> bool {
        let (mono, wall) = then;
        let age = match (self.boot, then_boot) {
            (Some(now), Some(then)) if now == then => self.mono.saturating_sub(mono),
            _ => self.wall.saturating_sub(wall),
        };
        age > timeout
    }
}

/// The boot id of this host, read once.
fn boot_id() -> Option<&'static str> {
    static BOOT: OnceLock<Option<String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

/// Nanoseconds of a duration as stored, saturating.
pub(crate) fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Records a heartbeat of `session` now, re-creating its row if another
/// handle judged it dead and removed it (its leases are gone then, and its
/// guards find out; the handle itself goes on).
pub(crate) fn beat(conn: &Connection, session: i64, timeout: Duration) -> rusqlite::Result<()> {
    let beat = Beat::now();
    let changed = conn
        .prepare_cached(
            "UPDATE hostlock_sessions SET beat_mono = ?2, beat_wall = ?3, boot = ?4 WHERE id = ?1",
        )?
        .execute(params![session, beat.mono, beat.wall, beat.boot])?;
    if changed == 0 {
        conn.prepare_cached(
            "INSERT INTO hostlock_sessions (id, pid, boot, beat_mono, beat_wall, timeout) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            session,
            std::process::id(),
            beat.boot,
            beat.mono,
            beat.wall,
            nanos(timeout)
        ])?;
    }
    Ok(())
}

/// Whether `session` is alive, as the table says now.
pub(crate) fn is_alive(conn: &Connection, session: i64, now: &Beat) -> rusqlite::Result<bool> {
    let row = conn
        .prepare_cached(
            "SELECT boot, beat_mono, beat_wall, timeout FROM hostlock_sessions WHERE id = ?1",
        )?
        .query_row([session], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    Ok(row.is_some_and(|(boot, mono, wall, timeout)| {
        !now.is_stale(boot.as_deref(), (mono, wall), timeout)
    }))
}

/// The thread that keeps a session's heartbeat fresh. Dropping it stops and
/// joins the thread.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts beating for `session` every third of `timeout`, on a
    /// connection of its own, so that a long call of the handle never
    /// delays a beat.
    pub(crate) fn start(
        path: &Path,
        mut conn: Connection,
        session: i64,
        timeout: Duration,
    ) -> Result<Heartbeat> {
        let interval = timeout / 3;
        // A beat waits for the write lock no longer than until the next one.
        crate::schema::poll_when_busy(&mut conn, interval)
            .map_err(|e| from_sqlite(path, interval, e))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("hostlock-sqlite-heartbeat".into())
            .spawn(move || run(&conn, session, timeout, interval, &stopped))
            .map_err(|source| Error::Thread {
                name: "heartbeat",
                source,
            })?;
        Ok(Heartbeat {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

fn run(
    conn: &Connection,
    session: i64,
    timeout: Duration,
    interval: Duration,
    stopped: &Receiver<()>,
) {
    let mut wait = interval;
    loop {
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            // The handle closed (the sender dropped) or asked to stop.
            _ => return,
        }
        // A beat that fails (the database busy past the interval, an I/O
        // error) is tried again sooner; the session is judged dead only if
        // beats keep failing for the whole timeout.
        wait = match beat(conn, session, timeout) {
            Ok(()) => interval,
            Err(_) => interval / 4,
        };
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
