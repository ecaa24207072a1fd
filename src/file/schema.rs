//! The tables of a lock file and its format version.
//!
//! ```text
//! hostlock_meta    &str         -> u64   "format" = FORMAT_VERSION,
//!                                         "fence" = the last fence handed out,
//!                                         "ticket" = the last ticket handed out,
//!                                         "incarnation" = random, set at lay-out
//! hostlock_locks   &str (key)   -> &[u8] a value::Record
//! hostlock_expiry  (u64, &str)  -> ()    (expiry in ns since the epoch, key)
//! hostlock_holder  (u64, &str)  -> ()    (session of the holder, key)
//! hostlock_queue   (&str, u64)  -> (u64, u64, u64)
//!                                  (key, ticket) -> (session, wait limit,
//!                                  when its turn began), times in ns on the
//!                                  monotonic clock (0: not begun)
//! hostlock_requests (&str, u64) -> &[u8] (key, ticket) -> a value::Request: the
//!                                  lease a queued waiter asks for
//! hostlock_handed  &str (key)   -> (u64, u64, u64)
//!                                  (fence, ticket, when it was handed over,
//!                                  monotonic ns) of a lock a release handed
//!                                  to a queued waiter
//! ```
//!
//! A release hands the key to the first live waiter that left a request, in
//! its own transaction: the waiter finds the lock already its own. Until the
//! waiter claims it (by taking its ticket's claim byte, see `ranges.rs`), the
//! handed lock counts for `TURN_GRACE` only, as a turn does: a waiter stopped
//! before claiming holds no one up longer than one that never took its turn.
//! A handle that finds the grace over takes the claim byte itself before it
//! treats the key as free, so a claim and a taking-away never both succeed.
//! Files laid out before these two tables lack them until a write opens them,
//! and their readers read no hand-offs.
//!
//! The expiry index holds exactly the locks that have an expiry, so a cleanup
//! reads only the index entries that have expired. The holder index holds the
//! locks bound to a session, so a cleanup finds the locks of ended sessions by
//! looking at each session once. A session id carries its slot in its top 16
//! bits (see `session.rs`), so the sessions of one slot are one range of it.

use std::path::Path;

use redb::{ReadTransaction, ReadableTable, Table, TableDefinition, TableHandle, WriteTransaction};

use super::store::{Store, storage_error};
use crate::error::{Error, Result};
use crate::value::Record;

pub(crate) const META: TableDefinition<'static, &str, u64> = TableDefinition::new("hostlock_meta");
pub(crate) const LOCKS: TableDefinition<'static, &str, &[u8]> =
    TableDefinition::new("hostlock_locks");
pub(crate) const EXPIRY: TableDefinition<'static, (u64, &str), ()> =
    TableDefinition::new("hostlock_expiry");
pub(crate) const HOLDER: TableDefinition<'static, (u64, &str), ()> =
    TableDefinition::new("hostlock_holder");
pub(crate) const QUEUE: TableDefinition<'static, (&str, u64), (u64, u64, u64)> =
    TableDefinition::new("hostlock_queue");
pub(crate) const REQUESTS: TableDefinition<'static, (&str, u64), &[u8]> =
    TableDefinition::new("hostlock_requests");
pub(crate) const HANDED: TableDefinition<'static, &str, (u64, u64, u64)> =
    TableDefinition::new("hostlock_handed");

/// The version of the file layout above, stored under `FORMAT_KEY`. Version 1
/// kept sessions and open locks in a sidecar folder beside the file.
pub(crate) const FORMAT_VERSION: u64 = 2;
const FORMAT_KEY: &str = "format";
/// The last fence handed out, for any key: fences grow across the whole file,
/// so each key's fences grow however often it is released and taken again.
/// A new file starts at the wall clock in microseconds, above every fence a
/// file it replaced could have handed out (see docs/design.md).
const FENCE_KEY: &str = "fence";
/// The last waiter's ticket handed out, for any key.
const TICKET_KEY: &str = "ticket";
/// A random number chosen when the tables are laid out: a handle that finds
/// another one has seen its file emptied and laid out anew.
const INCARNATION_KEY: &str = "incarnation";

/// Checks that the database is a hostlock file this build can read, and lays
/// out the tables in a new one. Runs under the open lock. Returns the file's
/// incarnation.
pub(crate) fn check_or_init(store: &Store) -> Result<u64> {
    let path = store.path();
    let read = store.begin_read()?;
    let tables: Vec<String> = read
        .list_tables()
        .map_err(|e| storage_error(path, e))?
        .map(|t| t.name().to_owned())
        .collect();
    drop(read);
    if tables.iter().any(|t| t == META.name()) {
        return check_format(store);
    }
    if !tables.is_empty() {
        return Err(Error::NotLockFile {
            path: path.to_owned(),
            found: format!(
                "a database of another program, with tables {}",
                tables.join(", ")
            ),
        });
    }
    // Opening the tables in a write transaction lays them out.
    store.submit(|_, tables| {
        tables.lay_out()?;
        Ok(((), true))
    })?;
    check_format(store)
}

