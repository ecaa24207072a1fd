//! The storage under the database: redb's own file backend, opened by this
//! crate so that it knows which file it has open, with failures injected on
//! demand under the `fault-injection` feature.
//!
//! Every method delegates, the byte-range lock methods and `close` included:
//! the multi-writer mode coordinates processes through those locks and
//! refuses a backend without them.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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
    pub(crate) fn of(file: &File) -> io::Result<Identity> {
        let meta = file.metadata()?;
        Ok(Identity {
            dev: meta.dev(),
            ino: meta.ino(),
        })
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

#[derive(Debug)]
pub(crate) struct Backend {
    file: FileBackend,
    hooks: Hooks,
}

impl Backend {
    /// Opens (creating if missing) the file at `path`.
    pub(crate) fn open(path: &Path, hooks: Hooks) -> Result<(Backend, Identity), DatabaseError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let identity = Identity::of(&file)?;
        let backend = Backend {
            file: FileBackend::new(file)?,
            hooks,
        };
        Ok((backend, identity))
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
        self.file.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}
