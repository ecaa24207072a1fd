//! One open redb database shared between processes, and the bounded wait for
//! its write lock.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use redb::{
    ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase,
    TransactionError, WriteTransaction,
};

use super::backend::{Backend, Hooks, Identity, OpenDeadline};
use super::committer::{Committer, Job};
use super::create::{self, Content, HEADER_LEN};
use super::durability::{self, Durability};
use super::ranges::{Held, Ranges};
use super::schema::{self, Tables};
use super::session::Session;
use super::trust;
use crate::clock::monotonic_nanos;
use crate::error::{Error, Result};
use crate::value::now_nanos;

/// The longest pause between two attempts to begin a write while another
/// process writes. A process that writes without pause leaves gaps of a few
/// microseconds between its transactions; polling often keeps the others
/// from starving (an attempt costs a few microseconds).
const MAX_POLL: Duration = Duration::from_micros(250);
/// For how long a writer that waits looks again after `NEAR_POLL` at most:
/// about as long as a commit of another process lasts.
const NEAR: Duration = Duration::from_millis(2);
const NEAR_POLL: Duration = Duration::from_micros(40);

/// An open lock file.
pub(crate) struct Store {
    // Declared (so dropped) before the session and `_member`: the database is
    // closed before this handle stops counting as a user of the file.
    // Replaced by a fresh handle after a failed write (see `recover`).
    db: RwLock<Arc<Engine>>,
    // Set when a write failed in the storage: the engine refuses further use
    // of that handle until the file is opened again.
    broken: AtomicBool,
    recovering: Mutex<()>,
    // Grants whose commit failed: (key, the record's exact bytes) of locks to
    // remove should the commit have reached the file regardless.
    doubtful: Mutex<Vec<(String, Vec<u8>)>>,
    path: PathBuf,
    // This handle's own open of the file: its byte-range locks (`ranges`)
    // belong to it. The engine works on descriptions of its own, opened
    // through it (see `open_engine`).
    file: File,
    identity: Identity,
    // The file's incarnation when it was opened (0 until it is known).
    incarnation: AtomicU64,
    options: Options,
    // Whether opening emptied a relaxed file from an earlier boot.
    started_fresh: bool,
    // Runs this handle's writes, several to a transaction when they queue
    // up; set once, right after the store is made.
    committer: OnceLock<Committer>,
    // Counts this handle's commits and the wake-ups it was sent; waiters
    // for a key look again when it moves.
    changes: Arc<Changes>,
    // The sessions to wake once the running transaction commits: those
    // first in the queues of the keys it frees.
    to_wake: Mutex<Vec<u64>>,
    // Claim bytes the running transaction took to take a handed key away
    // from a waiter that did not claim it in time; let go once it ends.
    taken_away: Mutex<Vec<Held>>,
    // This handle's second open of the file, through which its waiters
    // claim the keys handed to them (see `ranges.rs`); opened when first
    // needed.
    claims: OnceLock<Arc<Ranges>>,
    // The claims this handle's waiters made, by (key, token), kept until
    // the lock is released.
    claimed: Mutex<HashMap<(String, String), Held>>,
    // Async writes between their start and their answer.
    #[cfg(feature = "tokio")]
    pub(crate) async_in_flight: std::sync::atomic::AtomicUsize,
    // Listens for wake-ups from other processes, once a waiter needs them;
    // `None` inside when the socket could not be bound.
    listener: OnceLock<Option<super::wake::Listener>>,
    // None for a read-only handle, which binds nothing and is no member.
    session: Option<Session>,
    _member: Option<Held>,
    ranges: Arc<Ranges>,
}

/// What a handle's waiters wait for: its commits, and wake-ups from other
/// processes.
#[derive(Debug, Default)]
struct Changes {
    count: Mutex<u64>,
    changed: Condvar,
    #[cfg(feature = "tokio")]
    signal: crate::signal::Signal,
}

impl Changes {
    fn bump(&self) {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.changed.notify_all();
        #[cfg(feature = "tokio")]
        self.signal.notify();
    }
}

/// The storage engine's handle: a writer, or a reader of a file this
/// process opened read-only.
enum Engine {
    Writer(Database),
    Reader(ReadOnlyDatabase),
}