pub(crate) fn check_format(store: &Store) -> Result<u64> {
    let path = store.path();
    let read = store.begin_read()?;
    let meta = read.open_table(META).map_err(|e| storage_error(path, e))?;
    let found = meta
        .get(FORMAT_KEY)
        .map_err(|e| storage_error(path, e))?
        .map(|v| v.value());
    match found {
        None => Err(Error::Corrupted {
            path: path.to_owned(),
            detail: "its format version is missing".to_owned(),
        }),
        Some(FORMAT_VERSION) => {
            read.open_table(LOCKS).map_err(|e| storage_error(path, e))?;
            read.open_table(EXPIRY)
                .map_err(|e| storage_error(path, e))?;
            read.open_table(HOLDER)
                .map_err(|e| storage_error(path, e))?;
            read.open_table(QUEUE).map_err(|e| storage_error(path, e))?;
            meta.get(INCARNATION_KEY)
                .map_err(|e| storage_error(path, e))?
                .map(|v| v.value())
                .ok_or_else(|| Error::Corrupted {
                    path: path.to_owned(),
                    detail: "its incarnation is missing".to_owned(),
                })
        }
        Some(other) => Err(Error::UnsupportedVersion {
            path: path.to_owned(),
            found: u32::try_from(other).unwrap_or(u32::MAX),
            supported: FORMAT_VERSION as u32,
        }),
    }
}

/// What a write needs to know of a stored lock without decoding its value.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) bytes: Vec<u8>,
    pub(crate) fence: u64,
    pub(crate) expires: Option<u64>,
    pub(crate) session: Option<u64>,
    pub(crate) token: Option<String>,
}

impl Stored {
    pub(crate) fn is_expired_at(&self, now_nanos: u64) -> bool {
        self.expires.is_some_and(|at| at < now_nanos)
    }
}

/// The lock, index and meta tables, open in one write transaction.
pub(crate) struct Tables<'a> {
    path: &'a Path,
    meta: Table<'a, &'static str, u64>,
    locks: Table<'a, &'static str, &'static [u8]>,
    expiry: Table<'a, (u64, &'static str), ()>,
    holder: Table<'a, (u64, &'static str), ()>,
    queue: Table<'a, (&'static str, u64), (u64, u64, u64)>,
    requests: Table<'a, (&'static str, u64), &'static [u8]>,
    handed: Table<'a, &'static str, (u64, u64, u64)>,
}

impl<'a> Tables<'a> {
    pub(crate) fn open(path: &'a Path, tx: &'a WriteTransaction) -> Result<Tables<'a>> {
        Ok(Tables {
            path,
            meta: tx.open_table(META).map_err(|e| storage_error(path, e))?,
            locks: tx.open_table(LOCKS).map_err(|e| storage_error(path, e))?,
            expiry: tx.open_table(EXPIRY).map_err(|e| storage_error(path, e))?,
            holder: tx.open_table(HOLDER).map_err(|e| storage_error(path, e))?,
            queue: tx.open_table(QUEUE).map_err(|e| storage_error(path, e))?,
            requests: tx
                .open_table(REQUESTS)
                .map_err(|e| storage_error(path, e))?,
            handed: tx.open_table(HANDED).map_err(|e| storage_error(path, e))?,
        })
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<Stored>> {
        let Some(guard) = self
            .locks
            .get(key)
            .map_err(|e| storage_error(self.path, e))?
        else {
            return Ok(None);
        };
        let bytes = guard.value().to_vec();
        let record = decode_record(self.path, key, &bytes)?;
        let (expires, session, fence) = (record.expires, record.session, record.fence);
        let token = record.token.map(str::to_owned);
        Ok(Some(Stored {
            bytes,
            fence,
            expires,
            session,
            token,
        }))
    }

    /// Hands out the next fence: greater than every fence before it.
    pub(crate) fn next_fence(&mut self) -> Result<u64> {
        self.next(FENCE_KEY, "fence")
    }

    fn next(&mut self, counter: &str, what: &str) -> Result<u64> {
        let last = self
            .meta
            .get(counter)
            .map_err(|e| storage_error(self.path, e))?
            .map_or(0, |v| v.value());
        let next = last.checked_add(1).ok_or_else(|| Error::Corrupted {
            path: self.path.to_owned(),
            detail: format!("its {what} counter is exhausted"),
        })?;
        self.meta
            .insert(counter, next)
            .map_err(|e| storage_error(self.path, e))?;
        Ok(next)
    }

    /// Queues a waiter for `key` and returns its ticket; with a `request`
    /// (an encoded `value::Request`), the lease a release may hand it.
    pub(crate) fn enqueue(
        &mut self,
        key: &str,
        session: u64,
        limit: u64,
        request: Option<&[u8]>,
    ) -> Result<u64> {
        let ticket = self.next(TICKET_KEY, "ticket")?;
        self.queue
            .insert((key, ticket), (session, limit, 0))
            .map_err(|e| storage_error(self.path, e))?;
        if let Some(request) = request {
            self.requests
                .insert((key, ticket), request)
                .map_err(|e| storage_error(self.path, e))?;
        }
        Ok(ticket)
    }

