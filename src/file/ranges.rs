//! hostlock's own byte-range locks inside the lock file: the only module that
//! takes OS locks.
//!
//! The locks are open-file-description locks (`F_OFD_SETLK` on Linux) on
//! bytes far past the end of any real file, taken through redb's own file
//! backend, the same mechanism its multi-writer mode uses for its ranges. They
//! belong to the file (its inode), not to a path: every hard link, symlink or
//! bind mount of the file sees them, and no other file can stand in for them.
//! The kernel drops them when the last descriptor of the open file description
//! closes, so a process that dies, however it dies, leaves none behind.
//!
//! ```text
//! BASE + 0                OPEN     exclusive while a handle opens, creates or lays out the file
//! BASE + 1                USERS    shared by every open handle; exclusive only to a lone opener
//! BASE + 2                SWEEPER  exclusive to the one handle whose thread removes expired locks
//! BASE + 64 + slot        SLOTS    exclusive to the session using that slot
//! CLAIMS + ticket % 2^40  CLAIMS   exclusive to the waiter that claimed the key a
//!                                  release handed to its ticket, or to the handle
//!                                  that takes its turn away (see `schema.rs`)
//! ```
//!
//! A handle takes claims through an open of its own (`Store::claims`), so
//! that its claims and its own attempts to take a turn away exclude each
//! other as they do across processes.
//!
//! `BASE` is 2^61. redb locks the header (bytes 0 to 319) and bytes from 2^62
//! up; the test at the end of this file checks, against redb's real backend,
//! that no range it takes meets these.

use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use redb::StorageBackend;
use redb::backends::FileBackend;

use crate::error::{Error, Result};

/// The first byte of hostlock's ranges.
pub(crate) const BASE: u64 = 1 << 61;
/// Serialises opening: creating, checking and laying out the file.
const OPEN: u64 = BASE;
/// Held shared by every open handle, so an opener can tell it is the only one.
const USERS: u64 = BASE + 1;
/// Held by the one handle whose cleanup thread sweeps expired locks.
const SWEEPER: u64 = BASE + 2;
/// The first session slot.
const SLOTS: u64 = BASE + 64;
/// How many sessions (open handles, in all processes) a file can have at once.
pub(crate) const SLOT_COUNT: u64 = 1 << 16;
/// The first claim byte.
const CLAIMS: u64 = BASE + (1 << 32);
/// How many claim bytes there are; tickets share them modulo this, and a
/// file hands out fewer tickets than this in any span that matters.
const CLAIM_COUNT: u64 = 1 << 40;
/// One past the last byte hostlock locks.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const END: u64 = CLAIMS + CLAIM_COUNT;

/// The byte-range locks of one open file description of the lock file.
#[derive(Debug)]
pub(crate) struct Ranges {
    backend: FileBackend,
    path: PathBuf,
}

/// A lock on one byte, released on drop.
#[derive(Debug)]
pub(crate) struct Held {
    ranges: Arc<Ranges>,
    byte: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Closing the description releases it as well; unlocking first makes
        // the release immediate while other descriptors of it are still open.
        let (start, end) = one(self.byte);
        let _ = self.ranges.backend.unlock_range(start, end);
    }
}

impl Held {
    /// The session slot this lock holds.
    pub(crate) fn slot(&self) -> u64 {
        self.byte - SLOTS
    }
}

fn one(byte: u64) -> (Bound<u64>, Bound<u64>) {
    (Bound::Included(byte), Bound::Included(byte))
}

impl Ranges {
    /// Takes locks through `file`, a descriptor of the lock file at `path`.
    /// Locks are shared with every descriptor duplicated from the same open.
    pub(crate) fn new(file: File, path: &Path) -> Result<Arc<Ranges>> {
        let backend = FileBackend::new(file).map_err(|e| Error::Storage {
            path: path.to_owned(),
            detail: format!("cannot lock byte ranges of it: {e}"),
        })?;
        Ok(Arc::new(Ranges {
            backend,
            path: path.to_owned(),
        }))
    }

    fn lock_error(&self, e: impl std::fmt::Display) -> Error {
        Error::Storage {
            path: self.path.clone(),
            detail: format!("cannot lock a byte range of it: {e}"),
        }
    }

