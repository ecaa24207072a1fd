//! The storage under the database: redb's own file backend over a descriptor
//! this crate opened, so that it knows which file it has open, with failures
//! injected on demand under the `fault-injection` feature.
//!
//! Every method delegates, the byte-range lock methods and `close` included:
//! the multi-writer mode coordinates processes through those locks and
//! refuses a backend without them. The engine's blocking lock waits are
//! bounded while the database opens (see [`OpenDeadline`]).

use std::fs::File;
use std::io;
use std::ops::Bound;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use redb::backends::FileBackend;
use redb::{BackendError, DatabaseError, StorageBackend};

#[cfg(feature = "fault-injection")]
use crate::faults::Faults;

/// Which file a path named when it was opened: its device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    pub(crate) fn of_meta(meta: &std::fs::Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// The identity of the file `path` names now; `None` if nothing is there.
    pub(crate) fn at(path: &Path) -> io::Result<Option<Identity>> {
        match std::fs::metadata(path) {
            Ok(meta) => Ok(Some(Identity {
                dev: meta.dev(),
                ino: meta.ino(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// How the storage is set up beyond the file itself.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hooks {
    /// Skip syncs: [`Durability::Relaxed`](super::Durability::Relaxed).
    pub(crate) relaxed: bool,
    #[cfg(feature = "fault-injection")]
    pub(crate) faults: Option<Faults>,
}

/// While set, the engine's blocking waits for a lock (the file header, the
/// writer byte) poll until this instant and then fail, instead of waiting
/// without bound behind a process stopped inside a commit. Set while the
/// database opens, so that a busy open fails at the busy timeout on the
/// caller's own thread, leaving nothing behind.
#[derive(Clone, Debug, Default)]
pub(crate) struct OpenDeadline(Arc<Mutex<Option<Instant>>>);

impl OpenDeadline {
    pub(crate) fn until(deadline: Instant) -> OpenDeadline {
        OpenDeadline(Arc::new(Mutex::new(Some(deadline))))
    }

    /// From now on, lock waits block as the engine asks.
    pub(crate) fn clear(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn get(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
pub(crate) struct Backend {
    file: FileBackend,
    hooks: Hooks,
    deadline: OpenDeadline,
}

impl Backend {
    /// The storage on `file`, an open descriptor of the lock file.
    pub(crate) fn new(
        file: File,
        hooks: Hooks,
        deadline: OpenDeadline,
    ) -> Result<Backend, DatabaseError> {
        Ok(Backend {
            file: FileBackend::new(file)?,
            hooks,
            deadline,
        })
    }

    /// Takes a lock, polling until the open deadline when one is set.
    fn wait_for_lock(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
        shared: bool,
    ) -> Result<(), BackendError> {
        let Some(deadline) = self.deadline.get() else {
            return if shared {
                self.file.lock_shared_range(start, end)
            } else {
                self.file.lock_range(start, end)
            };
        };
        let mut pause = Duration::from_micros(50);
        loop {
            let taken = if shared {
                self.file.try_lock_shared_range(start, end)?
            } else {
                self.file.try_lock_range(start, end)?
            };
            if taken {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(BackendError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "another process kept a lock of the file past the busy timeout",
                )));
            }
            thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }

    fn before_write(&self) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        if let Some(faults) = &self.hooks.faults {
            faults.on_write()?;
        }
        Ok(())
    }

    fn before_sync(&self) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        if let Some(faults) = &self.hooks.faults {
            faults.on_sync()?;
        }
        Ok(())
    }
}

impl StorageBackend for Backend {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.before_write()?;
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.before_sync()?;
        if self.hooks.relaxed {
            return Ok(());
        }
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.before_write()?;
        self.file.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.file.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.wait_for_lock(start, end, false)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.wait_for_lock(start, end, true)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}
