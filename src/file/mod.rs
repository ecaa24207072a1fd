//! `FileLocker`: locks in one redb file shared by the processes of a host.
//!
//! - `mod.rs`: the type, its builder and its trait implementations;
//! - `store.rs`: one open of the file (its identity, the engine's database,
//!   the bounded wait for the write lock), `committer.rs` batching its writes;
//! - `schema.rs`: the tables and the decisions' reads and writes on them;
//! - `create.rs`: new files made whole; `trust.rs`: who could replace a path;
//! - `ranges.rs`: hostlock's own byte-range locks in the file (the only
//!   module that takes OS locks), `session.rs` the sessions built on them;
//! - `backend.rs`: the storage under the engine; `durability.rs`: relaxed
//!   commits and the boot they belong to; `cleanup.rs`: the sweeper thread.

#[cfg(feature = "tokio")]
mod aio;
mod backend;
mod cleanup;
mod committer;
mod create;
mod durability;
mod ranges;
mod schema;
mod session;
mod store;
mod trust;
mod wake;

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use redb::ReadableTable;
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::cleanup::{ErrorCallback, Sweeper};
pub use self::durability::Durability;
use self::schema::{Handed, LOCKS, Stored, Tables};
use self::store::{Store, storage_error};
use crate::clock::{Clock, SystemClock, monotonic_nanos};
use crate::error::{Error, Result};
use crate::guard::{Lease, RawLeaseLocker};
use crate::info::{Holder, InspectableLocker, LockInfo, LockState};
use crate::locker::{CleanableLocker, Locker, RenewableLocker};
use crate::value::{
    LockValue, Record, Request, check_expiry, check_key, check_lock, check_token, clamp_now,
    decode_value, encode_value, expiry_after, expiry_nanos, now_nanos, time_from_nanos,
};

/// How long a call waits for other writers before [`Error::Busy`], by default.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the background thread removes expired locks, by default.
pub const DEFAULT_CLEANUP_INTERVAL: Duration = Duration::from_secs(30);
/// The storage engine's page cache per open file, by default: 16 MiB.
pub const DEFAULT_CACHE_SIZE: usize = 16 << 20;
/// The permissions of a new lock file, by default: read and write for its
/// owner only, whatever the umask.
pub const DEFAULT_MODE: u32 = 0o600;

/// A locker whose locks live in one file, shared by every thread and process
/// of the host that opens it.
///
/// The file is a [redb](https://docs.rs/redb) database opened in its
/// multi-writer mode: each process keeps it open, and write transactions of
/// all processes take turns. Every lock decision (acquire, release, touch,
/// cleanup) is made inside one write transaction, and every change is on disk
/// (`fdatasync`) when the call returns, so locks survive the process and the
/// machine. Values are stored as CBOR, so a file can be read by a program that
/// does not know `T`.
///
/// Nothing else is kept beside the file: the sessions of open handles, the
/// election of the one that runs background cleanup and the serialisation of
/// opening are byte-range locks inside the file itself, so every path to the
/// file (a hard link, a symlink, a bind mount) shares one lock space. A new
/// file is private to its owner (mode 0600) unless
/// [`FileLockerBuilder::mode`] says otherwise; see "Security" in the README
/// for who can do what with a lock file.
///
/// `FileLocker` is `Send + Sync` and cheap to clone: clones share one open
/// database and one cleanup thread, which stops when the last clone is
/// dropped. Open a file once per process and clone the handle.
///
/// ```
/// use hostlock::{FileLocker, Locker, LockValue, RenewableLocker};
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir()?;
/// let locker: FileLocker<String> = FileLocker::open(dir.path().join("locks.redb"))?;
///
/// let lock = LockValue::new("nightly-report".to_string())
///     .with_ttl(Duration::from_secs(60))
///     .with_token("owner-1");
/// assert!(locker.acquire("report", lock)?);
/// assert!(locker.exists("report")?);
/// assert!(locker.release_if_owner("report", "owner-1")?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FileLocker<T> {
    inner: Arc<Inner>,
    value: PhantomData<fn() -> T>,
}

struct Inner {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    // Whether the trait's `acquire` binds locks to this handle's session.
    bind: bool,
    _sweeper: Option<Sweeper>,
}

impl<T> Clone for FileLocker<T> {
    fn clone(&self) -> FileLocker<T> {
        FileLocker {
            inner: Arc::clone(&self.inner),
            value: PhantomData,
        }
    }
}

impl<T> fmt::Debug for FileLocker<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileLocker")
            .field("path", &self.path())
            .field("background_cleanup", &self.inner._sweeper.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned> FileLocker<T> {
    /// Opens the lock file at `path`, creating it if it is missing, with the
    /// default settings of [`FileLockerBuilder`].
    ///
    /// # Errors
    /// See [`FileLockerBuilder::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<FileLocker<T>> {
        FileLocker::builder(path).open()
    }

    /// A builder to open the lock file at `path` with other settings.
    pub fn builder(path: impl AsRef<Path>) -> FileLockerBuilder<T> {
        FileLockerBuilder {
            path: path.as_ref().to_owned(),
            clock: Arc::new(SystemClock),
            cleanup_interval: DEFAULT_CLEANUP_INTERVAL,
            background_cleanup: true,
            bind_to_session: false,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            cache_size: DEFAULT_CACHE_SIZE,
            on_cleanup_error: Arc::new(cleanup::print_error),
            hooks: backend::Hooks::default(),
            durability: Durability::Immediate,
            mode: DEFAULT_MODE,
            trust: false,
            read_only: false,
            value: PhantomData,
        }
    }
}

