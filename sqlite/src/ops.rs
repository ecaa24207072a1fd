//! The decisions: reads and writes of the tables within one call's
//! transaction. Each function here runs inside `Inner::write` (a
//! `BEGIN IMMEDIATE` transaction, so what it reads cannot change before what
//! it writes) or `Inner::read` (a snapshot).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use hostlock::{Error, Holder, LockInfo, LockState, LockValue, Result};
use rusqlite::{Connection, OptionalExtension, params};
use serde::de::DeserializeOwned;

use crate::codec::{decode, from_db, time_of, to_db};
use crate::error::from_sqlite;
use crate::session::{self, Beat};

/// How long a live waiter whose turn has come may take to claim it before
/// it passes to the next (as with hostlock's own lockers): 1 s.
pub(crate) const TURN_GRACE: Duration = Duration::from_secs(1);

/// One call's view of the database.
pub(crate) struct Call<'a> {
    pub(crate) db: &'a Connection,
    pub(crate) path: &'a Path,
    pub(crate) busy: Duration,
    /// This handle's session.
    pub(crate) session: i64,
    /// The locker's clock, in nanoseconds since the epoch.
    pub(crate) now: u64,
    /// Real time, for sessions and waits.
    pub(crate) beat: Beat,
}

/// A stored lock.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) key: String,
    value: Vec<u8>,
    expires: Option<u64>,
    token: Option<String>,
    fence: i64,
    acquired: u64,
    pid: u32,
    session: Option<i64>,
}

const ROW: &str = "SELECT key, value, expires_at, token, fence, acquired_at, pid, session \
                   FROM hostlock_locks";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    // The value is JSON text; a BLOB (written by another program) is
    // decoded all the same, and fails as a wrong value if it is not JSON.
    let value = match r.get_ref(1)? {
        rusqlite::types::ValueRef::Text(bytes) | rusqlite::types::ValueRef::Blob(bytes) => {
            bytes.to_vec()
        }
        other => {
            return Err(rusqlite::Error::InvalidColumnType(
                1,
                "value".to_owned(),
                other.data_type(),
            ));
        }
    };
    Ok(Row {
        key: r.get(0)?,
        value,
        expires: r.get::<_, Option<i64>>(2)?.map(from_db),
        token: r.get(3)?,
        fence: r.get(4)?,
        acquired: from_db(r.get(5)?),
        pid: r.get(6)?,
        session: r.get(7)?,
    })
}

/// A waiter in a key's queue.
#[derive(Debug, Clone, Copy)]
struct Waiter {
    ticket: i64,
    session: i64,
    limit: Option<i64>,
    since: Option<i64>,
}

/// Whose turn it is, as [`Call::plan_turn`] decides.
#[derive(Debug, Default)]
struct Turn {
    /// Whether it is the asking ticket's turn.
    turn: bool,
    /// The waiters that leave: gone ones ahead, those whose turn passed,
    /// and the asking ticket itself when it is its turn.
    leaving: Vec<i64>,
    /// The live waiter ahead whose turn begins now.
    begin: Option<i64>,
}