    /// The hand-off of the lock `stored` under `key`, if a release handed it
    /// to a waiter and no one has stored another lock since.
    pub(crate) fn handed(&self, key: &str, stored: &Stored) -> Result<Option<Handed>> {
        let found = self
            .handed
            .get(key)
            .map_err(|e| storage_error(self.path, e))?
            .map(|v| Handed::from(v.value()));
        Ok(found.filter(|handed| handed.fence == stored.fence))
    }

    /// Notes that the lock just stored under `key` with `fence` was handed
    /// to the waiter holding `ticket`, at `since` (monotonic ns).
    pub(crate) fn note_handed(
        &mut self,
        key: &str,
        fence: u64,
        ticket: u64,
        since: u64,
    ) -> Result<()> {
        self.handed
            .insert(key, (fence, ticket, since.max(1)))
            .map_err(|e| storage_error(self.path, e))?;
        Ok(())
    }

    /// Removes the note of the hand-off of the lock `stored` under `key`,
    /// if there is one; says whether there was.
    pub(crate) fn forget_handed(&mut self, key: &str, stored: &Stored) -> Result<bool> {
        if self.handed(key, stored)?.is_none() {
            return Ok(false);
        }
        self.handed
            .remove(key)
            .map_err(|e| storage_error(self.path, e))?;
        Ok(true)
    }

    /// The first waiter for `key` still waiting, with the request it left
    /// (`None`: it left none). Removes the waiters ahead of it that `gone`
    /// says are gone or whose turn passed.
    pub(crate) fn first_live_waiter(
        &mut self,
        key: &str,
        now: u64,
        mut gone: impl FnMut(u64, u64) -> Result<bool>,
    ) -> Result<Option<(Waiting, Option<Vec<u8>>)>> {
        let mut leaving = Vec::new();
        let mut first = None;
        for w in queued_in(self.path, &self.queue, key, u64::MAX)? {
            let passed = w.since != 0 && now.saturating_sub(w.since) > TURN_GRACE;
            if passed || gone(w.session, w.limit)? {
                leaving.push(w.ticket);
            } else {
                first = Some(w);
                break;
            }
        }
        for ticket in leaving {
            self.dequeue(key, ticket)?;
        }
        let Some(w) = first else {
            return Ok(None);
        };
        let request = self
            .requests
            .get((key, w.ticket))
            .map_err(|e| storage_error(self.path, e))?
            .map(|v| v.value().to_vec());
        Ok(Some((w, request)))
    }

    /// Drops the request of the waiter holding `ticket`, which stays queued.
    pub(crate) fn drop_request(&mut self, key: &str, ticket: u64) -> Result<()> {
        self.requests
            .remove((key, ticket))
            .map_err(|e| storage_error(self.path, e))?;
        Ok(())
    }

    /// The sessions of the first `n` waiters queued for `key`: those to
    /// wake when the key is freed (the first may be gone).
    pub(crate) fn first_waiters(&self, key: &str, n: usize) -> Result<Vec<u64>> {
        let mut sessions = Vec::with_capacity(n);
        for entry in self
            .queue
            .range((key, 0u64)..=(key, u64::MAX))
            .map_err(|e| storage_error(self.path, e))?
            .take(n)
        {
            let (_, v) = entry.map_err(|e| storage_error(self.path, e))?;
            sessions.push(v.value().0);
        }
        Ok(sessions)
    }

    /// Removes a waiter and its request; says whether it was queued.
    pub(crate) fn dequeue(&mut self, key: &str, ticket: u64) -> Result<bool> {
        self.requests
            .remove((key, ticket))
            .map_err(|e| storage_error(self.path, e))?;
        Ok(self
            .queue
            .remove((key, ticket))
            .map_err(|e| storage_error(self.path, e))?
            .is_some())
    }

    /// Removes every queued waiter that `gone` says is gone, and returns how
    /// many.
    pub(crate) fn remove_gone_waiters(
        &mut self,
        mut gone: impl FnMut(u64, u64) -> Result<bool>,
    ) -> Result<usize> {
        let mut leaving = Vec::new();
        for entry in self.queue.iter().map_err(|e| storage_error(self.path, e))? {
            let (k, v) = entry.map_err(|e| storage_error(self.path, e))?;
            let (session, limit, _) = v.value();
            if gone(session, limit)? {
                let (key, ticket) = k.value();
                leaving.push((key.to_owned(), ticket));
            }
        }
        for (key, ticket) in &leaving {
            self.dequeue(key, *ticket)?;
        }
        Ok(leaving.len())
    }