/// What [`FileLocker::check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IntegrityReport {
    /// How many locks the file holds, live or not.
    pub locks: usize,
    /// Whether the storage engine found damage and repaired it.
    pub repaired: bool,
    /// What is wrong with hostlock's own tables (records that do not
    /// decode, index entries without their lock); empty if nothing.
    pub problems: Vec<String>,
    /// Whether the storage engine verified every page's checksum. A handle
    /// opened [read-only](FileLockerBuilder::read_only) cannot run the
    /// engine's check (it may repair), so it checks hostlock's tables only.
    pub engine_checked: bool,
}

impl<T> FileLocker<T> {
    /// Checks the whole file: the storage engine verifies every page's
    /// checksum (repairing what it can), then every lock record is decoded
    /// and the indexes are compared with the locks. Other processes go on
    /// using the file; their writes wait while the engine checks.
    ///
    /// # Errors
    /// [`Error::Corrupted`] for damage the engine could not repair, or a
    /// storage error.
    pub fn check(&self) -> Result<IntegrityReport> {
        let path = self.path();
        let engine_checked = !self.store().read_only();
        let repaired = engine_checked
            && self.store().with_own_handle(|db| {
                db.check_integrity()
                    .map(|passed| !passed)
                    .map_err(|e| storage_error(path, e))
            })?;
        let (locks, problems) = schema::audit(self.store())?;
        Ok(IntegrityReport {
            locks,
            repaired,
            problems,
            engine_checked,
        })
    }

    /// Gives the file's free space back to the file system. Returns `false`
    /// when there was nothing to compact.
    ///
    /// # Errors
    /// [`Error::Busy`] while another handle or process has a transaction
    /// open, or a storage error.
    pub fn compact(&self) -> Result<bool> {
        let path = self.path();
        self.store().with_own_handle(|db| {
            db.compact().map_err(|e| match e {
                redb::CompactionError::TransactionInProgress => Error::Busy {
                    path: path.to_owned(),
                    waited: Duration::ZERO,
                },
                other => storage_error(path, other),
            })
        })
    }

    /// Whether opening found a file left by relaxed commits
    /// ([`Durability::Relaxed`]) in an earlier boot of the host, and emptied
    /// it rather than trust it: after a power cut it may be torn. The locks it
    /// held are gone.
    pub fn started_fresh(&self) -> bool {
        self.inner.store.started_fresh()
    }

    /// A descriptor of this handle's open of the lock file that child
    /// processes inherit (it is not close-on-exec). While any process holds
    /// it, this handle's session stays alive, and so do the locks bound to it
    /// (guards, and `acquire` with
    /// [`bind_to_session`](FileLockerBuilder::bind_to_session)), even after
    /// this process has died: give it to a command run under a lock, and the
    /// lock lasts as long as the command, as with `flock(1)`. Expiries still
    /// apply.
    ///
    /// Drop it as soon as the child has started: until then, every process
    /// this one starts (from any thread) inherits it.
    ///
    /// ```
    /// use hostlock::{FileLocker, LeaseLocker};
    /// use std::process::Command;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let locker: FileLocker<()> = FileLocker::open(dir.path().join("locks.redb"))?;
    /// let guard = locker.try_lock("job", (), None)?.expect("free");
    /// let hold = locker.inheritable_session()?;
    /// let mut child = Command::new("true").spawn()?;
    /// drop(hold);
    /// child.wait()?;
    /// drop(guard);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::OpenedReadOnly`] for a read-only handle (it has no session),
    /// or an I/O error.
    pub fn inheritable_session(&self) -> Result<std::os::fd::OwnedFd> {
        // A lock handed to a waiter of this handle counts past its first
        // second only while the waiter's claim is held, through an open of
        // the file a child does not inherit: before the session outlives
        // this process, the hand-offs of the claimed locks are settled in
        // the file, and the claims are no longer needed.
        let claimed = self.store().claimed();
        if !claimed.is_empty() {
            self.decide(settle_op(claimed.clone()))?;
            for (key, token) in &claimed {
                self.store().drop_claim(key, token);
            }
        }
        self.store().inheritable()
    }

    /// The path of the lock file.
    pub fn path(&self) -> &Path {
        self.inner.store.path()
    }