impl Call<'_> {
    pub(crate) fn sql(&self, e: rusqlite::Error) -> Error {
        from_sqlite(self.path, self.busy, e)
    }

    /// The lock stored under `key`, live or not.
    pub(crate) fn load(&self, key: &str) -> Result<Option<Row>> {
        self.db
            .prepare_cached(&format!("{ROW} WHERE key = ?1"))
            .and_then(|mut s| s.query_row([key], row).optional())
            .map_err(|e| self.sql(e))
    }

    /// Every stored lock, ordered by key.
    pub(crate) fn all(&self) -> Result<Vec<Row>> {
        let mut stmt = self
            .db
            .prepare_cached(&format!("{ROW} ORDER BY key"))
            .map_err(|e| self.sql(e))?;
        stmt.query_map([], row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sql(e))
    }

    /// Whether `session` is alive now.
    fn alive(&self, session: i64) -> Result<bool> {
        session::is_alive(self.db, session, &self.beat).map_err(|e| self.sql(e))
    }

    /// Whether the lock counts: not expired on the locker's clock, and, if
    /// bound to a session, that session alive.
    pub(crate) fn state(&self, row: &Row) -> Result<LockState> {
        if row.expires.is_some_and(|at| at < self.now) {
            return Ok(LockState::Expired);
        }
        match row.session {
            Some(session) if !self.alive(session)? => Ok(LockState::HolderGone),
            _ => Ok(LockState::Live),
        }
    }

    pub(crate) fn is_live(&self, row: &Row) -> Result<bool> {
        Ok(self.state(row)? == LockState::Live)
    }

    /// The live lock under `key`, if there is one.
    pub(crate) fn live(&self, key: &str) -> Result<Option<Row>> {
        match self.load(key)? {
            Some(row) if self.is_live(&row)? => Ok(Some(row)),
            _ => Ok(None),
        }
    }

    /// The next value of a counter of `hostlock_meta`.
    fn next(&self, counter: &str) -> Result<i64> {
        self.db
            .prepare_cached(
                "UPDATE hostlock_meta SET value = value + 1 WHERE name = ?1 RETURNING value",
            )
            .and_then(|mut s| s.query_row([counter], |r| r.get(0)))
            .map_err(|e| self.sql(e))
    }

    /// Stores a lock under `key` with the next fence, replacing any entry,
    /// and returns the fence.
    pub(crate) fn store(
        &self,
        key: &str,
        value: &str,
        expires: Option<u64>,
        token: Option<&str>,
        session: Option<i64>,
    ) -> Result<u64> {
        let fence = self.next("fence")?;
        self.db
            .prepare_cached(
                "INSERT OR REPLACE INTO hostlock_locks \
                 (key, value, expires_at, token, fence, acquired_at, pid, session) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    key,
                    value,
                    expires.map(to_db),
                    token,
                    fence,
                    to_db(self.now),
                    std::process::id(),
                    session
                ])
            })
            .map_err(|e| self.sql(e))?;
        self.fence_of(fence)
    }

    fn fence_of(&self, fence: i64) -> Result<u64> {
        u64::try_from(fence).map_err(|_| Error::Corrupted {
            path: self.path.to_owned(),
            detail: format!("a fence is negative ({fence})"),
        })
    }

    /// Removes the entry under `key`.
    pub(crate) fn delete(&self, key: &str) -> Result<()> {
        self.db
            .prepare_cached("DELETE FROM hostlock_locks WHERE key = ?1")
            .and_then(|mut s| s.execute([key]))
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Sets the expiry of the entry under `key`, and unbinds it from its
    /// session if `unbind`.
    pub(crate) fn set_expiry(&self, key: &str, expires: Option<u64>, unbind: bool) -> Result<()> {
        let sql = if unbind {
            "UPDATE hostlock_locks SET expires_at = ?2, session = NULL WHERE key = ?1"
        } else {
            "UPDATE hostlock_locks SET expires_at = ?2 WHERE key = ?1"
        };
        self.db
            .prepare_cached(sql)
            .and_then(|mut s| s.execute(params![key, expires.map(to_db)]))
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// The lock under `key` as a caller of type `T` sees it.
    pub(crate) fn lock_value<T: DeserializeOwned>(&self, row: Row) -> Result<LockValue<T>> {
        let value = self.value(&row)?;
        Ok(LockValue {
            value,
            expires_at: row.expires.map(time_of),
            token: row.token,
        })
    }

    fn value<T: DeserializeOwned>(&self, row: &Row) -> Result<T> {
        decode(&row.value).map_err(|detail| Error::ValueType {
            path: self.path.to_owned(),
            key: row.key.clone(),
            expected: std::any::type_name::<T>(),
            detail,
        })
    }

    /// What inspection shows of a lock in `state`.
    pub(crate) fn info<T: DeserializeOwned>(
        &self,
        row: &Row,
        state: LockState,
    ) -> Result<LockInfo<T>> {
        let value = self.value(row)?;
        let mut info = LockInfo::new(row.key.clone(), value, state);
        info.expires_at = row.expires.map(time_of);
        info.has_token = row.token.is_some();
        info.fence = self.fence_of(row.fence)?;
        info.acquired_at = time_of(row.acquired);
        let alive = match row.session {
            Some(session) => Some(self.alive(session)?),
            None => None,
        };
        info.holder = Holder::new(row.pid, alive);
        Ok(info)
    }

    /// Whether `token` owns the entry.
    pub(crate) fn owned(row: &Row, token: &str) -> bool {
        row.token.as_deref() == Some(token)
    }

    // ---- waits ----

    /// Joins `key`'s queue, with a limit of `max_wait` from now, and
    /// returns the ticket.
    pub(crate) fn enqueue(&self, key: &str, max_wait: Option<Duration>) -> Result<u64> {
        let ticket = self.next("ticket")?;
        let limit = max_wait.and_then(|wait| {
            let wait = i64::try_from(wait.as_nanos()).ok()?;
            self.beat.wall.checked_add(wait)
        });
        self.db
            .prepare_cached(
                "INSERT INTO hostlock_queue (key, ticket, session, wait_limit, turn_since) \
                 VALUES (?1, ?2, ?3, ?4, NULL)",
            )
            .and_then(|mut s| s.execute(params![key, ticket, self.session, limit]))
            .map_err(|e| self.sql(e))?;
        self.fence_of(ticket)
    }

    pub(crate) fn dequeue(&self, key: &str, ticket: i64) -> Result<()> {
        self.db
            .prepare_cached("DELETE FROM hostlock_queue WHERE key = ?1 AND ticket = ?2")
            .and_then(|mut s| s.execute(params![key, ticket]))
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    pub(crate) fn waiters(&self, key: &str) -> Result<usize> {
        self.db
            .prepare_cached("SELECT count(*) FROM hostlock_queue WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get::<_, i64>(0)))
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .map_err(|e| self.sql(e))
    }

    fn queued(&self, key: &str) -> Result<Vec<Waiter>> {
        let mut stmt = self
            .db
            .prepare_cached(
                "SELECT ticket, session, wait_limit, turn_since FROM hostlock_queue \
                 WHERE key = ?1 ORDER BY ticket",
            )
            .map_err(|e| self.sql(e))?;
        stmt.query_map([key], |r| {
            Ok(Waiter {
                ticket: r.get(0)?,
                session: r.get(1)?,
                limit: r.get(2)?,
                since: r.get(3)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.sql(e))
    }

    /// Decides whose turn it is to take the free `key`: `ticket`'s once every
    /// waiter ahead of it is gone (its session dead, or its wait limit
    /// passed) or let its turn pass (without a ticket: once every waiter
    /// is). A live waiter ahead has [`TURN_GRACE`] from the beginning of its
    /// turn (now, if it had not begun) to claim it.
    fn plan_turn(&self, key: &str, ticket: Option<i64>) -> Result<Turn> {
        let grace = session::nanos(TURN_GRACE);
        let wall = self.beat.wall;
        let mut sessions = HashMap::new();
        let mut plan = Turn::default();
        for w in self.queued(key)? {
            if Some(w.ticket) == ticket {
                plan.leaving.push(w.ticket);
                plan.turn = true;
                return Ok(plan);
            }
            let passed = w
                .since
                .is_some_and(|since| wall.saturating_sub(since) > grace);
            let out_of_time = w.limit.is_some_and(|limit| limit <= wall);
            let gone = out_of_time
                || !match sessions.get(&w.session) {
                    Some(&alive) => alive,
                    None => {
                        let alive = self.alive(w.session)?;
                        sessions.insert(w.session, alive);
                        alive
                    }
                };
            if !passed && !gone {
                plan.begin = w.since.is_none().then_some(w.ticket);
                return Ok(plan);
            }
            plan.leaving.push(w.ticket);
        }
        // No one left ahead; a ticket no longer queued (passed over, or
        // dropped after its limit) may still take its turn.
        plan.turn = true;
        Ok(plan)
    }

    /// [`plan_turn`](Self::plan_turn), carried out: the waiters that leave
    /// leave, and a turn that begins is recorded.
    pub(crate) fn turn(&self, key: &str, ticket: Option<u64>) -> Result<bool> {
        let ticket = ticket.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        let plan = self.plan_turn(key, ticket)?;
        for leaving in &plan.leaving {
            self.dequeue(key, *leaving)?;
        }
        if let Some(begins) = plan.begin {
            self.db
                .prepare_cached(
                    "UPDATE hostlock_queue SET turn_since = ?3 WHERE key = ?1 AND ticket = ?2",
                )
                .and_then(|mut s| s.execute(params![key, begins, self.beat.wall]))
                .map_err(|e| self.sql(e))?;
        }
        Ok(plan.turn)
    }

    /// Whether the holder of `ticket` should try to take `key` now, from a
    /// read: the key is free and it is its turn, or a waiter ahead has a
    /// turn that has not begun (the attempt begins it, so that it can pass).
    pub(crate) fn may_take(&self, key: &str, ticket: Option<u64>) -> Result<bool> {
        if self.live(key)?.is_some() {
            return Ok(false);
        }
        let ticket = ticket.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        let plan = self.plan_turn(key, ticket)?;
        Ok(plan.turn || plan.begin.is_some())
    }

    /// How many waiters are queued for `key` ahead of `ticket` (without a
    /// ticket: how many are queued), gone ones included.
    pub(crate) fn ahead(&self, key: &str, ticket: Option<u64>) -> Result<u64> {
        let ticket = ticket.map_or(i64::MAX, |t| i64::try_from(t).unwrap_or(i64::MAX));
        self.db
            .prepare_cached("SELECT count(*) FROM hostlock_queue WHERE key = ?1 AND ticket < ?2")
            .and_then(|mut s| s.query_row(params![key, ticket], |r| r.get::<_, i64>(0)))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| self.sql(e))
    }

    // ---- cleanup ----

    /// The sessions that are dead now.
    fn dead_sessions(&self) -> Result<Vec<i64>> {
        let mut stmt = self
            .db
            .prepare_cached("SELECT id, boot, beat_mono, beat_wall, timeout FROM hostlock_sessions")
            .map_err(|e| self.sql(e))?;
        let rows: Vec<(i64, Option<String>, i64, i64, i64)> = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sql(e))?;
        Ok(rows
            .into_iter()
            .filter(|(_, boot, mono, wall, timeout)| {
                self.beat
                    .is_stale(boot.as_deref(), (*mono, *wall), *timeout)
            })
            .map(|(id, ..)| id)
            .collect())
    }

    /// The keys of the entries that no longer count: expired, or bound to a
    /// session that is dead or closed.
    fn litter(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .db
            .prepare_cached(
                "SELECT key, expires_at, session FROM hostlock_locks \
                 WHERE expires_at < ?1 OR session IS NOT NULL",
            )
            .map_err(|e| self.sql(e))?;
        let rows: Vec<(String, Option<i64>, Option<i64>)> = stmt
            .query_map([to_db(self.now)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for (key, expires, session) in rows {
            let expired = expires.is_some_and(|at| from_db(at) < self.now);
            let gone = match session {
                Some(session) if !expired => !self.alive(session)?,
                _ => false,
            };
            if expired || gone {
                out.push(key);
            }
        }
        Ok(out)
    }

    /// Whether the waits of dead or closed sessions, or past their limit,
    /// are still queued.
    fn stale_waits(&self) -> Result<bool> {
        self.db
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM hostlock_queue \
                 WHERE wait_limit <= ?1 \
                 OR session NOT IN (SELECT id FROM hostlock_sessions))",
            )
            .and_then(|mut s| s.query_row([self.beat.wall], |r| r.get(0)))
            .map_err(|e| self.sql(e))
    }

    /// Whether a sweep would find anything to remove.
    pub(crate) fn has_litter(&self) -> Result<bool> {
        Ok(
            !self.litter()?.is_empty()
                || !self.dead_sessions()?.is_empty()
                || self.stale_waits()?,
        )
    }

    /// Removes the entries that no longer count, the dead sessions, and the
    /// waits that are gone; returns how many entries were removed.
    pub(crate) fn sweep(&self) -> Result<usize> {
        let litter = self.litter()?;
        for key in &litter {
            self.delete(key)?;
        }
        for session in self.dead_sessions()? {
            self.db
                .prepare_cached("DELETE FROM hostlock_sessions WHERE id = ?1")
                .and_then(|mut s| s.execute([session]))
                .map_err(|e| self.sql(e))?;
        }
        self.db
            .prepare_cached(
                "DELETE FROM hostlock_queue WHERE wait_limit <= ?1 \
                 OR session NOT IN (SELECT id FROM hostlock_sessions)",
            )
            .and_then(|mut s| s.execute([self.beat.wall]))
            .map_err(|e| self.sql(e))?;
        Ok(litter.len())
    }
}