    fn try_lock(self: &Arc<Self>, byte: u64, shared: bool) -> Result<Option<Held>> {
        let (start, end) = one(byte);
        let taken = if shared {
            self.backend.try_lock_shared_range(start, end)
        } else {
            self.backend.try_lock_range(start, end)
        };
        match taken {
            Ok(true) => Ok(Some(Held {
                ranges: Arc::clone(self),
                byte,
            })),
            Ok(false) => Ok(None),
            Err(e) => Err(self.lock_error(e)),
        }
    }

    /// Whether another open of the file holds a lock on `byte`.
    fn locked_elsewhere(&self, byte: u64) -> Result<bool> {
        let (start, end) = one(byte);
        self.backend
            .query_lock_range(start, end)
            .map_err(|e| self.lock_error(e))
    }

    /// Takes the open lock, waiting at most `timeout` for other openers.
    pub(crate) fn lock_open(self: &Arc<Self>, timeout: Duration) -> Result<Held> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(100);
        loop {
            if let Some(held) = self.try_lock(OPEN, false)? {
                return Ok(held);
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(Error::Busy {
                    path: self.path.clone(),
                    waited,
                });
            }
            thread::sleep(pause.min(timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Joins the file's users for as long as the returned lock lives, and
    /// says whether no other handle has the file open. Callers hold the open
    /// lock, so no other handle joins in between.
    pub(crate) fn join(self: &Arc<Self>) -> Result<(Held, bool)> {
        let (start, end) = one(USERS);
        let alone = self
            .backend
            .try_lock_range(start, end)
            .map_err(|e| self.lock_error(e))?;
        // From exclusive, this converts the lock in place: one lock either way.
        match self.try_lock(USERS, true)? {
            Some(held) => Ok((held, alone)),
            None => Err(Error::Busy {
                path: self.path.clone(),
                waited: Duration::ZERO,
            }),
        }
    }

    /// Becomes the sweeper if no other handle is.
    pub(crate) fn try_sweeper(self: &Arc<Self>) -> Result<Option<Held>> {
        self.try_lock(SWEEPER, false)
    }

    /// Takes a free session slot, looking from `hint` on.
    pub(crate) fn claim_slot(self: &Arc<Self>, hint: u64) -> Result<Held> {
        for i in 0..SLOT_COUNT {
            let slot = (hint + i) % SLOT_COUNT;
            if let Some(held) = self.try_lock(SLOTS + slot, false)? {
                return Ok(held);
            }
        }
        Err(Error::Storage {
            path: self.path.clone(),
            detail: format!(
                "all {SLOT_COUNT} session slots are in use; close some of the handles that \
                 have it open"
            ),
        })
    }

    /// Takes the claim byte of `ticket`, if no other open of the file holds
    /// it: a waiter claiming the key handed to it, or a handle taking that
    /// waiter's turn away, whichever comes first.
    pub(crate) fn try_claim(self: &Arc<Self>, ticket: u64) -> Result<Option<Held>> {
        self.try_lock(CLAIMS + ticket % CLAIM_COUNT, false)
    }

    /// Whether another open of the file holds the claim byte of `ticket`.
    pub(crate) fn claimed(&self, ticket: u64) -> Result<bool> {
        self.locked_elsewhere(CLAIMS + ticket % CLAIM_COUNT)
    }

    /// Whether the session slot `slot` is held by another open of the file.
    pub(crate) fn slot_in_use(&self, slot: u64) -> Result<bool> {
        if slot >= SLOT_COUNT {
            return Ok(false);
        }
        self.locked_elsewhere(SLOTS + slot)
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::sync::Mutex;

    use redb::{
        BackendError, ConcurrencyMode, Database, ReadableDatabase, ReadableTableMetadata,
        TableDefinition,
    };

    use super::*;

    type Range = (Bound<u64>, Bound<u64>);

    /// redb's file backend, noting every byte range the engine locks.
    #[derive(Debug)]
    struct Recording {
        inner: FileBackend,
        ranges: Arc<Mutex<Vec<Range>>>,
    }

    impl Recording {
        fn note(&self, start: Bound<u64>, end: Bound<u64>) {
            self.ranges.lock().unwrap().push((start, end));
        }
    }

    impl StorageBackend for Recording {
        fn len(&self) -> std::io::Result<u64> {
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.inner.write(offset, data)
        }
        fn close(&self) -> std::io::Result<()> {
            self.inner.close()
        }
        fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
            self.note(s, e);
            self.inner.try_lock_range(s, e)
        }
        fn try_lock_shared_range(
            &self,
            s: Bound<u64>,
            e: Bound<u64>,
        ) -> Result<bool, BackendError> {
            self.note(s, e);
            self.inner.try_lock_shared_range(s, e)
        }
        fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
            self.note(s, e);
            self.inner.lock_range(s, e)
        }
        fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
            self.note(s, e);
            self.inner.lock_shared_range(s, e)
        }
        fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
            self.inner.unlock_range(s, e)
        }
        fn query_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
            self.note(s, e);
            self.inner.query_lock_range(s, e)
        }
    }

    /// A file at `path` opened for reading and writing, created if missing.
    fn open_rw(path: &Path) -> std::fs::File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap()
    }

    /// The first and last byte a range covers.
    fn span((start, end): Range) -> (u64, u64) {
        let first = match start {
            Bound::Included(s) => s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => 0,
        };
        let last = match end {
            Bound::Included(e) => e,
            Bound::Excluded(e) => e - 1,
            Bound::Unbounded => u64::MAX,
        };
        (first, last)
    }

    #[test]
    fn hostlock_ranges_are_disjoint_from_every_range_redb_locks() {
        const T: TableDefinition<'static, u64, u64> = TableDefinition::new("t");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks.redb");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let backend = || Recording {
            inner: FileBackend::new(open_rw(&path)).unwrap(),
            ranges: Arc::clone(&seen),
        };
        let mut builder = Database::builder();
        builder.set_concurrency_mode(ConcurrencyMode::MultiWriter);
        // Two handles, as two processes: creation, writes that wait for each
        // other, reads, a compaction, an integrity check, and a reader.
        let a = builder.create_with_backend(backend()).unwrap();
        let mut b = builder.create_with_backend(backend()).unwrap();
        for (db, n) in [(&a, 1), (&b, 2), (&a, 3)] {
            let tx = db.begin_write().unwrap();
            tx.open_table(T).unwrap().insert(n, n).unwrap();
            tx.commit().unwrap();
        }
        let held = a.begin_read().unwrap();
        assert_eq!(held.open_table(T).unwrap().len().unwrap(), 3);
        let tx = b.begin_write().unwrap();
        tx.open_table(T).unwrap().remove(1).unwrap();
        tx.commit().unwrap();
        drop(held);
        drop(a);
        let _ = b.compact();
        b.check_integrity().unwrap();
        drop(b);
        let reader = builder.open_read_only_with_backend(backend()).unwrap();
        reader.begin_read().unwrap().open_table(T).unwrap();
        drop(reader);

        let seen = seen.lock().unwrap();
        assert!(seen.len() > 10, "redb took its locks through the backend");
        for &range in seen.iter() {
            let (first, last) = span(range);
            assert!(
                last < BASE || first >= END,
                "redb locked {range:?}, which meets hostlock's {BASE}..{END}"
            );
        }
    }

    #[test]
    fn slots_and_the_users_lock_are_seen_from_another_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let open = || Ranges::new(open_rw(&path), &path).unwrap();
        let (one, two) = (open(), open());
        let (member, alone) = one.join().unwrap();
        assert!(alone);
        let (_other, alone) = two.join().unwrap();
        assert!(!alone, "the first handle is still a member");
        drop(member);

        let slot = one.claim_slot(7).unwrap();
        assert_eq!(slot.slot(), 7);
        assert!(two.slot_in_use(7).unwrap());
        assert!(!one.slot_in_use(7).unwrap(), "its own lock does not count");
        assert_eq!(
            two.claim_slot(7).unwrap().slot(),
            8,
            "a held slot is passed over"
        );
        drop(slot);
        assert!(!two.slot_in_use(7).unwrap(), "free once dropped");

        let opening = one.lock_open(Duration::from_millis(10)).unwrap();
        let busy = two.lock_open(Duration::from_millis(20)).unwrap_err();
        assert!(matches!(busy, Error::Busy { .. }), "{busy:?}");
        drop(opening);
        two.lock_open(Duration::from_millis(20)).unwrap();
        let claim = one.try_claim(41).unwrap().expect("free");
        assert!(two.try_claim(41).unwrap().is_none(), "claimed elsewhere");
        assert!(two.try_claim(42).unwrap().is_some(), "one byte per ticket");
        drop(claim);
        assert!(two.try_claim(41).unwrap().is_some(), "free once dropped");
        let sweeper = one.try_sweeper().unwrap();
        assert!(sweeper.is_some());
        assert!(two.try_sweeper().unwrap().is_none());
    }
}