    fn clock_now(&self) -> SystemTime {
        clamp_now(self.inner.clock.now())
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The stored bytes under `key`, from a read transaction.
    fn read_raw(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path();
        let read = self.store().begin_read()?;
        let locks = read.open_table(LOCKS).map_err(|e| storage_error(path, e))?;
        let found = locks.get(key).map_err(|e| storage_error(path, e))?;
        Ok(found.map(|guard| guard.value().to_vec()))
    }

    /// Stores a lock under `key` unless a lock that counts is there.
    fn grant(
        &self,
        key: &str,
        value: &[u8],
        token: Option<&str>,
        expiry: Expiry,
        session: Option<u64>,
        queue: Queue,
    ) -> Result<Granted> {
        let (op, attempted) = grant_op(key, value, token, expiry, session, queue);
        let granted = self.decide(op);
        self.settle_grant(key, granted, &attempted)
    }

    /// What a grant's caller does with its result: a failed commit may have
    /// reached the file all the same (when the last sync failed), so the
    /// lock is removed before anything else is read or written through this
    /// handle, if it is this very grant. A commit that failed earlier gave
    /// its fence to no one, so another grant of the key may carry the same
    /// fence.
    fn settle_grant(
        &self,
        key: &str,
        granted: Result<Granted>,
        attempted: &Attempted,
    ) -> Result<Granted> {
        let attempted = attempted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match (granted, attempted) {
            (Err(e), Some(bytes)) if !matches!(e, Error::Replaced { .. }) => {
                self.store().doubt(key, bytes);
                Err(e)
            }
            (granted, _) => granted,
        }
    }

    /// Moves the expiry of the live lock under `key` held with `token`; with
    /// `keep_session` false, also unbinds it from its holder's session.
    fn renew(
        &self,
        key: &str,
        token: &str,
        expires_at: Option<SystemTime>,
        keep_session: bool,
    ) -> Result<bool> {
        self.decide(renew_op(key, token, expires_at, keep_session)?)
    }

    /// Whether a stored lock counts: not expired and its holder not gone.
    fn state_of(&self, record: &Record<'_>, now: SystemTime) -> Result<LockState> {
        Ok(if record.is_expired_at(now) {
            LockState::Expired
        } else if self.store().holder_gone(record.session)? {
            LockState::HolderGone
        } else {
            LockState::Live
        })
    }

    /// Whether a live lock holds `key`, from a read transaction.
    fn held(&self, key: &str) -> Result<bool> {
        let Some(bytes) = self.read_raw(key)? else {
            return Ok(false);
        };
        let record = schema::decode_record(self.path(), key, &bytes)?;
        Ok(self.state_of(&record, self.clock_now())? == LockState::Live)
    }

    /// What the waiter holding `ticket` (or a caller without one) should do
    /// about `key` now, from one read transaction.
    fn next_step(&self, key: &str, ticket: Option<u64>) -> Result<Step> {
        let store = self.store();
        let view = schema::view(store, key, ticket)?;
        let live = |bytes: &[u8]| {
            let record = schema::decode_record(self.path(), key, bytes)?;
            Ok::<_, Error>(self.state_of(&record, self.clock_now())? == LockState::Live)
        };
        let free = match (&view.lock, view.handed) {
            (Some(bytes), Some(handed)) if Some(handed.ticket) == ticket => {
                if live(bytes)? {
                    return Ok(Step::Claim(bytes.clone(), handed));
                }
                // Expired before its waiter came to claim it.
                true
            }
            (None, _) => true,
            // Unclaimed past its grace: the next attempt takes it away.
            (Some(_), Some(handed))
                if handed.grace_over(monotonic_nanos())
                    && !store.turn_claimed(handed.ticket)? =>
            {
                true
            }
            (Some(bytes), _) => !live(bytes)?,
        };
        let gone = |session, limit| store.waiter_gone(session, limit);
        Ok(if free && view.is_turn(ticket, monotonic_nanos(), gone)? {
            Step::Try
        } else {
            Step::Wait
        })
    }

    /// Whether `key` is free and it is `ticket`'s turn, or a release handed
    /// it to `ticket`, from a read transaction.
    fn ready(&self, key: &str, ticket: Option<u64>) -> Result<bool> {
        Ok(!matches!(self.next_step(key, ticket)?, Step::Wait))
    }

    /// The encoded request of a waiter of this process for a lease of
    /// `value` (encoded), `ttl` and `token`.
    fn request(&self, value: &[u8], ttl: Option<Duration>, token: &str) -> Vec<u8> {
        Request {
            pid: std::process::id(),
            ttl: ttl.map(|ttl| u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX)),
            token,
            value,
        }
        .encode()
    }

    /// Claims for the waiter holding `ticket` and `token` the lock `bytes`
    /// that a release handed to it: its lease, or `None` if the lock is not
    /// its own or its turn is being taken away. The claim is a byte-range
    /// lock, which the waiter keeps until it releases the key.
    fn claim(
        &self,
        key: &str,
        token: &str,
        ticket: u64,
        bytes: &[u8],
        handed: Handed,
    ) -> Result<Option<Lease>> {
        let record = schema::decode_record(self.path(), key, bytes)?;
        if handed.ticket != ticket || record.token != Some(token) {
            return Ok(None);
        }
        // Once the claim byte is taken, no one can take the turn away; the
        // hand-off must still stand, or it was taken away just before.
        let store = self.store();
        let standing = || Ok(schema::view(store, key, None)?.handed == Some(handed));
        if !store.claim(key, token, ticket, standing)? {
            return Ok(None);
        }
        Ok(Some(Lease {
            fence: record.fence,
            expires_at: record.expires_at(),
        }))
    }

    /// Runs `f` on the lock tables in a write transaction (which it may
    /// share with other calls of this handle), with the time read after the
    /// transaction began, so no other writer can act between the time and
    /// the decision.
    fn decide<R: Send + 'static>(&self, f: impl Decision<R>) -> Result<R> {
        self.store().submit(timed(&self.inner.clock, f))
    }

    /// Like [`decide`](Self::decide), for async callers: queues `f` for the
    /// commit thread and returns at once, with the answer to await.
    #[cfg(feature = "tokio")]
    fn send<R: Send + 'static>(&self, f: impl Decision<R>) -> Result<committer::Pending<R>> {
        self.store().send(timed(&self.inner.clock, f))
    }
}

