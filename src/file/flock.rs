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

/// The folder of session files inside the sidecar folder.
const SESSIONS: &str = "sessions";

/// An open locker's session: a file in `sessions/` that the locker holds
/// exclusively for as long as it is open. Locks bound to the session count
/// only while another process cannot lock that file, so they are free the
/// moment the locker closes or its process dies, whatever its pid becomes.
#[derive(Debug)]
pub(crate) struct Session {
    id: u64,
    path: PathBuf,
    _held: HeldLock,
}

impl Drop for Session {
    fn drop(&mut self) {
        // Removed while still locked, so no one takes a new session's file
        // for this one. A file left behind (a failure here, or a crash) is
        // removed by the next sweep.
        let _ = fs::remove_file(&self.path);
    }
}

impl Session {
    /// Starts a new session with a random id.
    pub(crate) fn start(sidecar: &Path) -> Result<Session> {
        let dir = sidecar.join(SESSIONS);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(dir, "create the sessions folder", e)),
        }
        let id = crate::guard::random_u64().max(1);
        // Locked under a temporary name and then renamed, so that no one sees
        // the file unlocked under its final name and takes the session for dead.
        let temporary = dir.join(format!(".{id:016x}.new"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temporary)
            .map_err(|e| Error::io(&temporary, "create the session file", e))?;
        FileExt::try_lock_exclusive(&file)
            .map_err(|e| Error::io(&temporary, "lock the session file", e))?;
        let path = session_path(sidecar, id);
        fs::rename(&temporary, &path).map_err(|e| Error::io(&path, "name the session file", e))?;
        Ok(Session {
            id,
            path,
            _held: HeldLock { file },
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

fn session_path(sidecar: &Path, id: u64) -> PathBuf {
    sidecar.join(SESSIONS).join(format!("{id:016x}.lock"))
}

/// Whether the session `id` is still open, in any process.
pub(crate) fn session_alive(sidecar: &Path, id: u64) -> Result<bool> {
    let path = session_path(sidecar, id);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(path, "open the session file", e)),
    };
    // A shared probe: probes of one session never block each other.
    match FileExt::try_lock_shared(&file) {
        Ok(()) => Ok(false),
        Err(e) if is_contended(&e) => Ok(true),
        Err(e) => Err(Error::io(path, "probe the session file", e)),
    }
}

/// Removes the files of sessions that have ended, and returns how many.
pub(crate) fn remove_dead_sessions(sidecar: &Path) -> Result<usize> {
    let dir = sidecar.join(SESSIONS);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, "list the sessions folder", e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&dir, "list the sessions folder", e))?;
        let path = entry.path();
        // A session being started is unlocked for a moment under its
        // temporary name; leave such files alone unless they are old.
        let starting = entry.file_name().to_string_lossy().starts_with('.');
        let young = || {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().unwrap_or_default() < Duration::from_secs(60))
        };
        if starting && young() {
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue; // removed by someone else meanwhile
        };
        // Held while the file is removed, so its session cannot be running.
        if FileExt::try_lock_exclusive(&file).is_ok() {
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path, "remove the dead session file", e)),
            }
        }
    }
    Ok(removed)
}
