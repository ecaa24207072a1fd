//! The sidecar folder and its OS file locks: the only module that touches fs2.
//!
//! fs2 never locks the database file itself, whose byte ranges belong to the
//! storage engine. Since Rust 1.89 `std::fs::File` has inherent lock methods
//! with other return types that shadow fs2's trait methods, so every call here
//! names the trait: `FileExt::try_lock_exclusive(&file)`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use fs2::FileExt;

use crate::error::{Error, Result};

/// The sidecar folder beside a lock file `path`: `path` with `.hostlock` appended.
pub(crate) fn sidecar_dir(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".hostlock");
    PathBuf::from(name)
}

/// Serialises opening: creating the file, checking and initialising its format.
pub(crate) const OPEN_LOCK: &str = "open.lock";
/// Held by the one process whose cleanup thread sweeps expired locks.
pub(crate) const SWEEPER_LOCK: &str = "sweeper.lock";
/// Held shared by every open handle, so an opener can tell it is the only one.
pub(crate) const USERS_LOCK: &str = "users.lock";

/// Creates the sidecar folder beside `path` if it is missing.
pub(crate) fn create_sidecar(path: &Path) -> Result<PathBuf> {
    let dir = sidecar_dir(path);
    match fs::create_dir(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if dir.is_dir() {
                Ok(dir)
            } else {
                Err(Error::Io {
                    path: dir,
                    action: "use as the sidecar folder",
                    source: io::Error::new(io::ErrorKind::AlreadyExists, "not a directory"),
                })
            }
        }
        Err(e) => Err(Error::io(dir, "create the sidecar folder", e)),
    }
}

/// An exclusive OS lock on one file of the sidecar folder, released on drop.
#[derive(Debug)]
pub(crate) struct HeldLock {
    file: File,
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // Closing the file releases the lock as well; unlocking first only
        // makes the release immediate. A failure here changes nothing.
        let _ = FileExt::unlock(&self.file);
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path, "open the lock file", e))
}

/// Takes the exclusive lock on `dir/name` if it is free right now.
pub(crate) fn try_lock(dir: &Path, name: &str) -> Result<Option<HeldLock>> {
    let path = dir.join(name);
    let file = open_lock_file(&path)?;
    match FileExt::try_lock_exclusive(&file) {
        Ok(()) => Ok(Some(HeldLock { file })),
        Err(e) if is_contended(&e) => Ok(None),
        Err(e) => Err(Error::io(path, "lock", e)),
    }
}

/// Takes a shared lock on `dir/name` for as long as the returned lock lives,
/// and says whether no one else held it: whether the caller is the only
/// handle. Callers hold the open lock, so no other handle converts its lock
/// in between.
pub(crate) fn join(dir: &Path, name: &str) -> Result<(HeldLock, bool)> {
    let path = dir.join(name);
    let file = open_lock_file(&path)?;
    let alone = match FileExt::try_lock_exclusive(&file) {
        Ok(()) => true,
        Err(e) if is_contended(&e) => false,
        Err(e) => return Err(Error::io(path, "lock", e)),
    };
    // From exclusive, this converts the lock in place.
    match FileExt::try_lock_shared(&file) {
        Ok(()) => Ok((HeldLock { file }, alone)),
        Err(e) if is_contended(&e) => Err(Error::Busy {
            path,
            waited: Duration::ZERO,
        }),
        Err(e) => Err(Error::io(path, "lock", e)),
    }
}

/// Takes the exclusive lock on `dir/name`, waiting at most `timeout`.
pub(crate) fn lock_within(dir: &Path, name: &str, timeout: Duration) -> Result<HeldLock> {
    let path = dir.join(name);
    let file = open_lock_file(&path)?;
    let start = Instant::now();
    let mut pause = Duration::from_micros(100);
    loop {
        match FileExt::try_lock_exclusive(&file) {
            Ok(()) => return Ok(HeldLock { file }),
            Err(e) if is_contended(&e) => {}
            Err(e) => return Err(Error::io(path, "lock", e)),
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(Error::Busy { path, waited });
        }
        thread::sleep(pause.min(timeout - waited));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

fn is_contended(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
        || e.raw_os_error() == fs2::lock_contended_error().raw_os_error()
}