/// `f` as the store runs it: given the time on `clock`, read when the
/// operation runs in its transaction.
fn timed<R, D: Decision<R>>(
    clock: &Arc<dyn Clock>,
    mut f: D,
) -> impl FnMut(&Store, &mut Tables<'_>) -> Result<(R, bool)> + Send + 'static + use<R, D> {
    let clock = Arc::clone(clock);
    move |store, tables| f(store, tables, now_nanos(clamp_now(clock.now())))
}

/// A decision made in a write transaction (which it may share with other
/// calls of the handle), given the time read after the transaction began
/// (ns): its result, and whether it changed anything.
trait Decision<R>: FnMut(&Store, &mut Tables<'_>, u64) -> Result<(R, bool)> + Send + 'static {}

impl<R, F> Decision<R> for F where
    F: FnMut(&Store, &mut Tables<'_>, u64) -> Result<(R, bool)> + Send + 'static
{
}

/// The lock last stored by a grant, should its commit fail: its exact
/// bytes, which no other grant has (they hold its fence and the handle's
/// session).
type Attempted = Arc<Mutex<Option<Vec<u8>>>>;

/// The decision of a grant: stores a lock under `key` unless a lock that
/// counts is there (or, with a queue to respect, it is not this caller's
/// turn).
fn grant_op(
    key: &str,
    value: &[u8],
    token: Option<&str>,
    expiry: Expiry,
    session: Option<u64>,
    queue: Queue,
) -> (impl Decision<Granted> + use<>, Attempted) {
    let attempted = Arc::new(Mutex::new(None));
    let stored = Arc::clone(&attempted);
    let owned_key = key.to_owned();
    let value = value.to_vec();
    let token = token.map(str::to_owned);
    let op = move |store: &Store, tables: &mut Tables<'_>, now: u64| {
        let key = owned_key.as_str();
        let old = tables.get(key)?;
        if let Some(old) = &old
            && counts(store, tables, key, old, now)?
        {
            return Ok((Granted::Refused, false));
        }
        if let Queue::Respect(ticket) = queue {
            let gone = |session, limit| store.waiter_gone(session, limit);
            let (turn, dropped) = tables.take_turn(key, ticket, monotonic_nanos(), gone)?;
            if !turn {
                return Ok((Granted::Refused, dropped));
            }
        }
        // The new lock replaces any expired entry; one that is itself
        // already expired leaves the key free.
        let replaced = old.is_some();
        if let Some(old) = old {
            tables.remove(key, &old)?;
        }
        let expires = match expiry {
            Expiry::At(at) => at,
            Expiry::After(ttl) => {
                ttl.and_then(|ttl| expiry_nanos(expiry_after(time_from_nanos(now), ttl)))
            }
        };
        if expires.is_some_and(|at| at < now) {
            return Ok((Granted::Vacuous, replaced));
        }
        let record = Record {
            fence: tables.next_fence()?,
            acquired: now,
            pid: std::process::id(),
            expires,
            session,
            origin: Some(store.session()),
            token: token.as_deref(),
            value: &value,
        };
        tables.insert(key, &record)?;
        let lease = Lease {
            fence: record.fence,
            expires_at: record.expires_at(),
        };
        *stored.lock().unwrap_or_else(PoisonError::into_inner) = Some(record.encode());
        Ok((Granted::Stored(lease), true))
    };
    (op, attempted)
}

/// The decision of a renewal: moves the expiry of the live lock under `key`
/// held with `token`; with `keep_session` false, also unbinds it from its
/// holder's session.
fn renew_op(
    key: &str,
    token: &str,
    expires_at: Option<SystemTime>,
    keep_session: bool,
) -> Result<impl Decision<bool> + use<>> {
    check_key(key)?;
    check_token(token)?;
    let new_expiry = expires_at.map(check_expiry).transpose()?;
    let (key, token) = (key.to_owned(), token.to_owned());
    Ok(move |store: &Store, tables: &mut Tables<'_>, now: u64| {
        let key = key.as_str();
        if new_expiry.is_some_and(|at| at <= now) {
            return Ok((false, false));
        }
        let Some(old) = tables.get(key)? else {
            return Ok((false, false));
        };
        if old.token.as_deref() != Some(token.as_str()) || !counts(store, tables, key, &old, now)? {
            return Ok((false, false));
        }
        let stored = schema::decode_record(store.path(), key, &old.bytes)?;
        let renewed = Record {
            expires: new_expiry,
            session: stored.session.filter(|_| keep_session),
            ..stored
        };
        tables.remove(key, &old)?;
        tables.insert(key, &renewed)?;
        Ok((true, true))
    })
}

/// The decision of an owner's release: removes the lock under `key` if its
/// token is `token`; whether it counted.
fn release_op(key: &str, token: &str) -> Result<impl Decision<bool> + use<>> {
    check_key(key)?;
    check_token(token)?;
    let (key, token) = (key.to_owned(), token.to_owned());
    Ok(
        move |store: &Store, tables: &mut Tables<'_>, now: u64| match tables.get(&key)? {
            Some(old) if old.token.as_deref() == Some(token.as_str()) => {
                let held = counts(store, tables, &key, &old, now)?;
                tables.remove(&key, &old)?;
                hand_off(store, tables, &key, now)?;
                Ok((held, true))
            }
            _ => Ok((false, false)),
        },
    )
}

/// Has the waiters first in `key`'s queue woken once the running
/// transaction, which frees the key, commits.
fn wake_next(store: &Store, tables: &Tables<'_>, key: &str) -> Result<()> {
    for session in tables.first_waiters(key, 2)? {
        store.wake_after_commit(session);
    }
    Ok(())
}

/// Hands the key just freed to the first waiter in its queue still
/// waiting, if that waiter left its request: the lock it asked for is
/// stored in this transaction, with a fence of its own, and the waiter is
/// woken to claim it. A waiter that left no request, or one that does not
/// decode (then dropped), is woken to take the key itself, with the one
/// behind it.
fn hand_off(store: &Store, tables: &mut Tables<'_>, key: &str, now: u64) -> Result<()> {
    let mono = monotonic_nanos();
    let gone = |session, limit| store.waiter_gone(session, limit);
    let Some((waiter, request)) = tables.first_live_waiter(key, mono, gone)? else {
        return Ok(());
    };
    let Some(bytes) = request else {
        return wake_next(store, tables, key);
    };
    let Ok(request) = Request::decode(&bytes) else {
        tables.drop_request(key, waiter.ticket)?;
        return wake_next(store, tables, key);
    };
    let expires = request.ttl.and_then(|ttl| {
        expiry_nanos(expiry_after(
            time_from_nanos(now),
            Duration::from_nanos(ttl),
        ))
    });
    let record = Record {
        fence: tables.next_fence()?,
        acquired: now,
        pid: request.pid,
        expires,
        session: Some(waiter.session),
        origin: Some(waiter.session),
        token: Some(request.token),
        value: request.value,
    };
    tables.insert(key, &record)?;
    tables.note_handed(key, record.fence, waiter.ticket, mono)?;
    tables.dequeue(key, waiter.ticket)?;
    store.wake_after_commit(waiter.session);
    Ok(())
}