impl Engine {
    fn begin_read(&self) -> Result<ReadTransaction, TransactionError> {
        match self {
            Engine::Writer(db) => db.begin_read(),
            Engine::Reader(db) => db.begin_read(),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// How the database is opened; kept to open it again.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) cache_size: usize,
    pub(crate) busy_timeout: Duration,
    pub(crate) hooks: Hooks,
    pub(crate) durability: Durability,
    /// The mode of a file this handle creates.
    pub(crate) mode: u32,
    /// Whether to skip the checks of who else could replace the file.
    pub(crate) trust: bool,
    /// Whether to open an existing file for reading only.
    pub(crate) read_only: bool,
}

impl Store {
    /// Opens the lock file at `path` in multi-writer mode, creating it whole
    /// if it is missing, waiting at most the busy timeout for other processes.
    ///
    /// The lock space is the file the path names when the open lock is taken:
    /// if the path was replaced while this waited, it starts over with the
    /// new file. The first handle to open the file (no other handle of any
    /// process has it open) checks the whole file: redb trusts a file it
    /// closed cleanly and may panic on one damaged since, where the check
    /// reports the damage.
    pub(crate) fn open(path: &Path, options: Options) -> Result<Arc<Store>> {
        let start = Instant::now();
        loop {
            let waited = start.elapsed();
            if waited >= options.busy_timeout {
                return Err(Error::Busy {
                    path: path.to_owned(),
                    waited,
                });
            }
            if !trust::check_path(path, options.trust)? {
                if options.read_only {
                    return Err(Error::NotFound {
                        path: path.to_owned(),
                    });
                }
                // Then open what is there: this file, or another opener's.
                create::create(path, &options)?;
                continue;
            }
            if options.read_only {
                return Store::open_read_only(path, options);
            }
            if fs::metadata(path).is_ok_and(|meta| meta.permissions().readonly()) {
                // Root may write to a file whose mode forbids it; a lock file
                // marked read-only was meant not to change.
                return Err(Error::ReadOnly {
                    path: path.to_owned(),
                });
            }
            let file = match open_file(path) {
                Ok(file) => file,
                // Removed since it was looked at: create it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(path, "open", e)),
            };
            let meta = file.metadata().map_err(|e| Error::io(path, "inspect", e))?;
            trust::check_opened(path, &meta, options.trust)?;
            let identity = Identity::of_meta(&meta);
            let ranges = Ranges::new(
                file.try_clone().map_err(|e| Error::io(path, "open", e))?,
                path,
            )?;
            let left = options.busy_timeout.saturating_sub(start.elapsed());
            let opening = ranges.lock_open(left)?;
            if Identity::at(path).map_err(|e| Error::io(path, "inspect", e))? != Some(identity) {
                continue;
            }
            if create::classify(&file, path)? == Content::Leftover {
                create::lay_out_in_place(&file, path, &options)?;
            }
            let deadline = start + options.busy_timeout;
            let store = Store::open_locked(path, file, identity, ranges, options, deadline)?;
            drop(opening);
            return Ok(store);
        }
    }

    /// Opens an existing file for reading only: it takes no lock that needs
    /// write access, creates and lays out nothing, and joins no session.
    fn open_read_only(path: &Path, options: Options) -> Result<Arc<Store>> {
        use rustix::fs::OFlags;
        let file = OpenOptions::new()
            .read(true)
            .custom_flags((OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
            .open(path)
            .map_err(|e| Error::io(path, "open", e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, "inspect", e))?;
        trust::check_opened(path, &meta, options.trust)?;
        if create::classify(&file, path)? == Content::Leftover {
            return Err(Error::NotLockFile {
                path: path.to_owned(),
                found: "an empty file that no writer has laid out yet".to_owned(),
            });
        }
        if durability::from_another_boot(&file, path)? {
            return Err(Error::Storage {
                path: path.to_owned(),
                detail: "its relaxed commits are from an earlier boot and may be torn; a \
                         handle that can write must open it first"
                    .to_owned(),
            });
        }
        let ranges = Ranges::new(
            file.try_clone().map_err(|e| Error::io(path, "open", e))?,
            path,
        )?;
        let deadline = Instant::now() + options.busy_timeout;
        let db = open_reader(&file, path, &options, deadline)?;
        let identity = Identity::of_meta(&meta);
        let store = Store::assemble(
            Engine::Reader(db),
            path,
            file,
            identity,
            ranges,
            options,
            None,
        );
        let incarnation = schema::check_format(&store)?;
        store.incarnation.store(incarnation, Ordering::SeqCst);
        Ok(store)
    }

    /// A handle on an opened engine, with nothing running yet: no committer,
    /// no listener, no claims. A handle that can write has `joined` the
    /// file's users.
    fn assemble(
        engine: Engine,
        path: &Path,
        file: File,
        identity: Identity,
        ranges: Arc<Ranges>,
        options: Options,
        joined: Option<Joined>,
    ) -> Arc<Store> {
        let (session, member, started_fresh) = match joined {
            Some(j) => (Some(j.session), Some(j.member), j.started_fresh),
            None => (None, None, false),
        };
        Arc::new(Store {
            db: RwLock::new(Arc::new(engine)),
            broken: AtomicBool::new(false),
            recovering: Mutex::new(()),
            doubtful: Mutex::new(Vec::new()),
            path: path.to_owned(),
            file,
            identity,
            incarnation: AtomicU64::new(0),
            options,
            started_fresh,
            committer: OnceLock::new(),
            changes: Arc::default(),
            to_wake: Mutex::default(),
            taken_away: Mutex::default(),
            claims: OnceLock::new(),
            claimed: Mutex::default(),
            listener: OnceLock::new(),
            #[cfg(feature = "tokio")]
            async_in_flight: std::sync::atomic::AtomicUsize::new(0),
            session,
            _member: member,
            ranges,
        })
    }

    /// Whether this handle was opened read-only.
    pub(crate) fn read_only(&self) -> bool {
        self.options.read_only
    }

    fn refuse_write(&self) -> Error {
        Error::OpenedReadOnly {
            path: self.path.clone(),
        }
    }

    /// The rest of [`Store::open`], under the open lock.
    fn open_locked(
        path: &Path,
        file: File,
        identity: Identity,
        ranges: Arc<Ranges>,
        options: Options,
        deadline: Instant,
    ) -> Result<Arc<Store>> {
        let (member, alone) = ranges.join()?;
        // A relaxed file from an earlier boot is emptied before it is read.
        let started_fresh = durability::prepare(&file, path, &options, alone)?;
        let session = Session::start(&ranges)?;
        let db = open_database(&file, path, &options, alone, deadline)?;
        let joined = Joined {
            session,
            member,
            started_fresh,
        };
        let store = Store::assemble(
            Engine::Writer(db),
            path,
            file,
            identity,
            ranges,
            options,
            Some(joined),
        );
        let committer = Committer::start(Arc::downgrade(&store))
            .map_err(|e| Error::io(path, "start the commit thread for", e))?;
        let _ = store.committer.set(committer);
        let incarnation = schema::check_or_init(&store)?;
        store.incarnation.store(incarnation, Ordering::SeqCst);
        // What earlier sessions of this slot left is theirs, and they ended.
        let (slot, own) = match &store.session {
            Some(session) => (session.slot(), session.id()),
            None => return Ok(store),
        };
        if schema::slot_has_leftovers(&store, slot, own)? {
            store.submit(move |_, tables| {
                let changed = tables.purge_slot(slot, own)?;
                Ok(((), changed))
            })?;
        }
        Ok(store)
    }

    /// Runs `f` on a second handle of the database, for the engine's
    /// operations that need a handle of their own (integrity check,
    /// compaction). Other handles and processes go on meanwhile; the engine
    /// makes their writes wait while it works.
    pub(crate) fn with_own_handle<R>(
        &self,
        f: impl FnOnce(&mut Database) -> Result<R>,
    ) -> Result<R> {
        if self.read_only() {
            return Err(self.refuse_write());
        }
        self.check_same_file()?;
        // A description of its own: the engine's locks of two handles on one
        // description would merge.
        let file = create::reopen(&self.file, &self.path, true).map_err(|e| self.failed(e))?;
        let backend = Backend::new(file, self.options.hooks.clone(), OpenDeadline::default())
            .map_err(|e| self.failed(e))?;
        let mut builder = Database::builder();
        builder.set_concurrency_mode(ConcurrencyMode::MultiWriter);
        let mut db = builder
            .create_with_backend(backend)
            .map_err(|e| storage_error(&self.path, e))?;
        let result = f(&mut db);
        db.close().map_err(|e| storage_error(&self.path, e))?;
        result
    }

    /// A read transaction: a snapshot of the latest commit, taking no write lock.
    pub(crate) fn begin_read(&self) -> Result<ReadTransaction> {
        self.check_same_file()?;
        if self.has_doubts() {
            self.submit(|_, _| Ok(((), false)))?;
        } else {
            self.recover()?;
        }
        let read = self.db().begin_read().map_err(|e| self.failed(e))?;
        let expected = self.incarnation.load(Ordering::SeqCst);
        if expected != 0 {
            let meta = read.open_table(schema::META).map_err(|e| self.gone_or(e))?;
            let found = schema::incarnation_in(&self.path, &meta)?;
            if found != Some(expected) {
                return Err(self.replaced());
            }
        }
        Ok(read)
    }

    /// The file's incarnation must still be the one this handle opened; see
    /// `schema::INCARNATION_KEY`.
    pub(crate) fn check_incarnation(&self, found: Option<u64>) -> Result<()> {
        let expected = self.incarnation.load(Ordering::SeqCst);
        if expected != 0 && found != Some(expected) {
            return Err(self.replaced());
        }
        Ok(())
    }

    /// A storage error, or [`Error::Replaced`] when the file was emptied
    /// under this handle (its tables are gone).
    fn gone_or(&self, e: impl Into<redb::Error>) -> Error {
        let e = e.into();
        if matches!(e, redb::Error::TableDoesNotExist(_)) {
            return self.replaced();
        }
        storage_error(&self.path, e)
    }

    /// Notes a grant whose commit failed, then tries to settle it at once.
    pub(crate) fn doubt(&self, key: &str, record: Vec<u8>) {
        self.doubts().push((key.to_owned(), record));
        // Should the storage still fail, the next call settles it.
        let _ = self.submit(|_, _| Ok(((), false)));
    }

    fn doubts(&self) -> MutexGuard<'_, Vec<(String, Vec<u8>)>> {
        self.doubtful.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn has_doubts(&self) -> bool {
        !self.doubts().is_empty()
    }

    /// Removes the locks of failed grants that reached the file after all.
    /// Runs on the committer thread, before a batch.
    fn settle(&self, db: &Database, deadline: Instant) -> Result<()> {
        let mut doubts = self.doubts();
        if doubts.is_empty() {
            return Ok(());
        }
        let tx = self.begin_write_within(db, deadline)?;
        let mut tables = Tables::open(&self.path, &tx)?;
        self.check_incarnation(tables.incarnation()?)?;
        for (key, record) in doubts.iter() {
            tables.remove_if_exactly(key, record)?;
        }
        drop(tables);
        self.check_same_file()?;
        tx.commit().map_err(|e| self.failed(e))?;
        doubts.clear();
        Ok(())
    }

    fn db(&self) -> Arc<Engine> {
        Arc::clone(&self.db.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Maps a storage error, noting whether it leaves the database handle
    /// unusable: after an I/O error the engine fails every later call on it.
    fn failed(&self, e: impl Into<redb::Error>) -> Error {
        let e = e.into();
        if matches!(
            e,
            redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
        ) {
            self.broken.store(true, Ordering::SeqCst);
        }
        storage_error(&self.path, e)
    }

    /// After a failed write, opens the file again: the engine recovers the
    /// last commit, and this handle can go on. Until the storage works
    /// again (space freed, device back), this fails with the reason.
    fn recover(&self) -> Result<()> {
        if !self.broken.load(Ordering::SeqCst) {
            return Ok(());
        }
        let _one = self
            .recovering
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !self.broken.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.check_same_file()?;
        let deadline = Instant::now() + self.options.busy_timeout;
        let db = if self.read_only() {
            Engine::Reader(open_reader(
                &self.file,
                &self.path,
                &self.options,
                deadline,
            )?)
        } else {
            Engine::Writer(open_database(
                &self.file,
                &self.path,
                &self.options,
                false,
                deadline,
            )?)
        };
        *self.db.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(db);
        self.broken.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Fails if the path no longer names the file this handle opened: it
    /// was deleted or replaced, and other processes would open another file.
    fn check_same_file(&self) -> Result<()> {
        match Identity::at(&self.path) {
            Ok(Some(now)) if now == self.identity => {}
            Ok(_) => return Err(self.replaced()),
            Err(e) => return Err(Error::io(&self.path, "inspect", e)),
        }
        // Truncated below the engine's header: emptied under this handle.
        match self.file.metadata() {
            Ok(meta) if meta.len() < HEADER_LEN => Err(self.replaced()),
            Ok(_) => Ok(()),
            Err(e) => Err(Error::io(&self.path, "inspect", e)),
        }
    }

    fn replaced(&self) -> Error {
        Error::Replaced {
            path: self.path.clone(),
        }
    }

    /// Whether opening emptied a relaxed file left by an earlier boot.
    pub(crate) fn started_fresh(&self) -> bool {
        self.started_fresh
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn ranges(&self) -> &Arc<Ranges> {
        &self.ranges
    }

    /// Runs `op` on the lock tables in a write transaction, which it may
    /// share with other operations of this handle (group commit; see
    /// `committer.rs`). `op` returns its result and whether it changed
    /// anything. An error rolls back `op`'s changes only; the others' go on.
    ///
    /// Waits at most the busy timeout for the write lock, then fails with
    /// [`Error::Busy`] having changed nothing.
    pub(crate) fn submit<R, F>(&self, op: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnMut(&Store, &mut Tables<'_>) -> Result<(R, bool)> + Send + 'static,
    {
        self.writer()?
            .submit(self, &self.path, self.options.busy_timeout, op)
    }

    /// The committer through which this handle writes: an error for a
    /// read-only handle, or one whose commit thread did not start.
    fn writer(&self) -> Result<&Committer> {
        if self.read_only() {
            return Err(self.refuse_write());
        }
        self.committer.get().ok_or_else(|| Error::Storage {
            path: self.path.clone(),
            detail: "the handle's commit thread did not start".to_owned(),
        })
    }

    /// Queues `op` for the committer thread and returns at once, for async
    /// callers: see [`Committer::send`].
    #[cfg(feature = "tokio")]
    pub(crate) fn send<R, F>(&self, op: F) -> Result<super::committer::Pending<R>>
    where
        R: Send + 'static,
        F: FnMut(&Store, &mut Tables<'_>) -> Result<(R, bool)> + Send + 'static,
    {
        self.writer()?
            .send(&self.path, self.options.busy_timeout, op)
    }

    /// Whether this handle's committer has a batch running or queued.
    #[cfg(feature = "tokio")]
    pub(crate) fn committer_busy(&self) -> bool {
        self.committer
            .get()
            .is_none_or(super::committer::Committer::busy)
    }

    /// Runs `op` on this thread if this handle's committer has nothing to
    /// do (see [`Committer::run_if_alone`]); otherwise gives it back.
    #[cfg(feature = "tokio")]
    pub(crate) fn run_if_alone<R, F>(&self, op: F) -> std::result::Result<Result<R>, F>
    where
        R: Send + 'static,
        F: FnMut(&Store, &mut Tables<'_>) -> Result<(R, bool)> + Send + 'static,
    {
        if self.read_only() {
            return Ok(Err(self.refuse_write()));
        }
        match self.committer.get() {
            Some(committer) if !committer.busy() => {
                committer.run_if_alone(self, &self.path, self.options.busy_timeout, op)
            }
            _ => Err(op),
        }
    }

    /// Counts this handle's commits and wake-ups, for async waiters.
    #[cfg(feature = "tokio")]
    pub(crate) fn commit_signal(&self) -> &crate::signal::Signal {
        &self.changes.signal
    }

    /// Notes that `session`, first in the queue of a key the running
    /// transaction frees, is to be woken once it commits.
    pub(crate) fn wake_after_commit(&self, session: u64) {
        if session != 0 && Some(session) != self.session.as_ref().map(Session::id) {
            self.to_wake
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(session);
        }
    }

    /// Takes the turn of the waiter holding `ticket` away, if it has not
    /// claimed the key handed to it: whether it did. The claim byte stays
    /// taken until the running transaction ends, so the waiter cannot claim
    /// in between.
    pub(crate) fn take_turn_away(&self, ticket: u64) -> Result<bool> {
        match self.ranges.try_claim(ticket)? {
            Some(held) => {
                self.taken_away
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(held);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Whether the waiter holding `ticket` claimed the key handed to it,
    /// from this handle's or another's claims.
    pub(crate) fn turn_claimed(&self, ticket: u64) -> Result<bool> {
        self.ranges.claimed(ticket)
    }

    /// Claims, for the waiter holding `ticket` and `token`, the key `key`
    /// that a release handed to it, unless its turn is being taken away.
    /// `still_handed` then says whether the hand-off stands; the claim is
    /// kept only if it does.
    pub(crate) fn claim(
        &self,
        key: &str,
        token: &str,
        ticket: u64,
        still_handed: impl FnOnce() -> Result<bool>,
    ) -> Result<bool> {
        let claims = match self.claims.get() {
            Some(claims) => claims,
            None => {
                let file = create::reopen(&self.file, &self.path, true)
                    .map_err(|e| Error::io(&self.path, "open again for claims", e))?;
                let opened = Ranges::new(file, &self.path)?;
                self.claims.get_or_init(|| opened)
            }
        };
        let Some(held) = claims.try_claim(ticket)? else {
            return Ok(false);
        };
        if !still_handed()? {
            return Ok(false);
        }
        self.claimed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((key.to_owned(), token.to_owned()), held);
        Ok(true)
    }

    /// The (key, token) of every claim this handle holds.
    pub(crate) fn claimed(&self) -> Vec<(String, String)> {
        self.claimed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Lets go of the claim made for the lock under `key` held with
    /// `token`, once that lock is released.
    pub(crate) fn drop_claim(&self, key: &str, token: &str) {
        let mut claimed = self.claimed.lock().unwrap_or_else(PoisonError::into_inner);
        if !claimed.is_empty() {
            claimed.remove(&(key.to_owned(), token.to_owned()));
        }
    }

    /// Whether this handle listens for wake-ups from other processes.
    pub(crate) fn listening_for_wakeups(&self) -> bool {
        self.listener.get().is_some_and(Option::is_some)
    }

    /// How long a waiter for a key held by another process sleeps between
    /// looks: 2 ms, or 25 ms while this handle listens for wake-ups (which
    /// a release in another process sends).
    pub(crate) fn poll_interval(&self) -> Duration {
        if self.listening_for_wakeups() {
            Duration::from_millis(25)
        } else {
            Duration::from_millis(2)
        }
    }

    /// Listens for wake-ups from other processes, from now on; whether it
    /// does (a name taken, or no socket, leaves waiters to look on their
    /// own).
    pub(crate) fn listen(&self) -> bool {
        let Some(session) = self.session.as_ref().map(Session::id) else {
            return false;
        };
        self.listener
            .get_or_init(|| {
                let changes = Arc::clone(&self.changes);
                let incarnation = self.incarnation.load(Ordering::SeqCst);
                super::wake::Listener::start(incarnation, session, move || changes.bump()).ok()
            })
            .is_some()
    }

    /// Runs a batch of operations in as few transactions as it takes (one,
    /// unless an operation fails), on the committer thread. Returns each
    /// operation with the outcome to give its caller.
    pub(crate) fn run_batch(
        &self,
        mut batch: Vec<Box<dyn Job>>,
    ) -> Vec<(Box<dyn Job>, Result<()>)> {
        // However the batch ends, committed or rolled back, the claims its
        // transactions took away are let go once it has.
        let _taken_away = LetGo(&self.taken_away);
        let mut finished = Vec::with_capacity(batch.len());
        if let Err(e) = self.recover() {
            return everyone(batch, &e, finished);
        }
        let engine = self.db();
        let Engine::Writer(db) = &*engine else {
            return everyone(batch, &self.refuse_write(), finished);
        };
        // Wait for the write lock until the earliest caller's deadline; the
        // callers whose deadline passed get Busy, the others wait on.
        let tx = loop {
            let now = Instant::now();
            let (late, waiting): (Vec<_>, Vec<_>) =
                batch.into_iter().partition(|job| job.deadline() <= now);
            for job in late {
                let busy = Error::Busy {
                    path: self.path.clone(),
                    waited: job.submitted().elapsed(),
                };
                finished.push((job, Err(busy)));
            }
            batch = waiting;
            let Some(deadline) = batch.iter().map(|job| job.deadline()).min() else {
                return finished;
            };
            if let Err(e) = self.settle(db, deadline) {
                if !matches!(e, Error::Busy { .. }) {
                    return everyone(batch, &e, finished);
                }
                continue;
            }
            match self.begin_write_within(db, deadline) {
                Ok(tx) => break tx,
                Err(Error::Busy { .. }) => {}
                Err(e) => return everyone(batch, &e, finished),
            }
        };
        // The callers that gave up meanwhile leave; the others can no longer.
        let mut taken = Vec::with_capacity(batch.len());
        for job in batch {
            if job.take() {
                taken.push(job);
            }
        }
        let mut tx = Some(tx);
        loop {
            let current = match tx.take() {
                Some(tx) => tx,
                None => {
                    match self.begin_write_within(db, Instant::now() + self.options.busy_timeout) {
                        Ok(tx) => tx,
                        Err(e) => return everyone(taken, &e, finished),
                    }
                }
            };
            match self.run_in(&current, &mut taken) {
                // One operation failed on its own: it alone gets the error,
                // and the others run again without it.
                Err(Failed::One(i, e)) => {
                    let _ = current.abort();
                    finished.push((taken.remove(i), Err(e)));
                    if taken.is_empty() {
                        return finished;
                    }
                }
                Err(Failed::All(e)) => {
                    let _ = current.abort();
                    return everyone(taken, &e, finished);
                }
                Ok(changed) => {
                    let ended = self.end(current, changed);
                    return match ended {
                        Ok(()) => {
                            finished.extend(taken.into_iter().map(|job| (job, Ok(()))));
                            finished
                        }
                        Err(e) => everyone(taken, &e, finished),
                    };
                }
            }
        }
    }

    /// Runs every operation in `tx`; whether any changed something.
    fn run_in(&self, tx: &WriteTransaction, jobs: &mut [Box<dyn Job>]) -> Result<bool, Failed> {
        // Only the wake-ups of the transaction that commits are sent.
        self.to_wake
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.taken_away
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let mut tables = Tables::open(&self.path, tx).map_err(|e| self.fails_all(e))?;
        tables
            .incarnation()
            .and_then(|found| self.check_incarnation(found))
            .map_err(|e| self.fails_all(e))?;
        let mut changed = false;
        for (i, job) in jobs.iter_mut().enumerate() {
            match job.run(self, &mut tables) {
                Ok(c) => changed |= c,
                Err(e) if is_storage_failure(&e) => return Err(self.fails_all(e)),
                Err(e) => return Err(Failed::One(i, e)),
            }
        }
        Ok(changed)
    }

    /// A storage failure in the middle of a transaction leaves the engine's
    /// handle unusable too, and fails the whole batch.
    fn fails_all(&self, e: Error) -> Failed {
        if is_storage_failure(&e) {
            self.broken.store(true, Ordering::SeqCst);
        }
        Failed::All(e)
    }

    /// Commits `tx` if it changed anything, else rolls it back.
    fn end(&self, tx: WriteTransaction, changed: bool) -> Result<()> {
        if !changed {
            return tx.abort().map_err(|e| self.failed(e));
        }
        // Nothing is granted in a file other processes no longer open.
        if let Err(e) = self.check_same_file() {
            let _ = tx.abort();
            return Err(e);
        }
        tx.commit().map_err(|e| self.failed(e))?;
        self.changes.bump();
        let mut to_wake =
            std::mem::take(&mut *self.to_wake.lock().unwrap_or_else(PoisonError::into_inner));
        to_wake.sort_unstable();
        to_wake.dedup();
        let incarnation = self.incarnation.load(Ordering::SeqCst);
        for session in to_wake {
            super::wake::send(incarnation, session);
        }
        Ok(())
    }

    /// Begins a write transaction, polling while other processes write, until
    /// `deadline` at most.
    fn begin_write_within(&self, db: &Database, deadline: Instant) -> Result<WriteTransaction> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(20);
        loop {
            match db.try_begin_write() {
                Ok(tx) => return Ok(tx),
                Err(TransactionError::WouldBlock) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(Error::Busy {
                            path: self.path.clone(),
                            waited: start.elapsed(),
                        });
                    }
                    thread::sleep(pause.min(deadline - now));
                    // Another process's commit takes about a millisecond:
                    // until then, look often enough to follow it closely.
                    let cap = if now - start < NEAR {
                        NEAR_POLL
                    } else {
                        MAX_POLL
                    };
                    pause = (pause * 2).min(cap);
                }
                Err(e) => return Err(self.failed(e)),
            }
        }
    }

    /// How many writes this handle has committed, and wake-ups it was sent.
    pub(crate) fn commits(&self) -> u64 {
        *self
            .changes
            .count
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until this handle commits a write (or is woken) after the
    /// `seen`-th, or `timeout` passes.
    pub(crate) fn wait_commit(&self, seen: u64, timeout: Duration) {
        let commits = self
            .changes
            .count
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .changes
            .changed
            .wait_timeout_while(commits, timeout, |n| *n == seen)
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// A duplicate of this handle's open of the file, for a child process
    /// to inherit (see `FileLocker::inheritable_session`).
    pub(crate) fn inheritable(&self) -> Result<std::os::fd::OwnedFd> {
        if self.session.is_none() {
            return Err(self.refuse_write());
        }
        let dup = self
            .file
            .try_clone()
            .map_err(|e| Error::io(&self.path, "duplicate the descriptor of", e))?;
        let fd = std::os::fd::OwnedFd::from(dup);
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty())
            .map_err(|e| Error::io(&self.path, "make inheritable the descriptor of", e.into()))?;
        Ok(fd)
    }

    /// This handle's session: locks bound to it count while it is open.
    pub(crate) fn session(&self) -> u64 {
        // A read-only handle never writes, so never binds a lock.
        self.session.as_ref().map_or(0, Session::id)
    }

    /// Whether the holder of a lock bound to `session` is gone: its locker
    /// closed or its process died. `None` (a lock bound to no session) never is.
    pub(crate) fn holder_gone(&self, session: Option<u64>) -> Result<bool> {
        match session {
            None => Ok(false),
            Some(id) => match &self.session {
                Some(session) => session.ended(&self.ranges, id),
                None => Ok(!self.ranges.slot_in_use(super::session::slot_of(id))?),
            },
        }
    }

    /// Whether a queued waiter has given up: its session ended, or its wait
    /// limit (ns on the monotonic clock) passed.
    pub(crate) fn waiter_gone(&self, session: u64, limit: u64) -> Result<bool> {
        Ok(limit < monotonic_nanos() || self.holder_gone(Some(session))?)
    }

    /// Whether a lock expired before `at` is still stored, from a read
    /// transaction.
    pub(crate) fn expired_before(&self, at: SystemTime) -> Result<bool> {
        schema::expired_before(self, now_nanos(at))
    }

    /// Removes every lock that expired before `now` or whose holder is gone,
    /// and returns how many; also drops the queued waiters that are gone. A
    /// read transaction first checks the indexes, so a file with nothing to
    /// remove is not written.
    pub(crate) fn cleanup(&self, now: SystemTime) -> Result<usize> {
        let now = now_nanos(now);
        let gone = |session| self.holder_gone(Some(session));
        let waiter_gone = |session, limit| self.waiter_gone(session, limit);
        if !schema::anything_to_clean(self, now, gone, waiter_gone)? {
            return Ok(0);
        }
        self.submit(move |store, tables| {
            let gone = |session| store.holder_gone(Some(session));
            let waiter_gone = |session, limit| store.waiter_gone(session, limit);
            let removed = tables.remove_expired(now)? + tables.remove_orphans(gone)?;
            tables.remove_gone_waiters(waiter_gone)?;
            Ok((removed, true))
        })
    }
}

/// What a handle that can write took on joining the file's users.
struct Joined {
    session: Session,
    member: Held,
    started_fresh: bool,
}

/// Lets go of the claims a batch's transactions took away, when dropped: a
/// waiter then finds the hand-off gone, or still standing if nothing
/// committed.
struct LetGo<'a>(&'a Mutex<Vec<Held>>);

impl Drop for LetGo<'_> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Opens the database in `file` (the lock file at `path`) in multi-writer
/// mode, waiting at most until `deadline` for other processes. `check` runs
/// the engine's whole-file integrity check.
///
/// redb's open waits without bound for a lock held by a process stopped
/// inside a commit; the backend turns those waits into polls that give up at
/// the deadline, so a busy open fails on this thread and leaves nothing
/// running behind.
fn open_database(
    file: &File,
    path: &Path,
    options: &Options,
    check: bool,
    deadline: Instant,
) -> Result<Database> {
    open_engine(file, path, options, deadline, |mut builder, backend| {
        builder.set_check_integrity_on_open(check);
        builder.create_with_backend(backend)
    })
}

/// Opens the database in `file` read-only, in multi-writer mode so that it
/// reads what the writers of every process commit.
fn open_reader(
    file: &File,
    path: &Path,
    options: &Options,
    deadline: Instant,
) -> Result<ReadOnlyDatabase> {
    open_engine(file, path, options, deadline, |builder, backend| {
        builder.open_read_only_with_backend(backend)
    })
}

/// What opening the engine's handle shares: a new description of `file`
/// under the storage backend, lock waits bounded by `deadline`, the
/// multi-writer mode and the cache size, and a panic of the engine (a damaged
/// file) caught.
fn open_engine<D>(
    file: &File,
    path: &Path,
    options: &Options,
    deadline: Instant,
    open: impl FnOnce(redb::Builder, Backend) -> std::result::Result<D, redb::DatabaseError>,
) -> Result<D> {
    let waits = OpenDeadline::until(deadline);
    // An open file description of its own, never a duplicate of `file`'s:
    // the engine's byte-range locks belong to a description, and the engine
    // releases its own when it closes. A handle opened again after a failed
    // write (`recover`) would otherwise release, as its predecessor closed,
    // the locks through which it tells other processes it is a live writer.
    let own =
        create::reopen(file, path, !options.read_only).map_err(|e| Error::io(path, "open", e))?;
    let backend = Backend::new(own, options.hooks.clone(), waits.clone())
        .map_err(|e| storage_error(path, e))?;
    let opened = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut builder = Database::builder();
        builder
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .set_cache_size(options.cache_size);
        open(builder, backend)
    }));
    waits.clear();
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(open_error(path, options, e)),
        Err(_panic) => Err(Error::Corrupted {
            path: path.to_owned(),
            detail: "the storage engine could not read it".to_owned(),
        }),
    }
}

/// Maps an error of the engine's open; a lock wait that ran out is `Busy`.
fn open_error(path: &Path, options: &Options, e: redb::DatabaseError) -> Error {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Io(e))
            if e.kind() == std::io::ErrorKind::TimedOut =>
        {
            Error::Busy {
                path: path.to_owned(),
                waited: options.busy_timeout,
            }
        }
        e => storage_error(path, e),
    }
}

/// Opens an existing lock file for reading and writing. Non-blocking, so
/// that a FIFO swapped in after the path was checked cannot hang the open;
/// never the controlling terminal.
fn open_file(path: &Path) -> std::io::Result<File> {
    use rustix::fs::OFlags;
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags((OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
        .open(path)
}

/// Maps a storage engine error to ours, keeping redb's types out of the API.
pub(crate) fn storage_error(path: &Path, e: impl Into<redb::Error>) -> Error {
    let path = path.to_owned();
    match e.into() {
        // The engine read past the end of the file: it is shorter than its
        // own header or layout says.
        redb::Error::Io(source) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::Corrupted {
                path,
                detail: "it ends before the data it refers to (truncated?)".to_owned(),
            }
        }
        redb::Error::Io(source) => Error::io(path, "write", source),
        redb::Error::PreviousIo => Error::Storage {
            path,
            detail: "an earlier write failed and the file could not be opened again yet; \
                     the next call retries"
                .to_owned(),
        },
        redb::Error::Corrupted(detail) => Error::Corrupted { path, detail },
        redb::Error::TableTypeMismatch { .. } | redb::Error::TableIsMultimap(_) => {
            Error::NotLockFile {
                path,
                found: "tables named like hostlock's with other types".to_owned(),
            }
        }
        redb::Error::UpgradeRequired(version) => Error::NotLockFile {
            path,
            found: format!("a redb file of format {version}, older than hostlock's"),
        },
        redb::Error::LockProtocolMismatch | redb::Error::DatabaseAlreadyOpen => Error::Storage {
            path,
            detail: "another process holds locks on it that this version does not expect: \
                     a program opening it in another mode, a process of another hostlock \
                     version (every process sharing a lock file must use the same one), or \
                     someone with read access disrupting it on purpose"
                .to_owned(),
        },
        redb::Error::ValueTooLarge(len) => Error::invalid(
            "value",
            format!("the encoded lock is {len} bytes, more than the file can store"),
        ),
        other => Error::Storage {
            path,
            detail: other.to_string(),
        },
    }
}

/// How a run of a batch failed.
enum Failed {
    /// The operation at this index failed on its own.
    One(usize, Error),
    /// The transaction failed for all of them.
    All(Error),
}

/// Errors of the storage itself, which fail a transaction for everyone in it.
fn is_storage_failure(e: &Error) -> bool {
    matches!(
        e,
        Error::Io { .. } | Error::NoSpace { .. } | Error::Storage { .. }
    )
}

/// Gives every job of `batch` the error `e`.
fn everyone(
    batch: Vec<Box<dyn Job>>,
    e: &Error,
    mut finished: Vec<(Box<dyn Job>, Result<()>)>,
) -> Vec<(Box<dyn Job>, Result<()>)> {
    finished.extend(batch.into_iter().map(|job| (job, Err(e.duplicate()))));
    finished
}