    /// Whether it is `ticket`'s turn to take the free `key` (without a
    /// ticket: whether no one waits), removing the waiters ahead that `gone`
    /// says are gone or that let their turn pass, and the ticket itself when
    /// it is its turn. The turn of a live waiter ahead begins now if it had
    /// not. Returns the turn and whether anything changed.
    pub(crate) fn take_turn(
        &mut self,
        key: &str,
        ticket: Option<u64>,
        now: u64,
        gone: impl FnMut(u64, u64) -> Result<bool>,
    ) -> Result<(bool, bool)> {
        let waiters = queued(self.path, &self.queue, key, ticket)?;
        let decided = turn(&waiters, ticket, now, gone)?;
        for &number in &decided.leaving {
            self.dequeue(key, number)?;
        }
        let mut changed = !decided.leaving.is_empty();
        if let Some((number, session, limit)) = decided.begin {
            self.queue
                .insert((key, number), (session, limit, now.max(1)))
                .map_err(|e| storage_error(self.path, e))?;
            changed = true;
        }
        Ok((decided.turn, changed))
    }

    /// The entry under `key`, or, when its record does not decode, that
    /// error with the entry removed (its index entries too, found by a scan:
    /// damage is rare). For the calls that remove whatever is there.
    pub(crate) fn get_or_remove_damaged(&mut self, key: &str) -> Result<Result<Option<Stored>>> {
        match self.get(key) {
            Err(e @ Error::Corrupted { .. }) => {
                self.remove_damaged(key)?;
                Ok(Err(e))
            }
            other => Ok(other),
        }
    }

    /// Removes the entry under `key` whatever its bytes, with every index
    /// entry that names the key.
    fn remove_damaged(&mut self, key: &str) -> Result<()> {
        let path = self.path;
        self.locks.remove(key).map_err(|e| storage_error(path, e))?;
        self.handed
            .remove(key)
            .map_err(|e| storage_error(path, e))?;
        for at in numbers_naming(path, &self.expiry, key)? {
            self.expiry
                .remove((at, key))
                .map_err(|e| storage_error(path, e))?;
        }
        let sessions = numbers_naming(path, &self.holder, key)?;
        for session in sessions {
            self.holder
                .remove((session, key))
                .map_err(|e| storage_error(path, e))?;
        }
        Ok(())
    }

    /// Removes the entry under `key` and its index entries.
    pub(crate) fn remove(&mut self, key: &str, stored: &Stored) -> Result<()> {
        if let Some(at) = stored.expires {
            self.expiry
                .remove((at, key))
                .map_err(|e| storage_error(self.path, e))?;
        }
        self.remove_except_expiry(key, stored)
    }

    /// Removes the entry under `key` and its holder index entry, for a
    /// caller that has taken its expiry index entry out already.
    fn remove_except_expiry(&mut self, key: &str, stored: &Stored) -> Result<()> {
        self.locks
            .remove(key)
            .map_err(|e| storage_error(self.path, e))?;
        self.handed
            .remove(key)
            .map_err(|e| storage_error(self.path, e))?;
        if let Some(session) = stored.session {
            self.holder
                .remove((session, key))
                .map_err(|e| storage_error(self.path, e))?;
        }
        Ok(())
    }