/// The decision that makes claimed hand-offs lasting: the note of the
/// hand-off of each lock under a key held with its token (of `claimed`) is
/// removed, so that the lock counts as any other.
fn settle_op(claimed: Vec<(String, String)>) -> impl Decision<()> + use<> {
    move |_: &Store, tables: &mut Tables<'_>, _: u64| {
        let mut changed = false;
        for (key, token) in &claimed {
            if let Some(stored) = tables.get(key)?
                && stored.token.as_deref() == Some(token.as_str())
            {
                changed |= tables.forget_handed(key, &stored)?;
            }
        }
        Ok(((), changed))
    }
}

/// The decision of a waiter joining `key`'s queue: its ticket.
fn enqueue_op(
    key: &str,
    session: u64,
    max_wait: Option<Duration>,
    request: Option<Vec<u8>>,
) -> Result<impl Decision<u64> + use<>> {
    check_key(key)?;
    let key = key.to_owned();
    // On the monotonic clock, which no one sets: a jump of the locker's
    // clock neither ends a wait early nor lets it outlast its limit.
    let limit = max_wait
        .and_then(|wait| u64::try_from(wait.as_nanos()).ok())
        .map_or(u64::MAX, |wait| monotonic_nanos().saturating_add(wait));
    Ok(move |_: &Store, tables: &mut Tables<'_>, _: u64| {
        Ok((
            tables.enqueue(&key, session, limit, request.as_deref())?,
            true,
        ))
    })
}

/// The decision of a waiter leaving `key`'s queue. A waiter that leaves
/// after a release handed it the key, without having claimed it, gives the
/// key back: it goes to the next waiter.
fn dequeue_op(key: &str, ticket: u64) -> Result<impl Decision<()> + use<>> {
    check_key(key)?;
    let key = key.to_owned();
    Ok(move |store: &Store, tables: &mut Tables<'_>, now: u64| {
        let left = tables.dequeue(&key, ticket)?;
        if left {
            // The next in line may be first now.
            wake_next(store, tables, &key)?;
            return Ok(((), true));
        }
        let Some(old) = tables.get(&key)? else {
            return Ok(((), false));
        };
        let handed = tables.handed(&key, &old)?;
        if handed.is_some_and(|h| h.ticket == ticket) && store.take_turn_away(ticket)? {
            tables.remove(&key, &old)?;
            hand_off(store, tables, &key, now)?;
            return Ok(((), true));
        }
        Ok(((), false))
    })
}

/// Whether a stored lock holds `key` at `now` (ns): not expired, its holder
/// not gone, and, if a release handed it to a waiter, claimed by the waiter
/// or still within the waiter's time to claim it. A hand-off this finds
/// unclaimed past that time is taken away for the rest of the transaction.
fn counts(
    store: &Store,
    tables: &Tables<'_>,
    key: &str,
    stored: &Stored,
    now: u64,
) -> Result<bool> {
    if stored.is_expired_at(now) || store.holder_gone(stored.session)? {
        return Ok(false);
    }
    match tables.handed(key, stored)? {
        Some(handed) if handed.grace_over(monotonic_nanos()) => {
            Ok(!store.take_turn_away(handed.ticket)?)
        }
        _ => Ok(true),
    }
}

/// What a caller of `acquire_lease` does next.
enum Step {
    /// Claims the lock a release handed to it (its bytes, its hand-off).
    Claim(Vec<u8>, Handed),
    /// Tries to take the key in a write.
    Try,
    /// Waits: the key is held, or it is not this caller's turn.
    Wait,
}

/// When a granted lock expires: at a given time, or a TTL after the decision.
#[derive(Clone, Copy)]
enum Expiry {
    At(Option<u64>),
    After(Option<Duration>),
}

/// Whether a grant waits its turn in the key's queue of waiters.
#[derive(Clone, Copy)]
enum Queue {
    /// The trait's `acquire`: a low-level primitive that does not queue.
    Ignore,
    /// A lease: granted only when it is the turn of this ticket (or, without
    /// one, when no one waits).
    Respect(Option<u64>),
}

enum Granted {
    Refused,
    /// Granted, but already expired: the key stays free.
    Vacuous,
    Stored(Lease),
}

impl<T: Serialize + DeserializeOwned> RawLeaseLocker<T> for FileLocker<T> {
    fn acquire_lease(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
        token: &str,
        ticket: Option<u64>,
    ) -> Result<Option<Lease>> {
        check_key(key)?;
        check_token(token)?;
        // Reads first: a key handed to this waiter is claimed without a
        // write, and a refused attempt takes no write lock from the holder
        // about to release, or from the waiters joining the queue.
        match (self.next_step(key, ticket)?, ticket) {
            (Step::Claim(bytes, handed), Some(ticket)) => {
                return self.claim(key, token, ticket, &bytes, handed);
            }
            (Step::Try, _) => {}
            _ => return Ok(None),
        }
        let value = encode_value(&value)?;
        let session = Some(self.store().session());
        let expiry = Expiry::After(ttl);
        let queue = Queue::Respect(ticket);
        match self.grant(key, &value, Some(token), expiry, session, queue)? {
            Granted::Stored(lease) => Ok(Some(lease)),
            Granted::Refused | Granted::Vacuous => Ok(None),
        }
    }

