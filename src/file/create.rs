//! Making a new lock file, whole or not at all, and recognising what an
//! interrupted creation left.
//!
//! A new file is built under a temporary name in the same directory (created
//! exclusively, so never through a symlink), laid out, synced, and then
//! hard-linked to its path, which fails rather than replace anything that
//! appeared there meanwhile. A crash at any step leaves either no file at the
//! path or a whole one; at worst a temporary file stays behind.
//!
//! A file that is empty, all zeros, or shorter than the storage engine's
//! header cannot hold a lock: it is what a crash in the middle of an older
//! in-place creation (or a `touch`) leaves, and it is laid out anew in place,
//! under the open lock, keeping its owner and mode.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use redb::{ConcurrencyMode, Database};

use super::backend::{Backend, OpenDeadline};
use super::schema::Tables;
use super::store::{Options, storage_error};
use super::trust::parent_of;
use crate::error::{Error, Result};

/// The first bytes of every redb file.
const REDB_MAGIC: &[u8] = b"redb\x1a\x0a\xa9\x0d\x0a";
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";
/// The storage engine's header: a file shorter than this holds no database.
pub(crate) const HEADER_LEN: u64 = 320;
/// The largest file still read through to tell whether it is all zeros.
const MAX_ZERO_SCAN: u64 = 64 << 20;

/// What an existing file holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Content {
    /// A database (whether a hostlock one is checked once it is open).
    Database,
    /// Nothing a lock could be in: empty, zeros, or a cut-off header.
    Leftover,
}

/// Creates the lock file at `path` unless something is there by the time it
/// is ready to link. Returns whether this call created it.
pub(crate) fn create(path: &Path, options: &Options) -> Result<bool> {
    let dir = parent_of(path);
    let Some(name) = path.file_name() else {
        return Err(Error::IsDirectory {
            path: path.to_owned(),
        });
    };
    let temporary = dir.join(format!(
        ".{}.{:016x}.new",
        name.to_string_lossy(),
        crate::guard::random_u64()
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(options.mode)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&temporary)
        .map_err(|e| Error::io(dir, "create a lock file in", e))?;
    let made = make(&file, &temporary, path, options);
    // Linked or failed, the temporary name goes.
    let removed = fs::remove_file(&temporary);
    let created = made?;
    removed.map_err(|e| Error::io(&temporary, "remove", e))?;
    if created {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, "sync the directory of", e))?;
    }
    Ok(created)
}

/// Lays out `file` (named `temporary`), syncs it and links it to `path`.
fn make(file: &File, temporary: &Path, path: &Path, options: &Options) -> Result<bool> {
    // The mode exactly as asked, whatever the umask took away.
    file.set_permissions(Permissions::from_mode(options.mode))
        .map_err(|e| Error::io(temporary, "set the mode of", e))?;
    lay_out(file, temporary, options)?;
    file.sync_all()
        .map_err(|e| Error::io(temporary, "sync", e))?;
    match fs::hard_link(temporary, path) {
        Ok(()) => Ok(true),
        // Another opener created it first: that file is the lock space.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(path, "link the new lock file to", e)),
    }
}

/// Creates the database in `file` with hostlock's tables.
fn lay_out(file: &File, temporary: &Path, options: &Options) -> Result<()> {
    let fail = |e: io::Error| Error::io(temporary, "write", e);
    let backend = Backend::new(
        file.try_clone().map_err(fail)?,
        options.hooks.clone(),
        OpenDeadline::default(),
    )
    .map_err(|e| storage_error(temporary, e))?;
    let mut builder = Database::builder();
    builder.set_concurrency_mode(ConcurrencyMode::MultiWriter);
    let db = builder
        .create_with_backend(backend)
        .map_err(|e| storage_error(temporary, e))?;
    // The file is this call's alone: nothing else can hold its write lock.
    let tx = db.begin_write().map_err(|e| storage_error(temporary, e))?;
    Tables::open(temporary, &tx)?.lay_out()?;
    tx.commit().map_err(|e| storage_error(temporary, e))?;
    db.close().map_err(|e| storage_error(temporary, e))
}

/// Tells a database from a leftover, and refuses a file of another kind,
/// naming what it looks like.
pub(crate) fn classify(file: &File, path: &Path) -> Result<Content> {
    let len = file
        .metadata()
        .map_err(|e| Error::io(path, "inspect", e))?
        .len();
    let mut head = vec![0; SQLITE_MAGIC.len().min(len as usize)];
    file.read_exact_at(&mut head, 0)
        .map_err(|e| Error::io(path, "read", e))?;
    if head.starts_with(REDB_MAGIC) || REDB_MAGIC.starts_with(&head) {
        return Ok(if len < HEADER_LEN {
            Content::Leftover
        } else {
            Content::Database
        });
    }
    if head.iter().all(|&b| b == 0) && len <= MAX_ZERO_SCAN && all_zero(file, path, len)? {
        return Ok(Content::Leftover);
    }
    let found = if head.starts_with(SQLITE_MAGIC) {
        "an SQLite database".to_owned()
    } else {
        format!(
            "it starts with the bytes {:02x?}",
            &head[..head.len().min(8)]
        )
    };
    Err(Error::NotLockFile {
        path: path.to_owned(),
        found,
    })
}

fn all_zero(file: &File, path: &Path, len: u64) -> Result<bool> {
    let mut buf = vec![0; 64 << 10];
    let mut at = 0;
    while at < len {
        let n = buf.len().min((len - at) as usize);
        file.read_exact_at(&mut buf[..n], at)
            .map_err(|e| Error::io(path, "read", e))?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// Empties a leftover so that the engine lays out a new database in it.
pub(crate) fn reset(file: &File, path: &Path) -> Result<()> {
    file.set_len(0)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(path, "empty the unusable leftover", e))
}

/// A new description of the same file (not a duplicate of `file`'s), for a
/// second database handle whose engine locks must not merge with the first's.
pub(crate) fn reopen(file: &File, path: &Path, write: bool) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    OpenOptions::new()
        .read(true)
        .write(write)
        .open(by_fd)
        .or_else(|_| {
            // Without /proc: the path, if it still names the same file.
            let again = OpenOptions::new().read(true).write(write).open(path)?;
            let (a, b) = (again.metadata()?, file.metadata()?);
            use std::os::unix::fs::MetadataExt;
            if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
                Ok(again)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "the path names another file now",
                ))
            }
        })
}