    /// Lays out a new file: this build's format version, the fence counter
    /// started at the wall clock in microseconds, and a new incarnation.
    pub(crate) fn lay_out(&mut self) -> Result<()> {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2));
        let incarnation = crate::guard::random_u64().max(1);
        for (key, value) in [
            (FORMAT_KEY, FORMAT_VERSION),
            (FENCE_KEY, micros),
            (INCARNATION_KEY, incarnation),
        ] {
            if self.meta_value(key)?.is_none() {
                self.meta
                    .insert(key, value)
                    .map_err(|e| storage_error(self.path, e))?;
            }
        }
        Ok(())
    }

    fn meta_value(&self, key: &str) -> Result<Option<u64>> {
        Ok(self
            .meta
            .get(key)
            .map_err(|e| storage_error(self.path, e))?
            .map(|v| v.value()))
    }

    /// The file's incarnation (see `INCARNATION_KEY`).
    pub(crate) fn incarnation(&self) -> Result<Option<u64>> {
        self.meta_value(INCARNATION_KEY)
    }

    /// Removes what sessions of `slot` other than `own` left: their locks and
    /// their queued waits. Its new holder runs this: the slot's earlier
    /// sessions have ended. Returns whether anything was removed.
    pub(crate) fn purge_slot(&mut self, slot: u64, own: u64) -> Result<bool> {
        let (first, last) = super::session::range_of(slot);
        let gone = |session: u64| Ok(session != own && (first..=last).contains(&session));
        let removed = self.remove_orphans_in(first, last, gone)?;
        let left = self.remove_gone_waiters(|session, _| gone(session))?;
        Ok(removed + left > 0)
    }

    /// Removes the lock under `key` if its stored bytes are `record`'s.
    pub(crate) fn remove_if_exactly(&mut self, key: &str, record: &[u8]) -> Result<()> {
        if let Some(old) = self.get(key)?
            && old.bytes == record
        {
            self.remove(key, &old)?;
        }
        Ok(())
    }

    /// Stores `record` under `key`, which must hold no entry.
    pub(crate) fn insert(&mut self, key: &str, record: &Record<'_>) -> Result<()> {
        self.locks
            .insert(key, record.encode().as_slice())
            .map_err(|e| storage_error(self.path, e))?;
        if let Some(at) = record.expires {
            self.expiry
                .insert((at, key), ())
                .map_err(|e| storage_error(self.path, e))?;
        }
        if let Some(session) = record.session {
            self.holder
                .insert((session, key), ())
                .map_err(|e| storage_error(self.path, e))?;
        }
        Ok(())
    }

    /// Removes every lock bound to a session for which `ended` says so, and
    /// returns how many. Asks once per session that holds locks.
    pub(crate) fn remove_orphans(
        &mut self,
        ended: impl FnMut(u64) -> Result<bool>,
    ) -> Result<usize> {
        self.remove_orphans_in(0, u64::MAX, ended)
    }

    /// [`Tables::remove_orphans`] for the sessions from `from` to `last`.
    fn remove_orphans_in(
        &mut self,
        mut from: u64,
        last: u64,
        mut ended: impl FnMut(u64) -> Result<bool>,
    ) -> Result<usize> {
        let mut removed = 0;
        loop {
            let next = self
                .holder
                .range((from, "")..)
                .map_err(|e| storage_error(self.path, e))?
                .next()
                .transpose()
                .map_err(|e| storage_error(self.path, e))?
                .map(|(k, _)| k.value().0);
            let Some(session) = next.filter(|&session| session <= last) else {
                return Ok(removed);
            };
            if ended(session)? {
                let mut keys = Vec::new();
                let range = match session.checked_add(1) {
                    Some(next) => self.holder.range((session, "")..(next, "")),
                    None => self.holder.range((session, "")..),
                };
                for entry in range.map_err(|e| storage_error(self.path, e))? {
                    let (k, _) = entry.map_err(|e| storage_error(self.path, e))?;
                    keys.push(k.value().1.to_owned());
                }
                for key in keys {
                    match self.get_or_remove_damaged(&key)? {
                        Ok(Some(stored)) if stored.session == Some(session) => {
                            self.remove(&key, &stored)?;
                            removed += 1;
                        }
                        Err(_) => removed += 1,
                        // A damaged index: drop the entry alone.
                        _ => {
                            self.holder
                                .remove((session, key.as_str()))
                                .map_err(|e| storage_error(self.path, e))?;
                        }
                    }
                }
            }
            match session.checked_add(1) {
                Some(next) => from = next,
                None => return Ok(removed),
            }
        }
    }

    /// Removes every entry whose expiry is before `now_nanos` and returns how
    /// many locks were removed. Reads only the expired part of the index,
    /// and takes it out in one pass.
    pub(crate) fn remove_expired(&mut self, now_nanos: u64) -> Result<usize> {
        let path = self.path;
        let mut expired = Vec::new();
        for entry in self
            .expiry
            .extract_from_if(..(now_nanos, ""), |_, ()| true)
            .map_err(|e| storage_error(path, e))?
        {
            let (index_key, _) = entry.map_err(|e| storage_error(path, e))?;
            let (at, key) = index_key.value();
            expired.push((key.to_owned(), at));
        }
        // In key order, consecutive removals walk neighbouring paths of the
        // lock table, whose pages are then still in the cache.
        expired.sort_unstable();
        let mut removed = 0;
        for (key, at) in expired {
            // The index and the lock table change together, so the lock has
            // this expiry; checking keeps a damaged index from removing a live lock.
            match self.get_or_remove_damaged(&key)? {
                Ok(Some(stored)) if stored.expires == Some(at) => {
                    self.remove_except_expiry(&key, &stored)?;
                    removed += 1;
                }
                Err(_) => removed += 1,
                Ok(_) => {}
            }
        }
        Ok(removed)
    }
}

/// The numbers (expiries, sessions) of an index keyed by (number, key) whose
/// entries name `key`: a scan of the whole index.
fn numbers_naming(
    path: &Path,
    index: &impl ReadableTable<(u64, &'static str), ()>,
    key: &str,
) -> Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in index.iter().map_err(|e| storage_error(path, e))? {
        let (k, _) = entry.map_err(|e| storage_error(path, e))?;
        let (number, named) = k.value();
        if named == key {
            numbers.push(number);
        }
    }
    Ok(numbers)
}

/// Whether a lock that expired before `nanos` is still stored, from a read
/// transaction: one look at the first entry of the expiry index.
pub(crate) fn expired_before(store: &Store, nanos: u64) -> Result<bool> {
    first_expired_before(store.path(), &store.begin_read()?, nanos)
}

/// Whether the expiry index's first entry is before `nanos`, in `read`.
fn first_expired_before(path: &Path, read: &ReadTransaction, nanos: u64) -> Result<bool> {
    let expiry = read
        .open_table(EXPIRY)
        .map_err(|e| storage_error(path, e))?;
    let first = expiry.first().map_err(|e| storage_error(path, e))?;
    Ok(first.is_some_and(|(k, _)| k.value().0 < nanos))
}