    fn detach(&self, key: &str, token: &str, expires_at: Option<SystemTime>) -> Result<bool> {
        self.renew(key, token, expires_at, false)
    }

    fn enqueue(&self, key: &str, max_wait: Option<Duration>) -> Result<u64> {
        self.store().listen();
        self.decide(enqueue_op(key, self.store().session(), max_wait, None)?)
    }

    fn enqueue_lease(
        &self,
        key: &str,
        max_wait: Option<Duration>,
        value: &T,
        ttl: Option<Duration>,
        token: &str,
    ) -> Result<u64> {
        check_token(token)?;
        let request = self.request(&encode_value(value)?, ttl, token);
        self.store().listen();
        let session = self.store().session();
        self.decide(enqueue_op(key, session, max_wait, Some(request))?)
    }

    fn dequeue(&self, key: &str, ticket: u64) -> Result<()> {
        self.decide(dequeue_op(key, ticket)?)
    }

    fn waiters(&self, key: &str) -> Result<usize> {
        check_key(key)?;
        schema::waiters(self.store(), key)
    }

    fn wait_for_release(&self, key: &str, ticket: Option<u64>, timeout: Duration) {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            // Read the count first, so a release committed meanwhile by this
            // handle is not missed.
            let seen = self.store().commits();
            if !matches!(self.ready(key, ticket), Ok(false)) {
                return;
            }
            let poll = self.store().poll_interval();
            let left = deadline.map_or(poll, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return;
            }
            // A release by this handle wakes the wait at once, and so does
            // one by another process, through its wake-up; a key freed
            // without one (an expiry, a holder that died) is seen at the
            // next look.
            self.store().wait_commit(seen, left.min(poll));
        }
    }
}

/// The longest busy timeout a handle accepts.
const MAX_BUSY_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Settings for opening a [`FileLocker`]; made by [`FileLocker::builder`].
///
/// ```
/// use hostlock::{FileLocker, ManualClock};
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir()?;
/// let clock = ManualClock::default();
/// let locker: FileLocker<u32> = FileLocker::builder(dir.path().join("locks.redb"))
///     .clock(clock.clone())
///     .cleanup_interval(Duration::from_secs(5))
///     .busy_timeout(Duration::from_secs(2))
///     .open()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a builder does nothing until `open` is called"]
pub struct FileLockerBuilder<T> {
    path: PathBuf,
    clock: Arc<dyn Clock>,
    cleanup_interval: Duration,
    background_cleanup: bool,
    bind_to_session: bool,
    busy_timeout: Duration,
    cache_size: usize,
    on_cleanup_error: ErrorCallback,
    hooks: backend::Hooks,
    durability: Durability,
    mode: u32,
    trust: bool,
    read_only: bool,
    value: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for FileLockerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileLockerBuilder")
            .field("path", &self.path)
            .field("cleanup_interval", &self.cleanup_interval)
            .field("background_cleanup", &self.background_cleanup)
            .field("bind_to_session", &self.bind_to_session)
            .field("busy_timeout", &self.busy_timeout)
            .field("cache_size", &self.cache_size)
            .field("durability", &self.durability)
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("trust_path", &self.trust)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned> FileLockerBuilder<T> {
    /// The clock that decides expiry (default: [`SystemClock`]). Inject a
    /// [`ManualClock`](crate::ManualClock) in tests.
    pub fn clock(mut self, clock: impl Clock + 'static) -> FileLockerBuilder<T> {
        self.clock = Arc::new(clock);
        self
    }

    /// How often the background thread removes expired locks (default:
    /// [`DEFAULT_CLEANUP_INTERVAL`]). Must not be zero.
    pub fn cleanup_interval(mut self, interval: Duration) -> FileLockerBuilder<T> {
        self.cleanup_interval = interval;
        self
    }

    /// Whether to run the background cleanup thread (default: `true`).
    ///
    /// Expired locks count as free whether or not they have been removed; the
    /// thread only reclaims their space. Without it, call
    /// [`CleanableLocker::cleanup`] yourself.
    pub fn background_cleanup(mut self, enabled: bool) -> FileLockerBuilder<T> {
        self.background_cleanup = enabled;
        self
    }

    /// Whether locks taken with [`Locker::acquire`] are bound to this
    /// handle's session (default: `false`).
    ///
    /// A bound lock counts only while the handle that took it is open: when
    /// its last clone drops or its process dies (even by SIGKILL), the lock
    /// is free for everyone at once, whatever its expiry. An unbound lock
    /// counts until it expires or is released, whoever is left. Locks are
    /// detected as orphaned through the handle's session slot, a byte-range
    /// lock in the file that the OS drops when the handle closes or its
    /// process dies, so a reused process id cannot keep a lock alive.
    pub fn bind_to_session(mut self, bind: bool) -> FileLockerBuilder<T> {
        self.bind_to_session = bind;
        self
    }

    /// How long a call waits for other writers before it fails with
    /// [`Error::Busy`] (default: [`DEFAULT_BUSY_TIMEOUT`]). Must not be zero.
    ///
    /// A write takes a few milliseconds, so the wait only runs out when
    /// another process stops or hangs in the middle of one.
    pub fn busy_timeout(mut self, timeout: Duration) -> FileLockerBuilder<T> {
        self.busy_timeout = timeout;
        self
    }

    /// The storage engine's page cache for this file, in bytes (default:
    /// [`DEFAULT_CACHE_SIZE`]).
    pub fn cache_size(mut self, bytes: usize) -> FileLockerBuilder<T> {
        self.cache_size = bytes;
        self
    }

    /// Receives the errors of the background cleanup (default: print one
    /// line to standard error). A busy file is not reported; the next tick
    /// tries again.
    pub fn on_cleanup_error(
        mut self,
        callback: impl Fn(&Error) + Send + Sync + 'static,
    ) -> FileLockerBuilder<T> {
        self.on_cleanup_error = Arc::new(callback);
        self
    }

    /// How far each change is on disk when its call returns (default:
    /// [`Durability::Immediate`]). See [`Durability`] for the trade-off.
    ///
    /// Processes may open one file with different settings; a relaxed one
    /// makes the whole file relaxed until the host reboots.
    pub fn durability(mut self, durability: Durability) -> FileLockerBuilder<T> {
        self.durability = durability;
        self
    }

    /// The permissions of the file if this call creates it (default:
    /// [`DEFAULT_MODE`], 0600), applied exactly, whatever the umask. Give
    /// `0o660` to share the locks with the file's group (put the file in a
    /// directory of that group, or `chgrp` it). An existing file keeps its
    /// mode.
    ///
    /// Anyone who can open the file can disrupt its locks (see "Security" in
    /// the README), so the owner must be able to read and write it and no one
    /// else may write it unless they share its group: the mode must include
    /// `0o600` and may add only group bits and other-read.
    pub fn mode(mut self, mode: u32) -> FileLockerBuilder<T> {
        self.mode = mode;
        self
    }

    /// Opens a lock file that another local user could replace (default:
    /// `false`, such a file is refused with [`Error::Untrusted`]): another
    /// user's file, or a symlink of theirs, in a directory anyone may write
    /// (such as `/tmp`), any file in a world-writable directory without the
    /// sticky bit, or a world-writable file. Whoever can replace the file can
    /// split its lock space, so two processes both think they hold a lock.
    /// Refusing by default is what keeps a shared `/tmp` safe; allow it only
    /// where every user who could do that is trusted.
    pub fn trust_path(mut self, trust: bool) -> FileLockerBuilder<T> {
        self.trust = trust;
        self
    }

    /// Opens an existing file for reading only (default: `false`): for a
    /// process that may read the lock file but not write it, or that must not
    /// change it. `exists`, `get`, `info`, `list` and [`FileLocker::check`]
    /// work and see every process's commits; every call that would change a
    /// lock fails with [`Error::OpenedReadOnly`], and no cleanup thread runs.
    /// Such a handle creates, lays out and locks nothing, and needs only read
    /// access to the file. A missing file is [`Error::NotFound`].
    pub fn read_only(mut self, read_only: bool) -> FileLockerBuilder<T> {
        self.read_only = read_only;
        self
    }

    /// Makes the file's storage fail on demand (see [`Faults`](crate::Faults)),
    /// to test how a program copes with a full disk or a failing device.
    /// Available with the `fault-injection` feature.
    #[cfg(feature = "fault-injection")]
    pub fn faults(mut self, faults: crate::Faults) -> FileLockerBuilder<T> {
        self.hooks.faults = Some(faults);
        self
    }

    /// Opens the lock file, creating it if missing: built whole under a
    /// temporary name in the same directory and linked into place, so no
    /// process ever sees half a file, and never through a symlink. Nothing
    /// else is created beside it.
    ///
    /// # Errors
    /// - [`Error::InvalidArgument`]: a zero cleanup interval or busy timeout,
    ///   a busy timeout over a day, or a mode that is not allowed.
    /// - [`Error::IsDirectory`], [`Error::NotFound`] (of the parent
    ///   directory), [`Error::PermissionDenied`], [`Error::ReadOnly`]: the
    ///   path cannot be used.
    /// - [`Error::Untrusted`]: another user could replace the file (see
    ///   [`trust_path`](Self::trust_path)).
    /// - [`Error::NotLockFile`] (also for a FIFO, a device or a socket),
    ///   [`Error::Corrupted`], [`Error::UnsupportedVersion`]: the file is not
    ///   one this build can use. It is left as it was.
    /// - [`Error::Busy`]: another process kept the file busy past the busy
    ///   timeout.
    pub fn open(self) -> Result<FileLocker<T>> {
        if self.busy_timeout.is_zero() {
            return Err(Error::invalid("busy timeout", "must be longer than zero"));
        }
        if self.busy_timeout > MAX_BUSY_TIMEOUT {
            return Err(Error::invalid(
                "busy timeout",
                "must be at most a day: a writer that holds the file longer is stuck",
            ));
        }
        if self.background_cleanup && self.cleanup_interval.is_zero() {
            return Err(Error::invalid(
                "cleanup interval",
                "must be longer than zero; turn the thread off with background_cleanup(false)",
            ));
        }
        if self.mode & !0o666 != 0 || self.mode & 0o600 != 0o600 || self.mode & 0o002 != 0 {
            return Err(Error::invalid(
                "mode",
                format!(
                    "{:04o} is not allowed: the owner must read and write the file, and only \
                     its group may write it too (e.g. 0600 or 0660)",
                    self.mode
                ),
            ));
        }
        let path = self.path;
        let mut hooks = self.hooks;
        hooks.relaxed = self.durability == Durability::Relaxed;
        let options = store::Options {
            cache_size: self.cache_size,
            busy_timeout: self.busy_timeout,
            hooks,
            durability: self.durability,
            mode: self.mode,
            trust: self.trust,
            read_only: self.read_only,
        };
        let store = Store::open(&path, options)?;
        let sweeper = if self.background_cleanup && !self.read_only {
            Some(Sweeper::spawn(
                Arc::clone(&store),
                Arc::clone(&self.clock),
                self.cleanup_interval,
                self.on_cleanup_error,
            )?)
        } else {
            None
        };
        Ok(FileLocker {
            inner: Arc::new(Inner {
                store,
                clock: self.clock,
                bind: self.bind_to_session,
                _sweeper: sweeper,
            }),
            value: PhantomData,
        })
    }
}

impl<T: DeserializeOwned> FileLocker<T> {
    fn decode_value(&self, key: &str, bytes: &[u8]) -> Result<T> {
        decode_value(bytes).map_err(|detail| Error::ValueType {
            path: self.path().to_owned(),
            key: key.to_owned(),
            expected: std::any::type_name::<T>(),
            detail,
        })
    }