/// Whether a cleanup would find anything, from a read transaction: the
/// cheap check made before writing. Something has expired before
/// `now_nanos`, a session holding locks has ended by `ended`, or a queued
/// waiter is gone by `waiter_gone`.
pub(crate) fn anything_to_clean(
    store: &Store,
    now_nanos: u64,
    mut ended: impl FnMut(u64) -> Result<bool>,
    mut waiter_gone: impl FnMut(u64, u64) -> Result<bool>,
) -> Result<bool> {
    let path = store.path();
    let read = store.begin_read()?;
    if first_expired_before(path, &read, now_nanos)? {
        return Ok(true);
    }
    let queue = read.open_table(QUEUE).map_err(|e| storage_error(path, e))?;
    for entry in queue.iter().map_err(|e| storage_error(path, e))? {
        let (session, limit, _) = entry.map_err(|e| storage_error(path, e))?.1.value();
        if waiter_gone(session, limit)? {
            return Ok(true);
        }
    }
    let holder = read
        .open_table(HOLDER)
        .map_err(|e| storage_error(path, e))?;
    let mut from = 0u64;
    loop {
        let next = holder
            .range((from, "")..)
            .map_err(|e| storage_error(path, e))?
            .next()
            .transpose()
            .map_err(|e| storage_error(path, e))?
            .map(|(k, _)| k.value().0);
        let Some(session) = next else {
            return Ok(false);
        };
        if ended(session)? {
            return Ok(true);
        }
        match session.checked_add(1) {
            Some(next) => from = next,
            None => return Ok(false),
        }
    }
}

pub(crate) fn decode_record<'b>(path: &Path, key: &str, bytes: &'b [u8]) -> Result<Record<'b>> {
    Record::decode(bytes).map_err(|detail| Error::Corrupted {
        path: path.to_owned(),
        detail: format!("the lock {key:?} does not decode: {detail}"),
    })
}

/// How long a live waiter whose turn has come (or to which a release handed
/// the key) may take to claim it before it passes to the next: a waiter
/// stopped (SIGSTOP) or hung in its wait holds the others up this long at
/// most.
pub(crate) const TURN_GRACE: u64 = 1_000_000_000;

/// A lock a release handed to a queued waiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Handed {
    /// The fence of the handed lock: the hand-off holds while it is stored.
    pub(crate) fence: u64,
    /// The waiter's ticket, which names its claim byte.
    pub(crate) ticket: u64,
    /// When it was handed over (monotonic ns).
    pub(crate) since: u64,
}

impl From<(u64, u64, u64)> for Handed {
    fn from((fence, ticket, since): (u64, u64, u64)) -> Handed {
        Handed {
            fence,
            ticket,
            since,
        }
    }
}

impl Handed {
    /// Whether the waiter's time to claim it is over at `now` (monotonic
    /// ns): then, unless it claimed it, the lock no longer counts.
    pub(crate) fn grace_over(&self, now: u64) -> bool {
        now.saturating_sub(self.since) > TURN_GRACE
    }
}

/// What a waiter needs to know of `key`, from one read transaction: the
/// lock stored under it, its hand-off if a release handed it to a waiter,
/// and the waiters queued as far as they decide the turn of `ticket`.
pub(crate) struct View {
    pub(crate) lock: Option<Vec<u8>>,
    pub(crate) handed: Option<Handed>,
    waiters: Vec<Waiting>,
}

impl View {
    /// Whether `ticket` should try to take the key once free: it is its
    /// turn, or a waiter ahead has a turn that has not begun (the attempt
    /// begins it, so that it can pass).
    pub(crate) fn is_turn(
        &self,
        ticket: Option<u64>,
        now: u64,
        gone: impl FnMut(u64, u64) -> Result<bool>,
    ) -> Result<bool> {
        let decided = turn(&self.waiters, ticket, now, gone)?;
        Ok(decided.turn || decided.begin.is_some())
    }
}

/// Reads the [`View`] of `key` for `ticket`. A file without the hand-off
/// table has no hand-offs.
pub(crate) fn view(store: &Store, key: &str, ticket: Option<u64>) -> Result<View> {
    let path = store.path();
    let read = store.begin_read()?;
    let locks = read.open_table(LOCKS).map_err(|e| storage_error(path, e))?;
    let lock = locks
        .get(key)
        .map_err(|e| storage_error(path, e))?
        .map(|v| v.value().to_vec());
    let handed = match (&lock, read.open_table(HANDED)) {
        (None, _) | (_, Err(redb::TableError::TableDoesNotExist(_))) => None,
        (Some(bytes), Ok(table)) => {
            let found = table
                .get(key)
                .map_err(|e| storage_error(path, e))?
                .map(|v| Handed::from(v.value()));
            let fence = decode_record(path, key, bytes)?.fence;
            found.filter(|handed| handed.fence == fence)
        }
        (_, Err(e)) => return Err(storage_error(path, e)),
    };
    let queue = read.open_table(QUEUE).map_err(|e| storage_error(path, e))?;
    let waiters = queued(path, &queue, key, ticket)?;
    Ok(View {
        lock,
        handed,
        waiters,
    })
}

/// A waiter queued for a key.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Waiting {
    pub(crate) ticket: u64,
    pub(crate) session: u64,
    limit: u64,
    /// When its turn began (monotonic ns), 0 if it has not.
    since: u64,
}

/// The waiters queued for `key`, in order, as far as they decide the turn of
/// `ticket`: up to it, when it is queued (the waiters behind it do not
/// count); all of them otherwise (a newcomer, or a ticket that lost its
/// place, comes after every waiter still queued).
fn queued(
    path: &Path,
    queue: &impl ReadableTable<(&'static str, u64), (u64, u64, u64)>,
    key: &str,
    ticket: Option<u64>,
) -> Result<Vec<Waiting>> {
    if let Some(ticket) = ticket {
        let ahead = queued_in(path, queue, key, ticket)?;
        if ahead.last().is_some_and(|w| w.ticket == ticket) {
            return Ok(ahead);
        }
    }
    queued_in(path, queue, key, u64::MAX)
}

/// The waiters queued for `key` with a ticket up to `upto`, in order.
fn queued_in(
    path: &Path,
    queue: &impl ReadableTable<(&'static str, u64), (u64, u64, u64)>,
    key: &str,
    upto: u64,
) -> Result<Vec<Waiting>> {
    let mut waiters = Vec::new();
    for entry in queue
        .range((key, 0u64)..=(key, upto))
        .map_err(|e| storage_error(path, e))?
    {
        let (k, v) = entry.map_err(|e| storage_error(path, e))?;
        let (session, limit, since) = v.value();
        waiters.push(Waiting {
            ticket: k.value().1,
            session,
            limit,
            since,
        });
    }
    Ok(waiters)
}

/// Whose turn it is, as [`turn`] decides.
struct Turn {
    /// Whether it is the asking ticket's turn.
    turn: bool,
    /// The tickets that leave the queue: the gone ones ahead, those whose
    /// turn passed, and the asking ticket itself when it is its turn.
    leaving: Vec<u64>,
    /// The live waiter ahead whose turn begins now: (ticket, session, limit).
    begin: Option<(u64, u64, u64)>,
}

/// Decides whose turn it is to take a free key among `waiters`: `ticket`'s
/// once every waiter ahead of it is gone or let its turn pass (without a
/// ticket, once every waiter is). A live waiter ahead has `TURN_GRACE` from
/// the beginning of its turn (`now` if it had none) to claim it.
fn turn(
    waiters: &[Waiting],
    ticket: Option<u64>,
    now: u64,
    mut gone: impl FnMut(u64, u64) -> Result<bool>,
) -> Result<Turn> {
    let mut leaving = Vec::new();
    for w in waiters {
        if Some(w.ticket) == ticket {
            leaving.push(w.ticket);
            return Ok(Turn {
                turn: true,
                leaving,
                begin: None,
            });
        }
        let passed = w.since != 0 && now.saturating_sub(w.since) > TURN_GRACE;
        if !passed && !gone(w.session, w.limit)? {
            let begin = (w.since == 0).then_some((w.ticket, w.session, w.limit));
            return Ok(Turn {
                turn: false,
                leaving,
                begin,
            });
        }
        leaving.push(w.ticket);
    }
    // No one left ahead; a ticket no longer queued (dropped as gone after
    // its wait limit, or passed over) may still take its turn.
    Ok(Turn {
        turn: true,
        leaving,
        begin: None,
    })
}

/// The incarnation recorded in a meta table.
pub(crate) fn incarnation_in(
    path: &Path,
    meta: &impl ReadableTable<&'static str, u64>,
) -> Result<Option<u64>> {
    Ok(meta
        .get(INCARNATION_KEY)
        .map_err(|e| storage_error(path, e))?
        .map(|v| v.value()))
}

/// Whether sessions of `slot` other than `own` left locks or waits, from a
/// read transaction: the check before [`Tables::purge_slot`] writes.
pub(crate) fn slot_has_leftovers(store: &Store, slot: u64, own: u64) -> Result<bool> {
    let path = store.path();
    let read = store.begin_read()?;
    let (first, last) = super::session::range_of(slot);
    let holder = read
        .open_table(HOLDER)
        .map_err(|e| storage_error(path, e))?;
    for entry in holder
        .range((first, "")..)
        .map_err(|e| storage_error(path, e))?
    {
        let session = entry.map_err(|e| storage_error(path, e))?.0.value().0;
        if session > last {
            break;
        }
        if session != own {
            return Ok(true);
        }
    }
    let queue = read.open_table(QUEUE).map_err(|e| storage_error(path, e))?;
    for entry in queue.iter().map_err(|e| storage_error(path, e))? {
        let (session, _, _) = entry.map_err(|e| storage_error(path, e))?.1.value();
        if session != own && (first..=last).contains(&session) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// How many waiters are queued for `key`, from a read transaction.
pub(crate) fn waiters(store: &Store, key: &str) -> Result<usize> {
    let path = store.path();
    let read = store.begin_read()?;
    let queue = read.open_table(QUEUE).map_err(|e| storage_error(path, e))?;
    Ok(queued(path, &queue, key, None)?.len())
}

/// Decodes every lock and compares the indexes with the locks, from a read
/// transaction. Returns the number of locks and the problems found.
pub(crate) fn audit(store: &Store) -> Result<(usize, Vec<String>)> {
    let path = store.path();
    let read = store.begin_read()?;
    let locks = read.open_table(LOCKS).map_err(|e| storage_error(path, e))?;
    let mut problems = Vec::new();
    let mut count = 0;
    let mut expiries = std::collections::BTreeSet::new();
    let mut holders = std::collections::BTreeSet::new();
    for entry in locks.iter().map_err(|e| storage_error(path, e))? {
        let (key, bytes) = entry.map_err(|e| storage_error(path, e))?;
        count += 1;
        let key = key.value().to_owned();
        match Record::decode(bytes.value()) {
            Ok(record) => {
                if let Some(at) = record.expires {
                    expiries.insert((at, key.clone()));
                }
                if let Some(session) = record.session {
                    holders.insert((session, key));
                }
            }
            Err(detail) => problems.push(format!("lock {key:?} does not decode: {detail}")),
        }
    }
    let expiry = read
        .open_table(EXPIRY)
        .map_err(|e| storage_error(path, e))?;
    audit_index(path, &expiry, "expiry", &expiries, &mut problems)?;
    let holder = read
        .open_table(HOLDER)
        .map_err(|e| storage_error(path, e))?;
    audit_index(path, &holder, "holder", &holders, &mut problems)?;
    Ok((count, problems))
}

/// Compares an index keyed by (number, key) with the entries the locks say
/// it should hold, adding what differs to `problems`.
fn audit_index(
    path: &Path,
    index: &impl ReadableTable<(u64, &'static str), ()>,
    name: &str,
    expected: &std::collections::BTreeSet<(u64, String)>,
    problems: &mut Vec<String>,
) -> Result<()> {
    let mut indexed = 0;
    for entry in index.iter().map_err(|e| storage_error(path, e))? {
        let (k, _) = entry.map_err(|e| storage_error(path, e))?;
        let (number, key) = k.value();
        indexed += 1;
        if !expected.contains(&(number, key.to_owned())) {
            problems.push(format!(
                "the {name} index names {key:?}, whose lock does not match"
            ));
        }
    }
    if indexed < expected.len() {
        problems.push(format!(
            "{} locks are missing from the {name} index",
            expected.len() - indexed
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use redb::{Database, ReadableDatabase, ReadableTable};

    use super::{EXPIRY, LOCKS, Tables};
    use crate::value::Record;

    fn record(expires: Option<u64>, session: Option<u64>) -> Record<'static> {
        Record {
            fence: 1,
            acquired: 0,
            pid: 0,
            expires,
            session,
            origin: None,
            token: None,
            value: b"v",
        }
    }

    /// A cleanup takes out exactly the expired locks, whatever the order of
    /// their expiry times, with their index entries; an index entry that no
    /// longer matches its lock goes alone.
    #[test]
    fn remove_expired_takes_the_expired_locks_and_their_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks.redb");
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut tables = Tables::open(&path, &tx).unwrap();
            // Expiry order unlike key order; two live, one without expiry.
            for (key, at) in [
                ("d", 40),
                ("a", 30),
                ("c", 10),
                ("b", 20),
                ("e", 500),
                ("f", 900),
            ] {
                let session = (key == "b").then_some(7);
                tables.insert(key, &record(Some(at), session)).unwrap();
            }
            tables.insert("g", &record(None, None)).unwrap();
            // A stale entry for a live lock, as a damaged index might hold.
            tables.expiry.insert((5, "e"), ()).unwrap();
            assert_eq!(tables.remove_expired(100).unwrap(), 4);
            for gone in ["a", "b", "c", "d"] {
                assert!(tables.get(gone).unwrap().is_none(), "{gone} expired");
            }
            for kept in ["e", "f", "g"] {
                assert!(tables.get(kept).unwrap().is_some(), "{kept} lives");
            }
            assert!(tables.holder.get((7, "b")).unwrap().is_none());
        }
        tx.commit().unwrap();
        let read = db.begin_read().unwrap();
        let index: Vec<(u64, String)> = read
            .open_table(EXPIRY)
            .unwrap()
            .iter()
            .unwrap()
            .map(|entry| {
                let (key, _) = entry.unwrap();
                let (at, key) = key.value();
                (at, key.to_owned())
            })
            .collect();
        assert_eq!(index, [(500, "e".to_owned()), (900, "f".to_owned())]);
        assert_eq!(read.open_table(LOCKS).unwrap().iter().unwrap().count(), 3);
    }
}