    fn info_of(&self, key: &str, bytes: &[u8], now: SystemTime) -> Result<LockInfo<T>> {
        let record = schema::decode_record(self.path(), key, bytes)?;
        Ok(LockInfo {
            key: key.to_owned(),
            value: self.decode_value(key, record.value)?,
            expires_at: record.expires_at(),
            has_token: record.token.is_some(),
            fence: record.fence,
            acquired_at: time_from_nanos(record.acquired),
            holder: Holder {
                pid: record.pid,
                alive: match record.session {
                    None => None,
                    session => Some(!self.store().holder_gone(session)?),
                },
            },
            state: self.state_of(&record, now)?,
        })
    }
}

impl<T: Serialize + DeserializeOwned> InspectableLocker<T> for FileLocker<T> {
    fn info(&self, key: &str) -> Result<Option<LockInfo<T>>> {
        check_key(key)?;
        let now = self.clock_now();
        self.read_raw(key)?
            .map(|bytes| self.info_of(key, &bytes, now))
            .transpose()
    }

    fn list(&self, include_expired: bool) -> Result<Vec<Result<LockInfo<T>>>> {
        let path = self.path();
        let now = self.clock_now();
        let read = self.store().begin_read()?;
        let locks = read.open_table(LOCKS).map_err(|e| storage_error(path, e))?;
        let mut all = Vec::new();
        for entry in locks.iter().map_err(|e| storage_error(path, e))? {
            let (key, bytes) = entry.map_err(|e| storage_error(path, e))?;
            let (key, bytes) = (key.value(), bytes.value());
            // The entry's state, when its record can be read: a value that
            // does not decode is listed (as its error) only where a lock in
            // that state would be.
            let state = schema::decode_record(path, key, bytes)
                .ok()
                .map(|record| self.state_of(&record, now))
                .transpose()?;
            let shown = include_expired || state.is_none_or(|s| s == LockState::Live);
            if !shown {
                continue;
            }
            match self.info_of(key, bytes, now) {
                Err(e) if e.is_transient() => return Err(e),
                info => all.push(info),
            }
        }
        Ok(all)
    }
}

impl<T: Serialize + DeserializeOwned> Locker<T> for FileLocker<T> {
    fn exists(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        self.held(key)
    }

    fn get(&self, key: &str) -> Result<Option<LockValue<T>>> {
        check_key(key)?;
        let Some(bytes) = self.read_raw(key)? else {
            return Ok(None);
        };
        let record = schema::decode_record(self.path(), key, &bytes)?;
        if self.state_of(&record, self.clock_now())? != LockState::Live {
            return Ok(None);
        }
        Ok(Some(LockValue {
            value: self.decode_value(key, record.value)?,
            expires_at: record.expires_at(),
            token: record.token.map(str::to_owned),
        }))
    }

    fn acquire(&self, key: &str, lock: LockValue<T>) -> Result<bool> {
        check_lock(key, &lock)?;
        let value = encode_value(&lock.value)?;
        let expiry = Expiry::At(lock.expires_at.map(check_expiry).transpose()?);
        let session = self.inner.bind.then(|| self.store().session());
        let token = lock.token.as_deref();
        let granted = self.grant(key, &value, token, expiry, session, Queue::Ignore)?;
        Ok(!matches!(granted, Granted::Refused))
    }

    fn release(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        let key = key.to_owned();
        self.decide(
            move |store, tables, now| match tables.get_or_remove_damaged(&key)? {
                Ok(Some(old)) => {
                    let held = counts(store, tables, &key, &old, now)?;
                    tables.remove(&key, &old)?;
                    hand_off(store, tables, &key, now)?;
                    Ok((held, true))
                }
                Ok(None) => Ok((false, false)),
                // A record that does not decode holds nothing anyone can use.
                Err(_) => Ok((false, true)),
            },
        )
    }

    fn force_release(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let key = key.to_owned();
        self.decide(
            move |store, tables, now| match tables.get_or_remove_damaged(&key)? {
                Ok(Some(old)) => {
                    tables.remove(&key, &old)?;
                    hand_off(store, tables, &key, now)?;
                    Ok(((), true))
                }
                Ok(None) => Ok(((), false)),
                Err(_) => Ok(((), true)),
            },
        )
    }

    fn now(&self) -> SystemTime {
        self.clock_now()
    }

    fn lease_locker(&self) -> Option<Arc<dyn RawLeaseLocker<T> + Send + Sync>>
    where
        T: Send + Sync + 'static,
    {
        Some(Arc::new(self.clone()))
    }
}

impl<T: Serialize + DeserializeOwned> CleanableLocker<T> for FileLocker<T> {
    fn cleanup(&self) -> Result<usize> {
        self.store().cleanup(self.clock_now())
    }
}

impl<T: Serialize + DeserializeOwned> RenewableLocker<T> for FileLocker<T> {
    fn touch(&self, key: &str, token: &str, expires_at: SystemTime) -> Result<bool> {
        self.renew(key, token, Some(expires_at), true)
    }

    fn release_if_owner(&self, key: &str, token: &str) -> Result<bool> {
        let released = self.decide(release_op(key, token)?)?;
        self.store().drop_claim(key, token);
        Ok(released)
    }
}
