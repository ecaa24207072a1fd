//! Making a new lock file, whole or not at all, and recognising what an
//! interrupted creation left.
//!
//! The database a new file starts with is built in memory (`image`). A new
//! file is written under a temporary name in the same directory (created
//! exclusively, so never through a symlink), synced, and then hard-linked to
//! its path, which fails rather than replace anything that appeared there
//! meanwhile. A crash at any step leaves either no file at the path or a
//! whole one; at worst a temporary file stays behind.
//!
//! A file that is empty, all zeros, or shorter than the storage engine's
//! header cannot hold a lock: it is what a `touch` (a file made ready for a
//! bind mount), or a crash in an older in-place creation, leaves. It is laid
//! out anew in place, under the open lock, keeping its inode, owner and mode:
//! the image's first page is written last, and an extended attribute marks the
//! file as being laid out until it is, so that a crash in between is
//! recognised as well.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use redb::{Database, StorageBackend};
use rustix::io::Errno;

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
/// The part of the image written last: its first page, with the header.
const FIRST_PAGE: usize = 4096;
/// The largest file still read through to tell whether it is all zeros.
const MAX_ZERO_SCAN: u64 = 64 << 20;
/// Set on a file while it is laid out in place.
const LAYING_OUT: &str = "user.hostlock.laying-out";

/// What an existing file holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Content {
    /// A database (whether a hostlock one is checked once it is open).
    Database,
    /// Nothing a lock could be in: empty, zeros, a cut-off header, or an
    /// interrupted lay-out.
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
    let image = image(path)?;
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
    let made = make(&file, &temporary, path, &image, options);
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

/// Writes `image` into `file` (named `temporary`) and links it to `path`.
fn make(
    file: &File,
    temporary: &Path,
    path: &Path,
    image: &[u8],
    options: &Options,
) -> Result<bool> {
    // The mode exactly as asked, whatever the umask took away.
    file.set_permissions(Permissions::from_mode(options.mode))
        .map_err(|e| Error::io(temporary, "set the mode of", e))?;
    write_image(file, temporary, image, options)?;
    match fs::hard_link(temporary, path) {
        Ok(()) => Ok(true),
        // Another opener created it first: that file is the lock space.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(path, "link the new lock file to", e)),
    }
}

/// Lays out a leftover (see [`Content::Leftover`]) in place. Runs under the
/// open lock.
pub(crate) fn lay_out_in_place(file: &File, path: &Path, options: &Options) -> Result<()> {
    let image = image(path)?;
    let marked =
        match rustix::fs::fsetxattr(file, LAYING_OUT, b"1", rustix::fs::XattrFlags::empty()) {
            Ok(()) => true,
            // Without extended attributes, a crash below leaves a file whose
            // first page is zeros, which `classify` then names.
            Err(e) if e == Errno::NOTSUP || e == Errno::OPNOTSUPP => false,
            Err(e) => return Err(Error::io(path, "mark the leftover", e.into())),
        };
    write_image(file, path, &image, options)?;
    if marked {
        unmark(file, path)?;
    }
    Ok(())
}

fn unmark(file: &File, path: &Path) -> Result<()> {
    match rustix::fs::fremovexattr(file, LAYING_OUT) {
        Ok(()) => Ok(()),
        Err(e) if e == Errno::NODATA || e == Errno::NOTSUP || e == Errno::OPNOTSUPP => Ok(()),
        Err(e) => Err(Error::io(path, "unmark the laid-out file", e.into())),
    }
}

/// Writes `image` over the whole of `file` and syncs it, its first page last,
/// through the storage backend (so that injected faults apply).
fn write_image(file: &File, path: &Path, image: &[u8], options: &Options) -> Result<()> {
    let fail = |e: io::Error| Error::io(path, "write", e);
    let storage = Backend::new(
        file.try_clone().map_err(fail)?,
        options.hooks.clone(),
        OpenDeadline::default(),
    )
    .map_err(|e| storage_error(path, e))?;
    let split = FIRST_PAGE.min(image.len());
    let steps = || -> io::Result<()> {
        storage.set_len(0)?;
        storage.write(split as u64, &image[split..])?;
        storage.sync_data()?;
        storage.write(0, &image[..split])?;
        storage.sync_data()
    };
    steps().map_err(fail)?;
    // Synced whatever the durability: the file must never be found half made.
    file.sync_all().map_err(fail)
}

/// A new database with hostlock's tables, built in memory.
fn image(path: &Path) -> Result<Vec<u8>> {
    let image = Image::default();
    let db = Database::builder()
        .create_with_backend(image.clone())
        .map_err(|e| storage_error(path, e))?;
    let tx = db.begin_write().map_err(|e| storage_error(path, e))?;
    Tables::open(path, &tx)?.lay_out()?;
    tx.commit().map_err(|e| storage_error(path, e))?;
    db.close().map_err(|e| storage_error(path, e))?;
    let bytes = std::mem::take(&mut *image.bytes());
    Ok(bytes)
}

/// Memory the engine builds an image in, readable once it is closed.
#[derive(Clone, Debug, Default)]
struct Image(Arc<Mutex<Vec<u8>>>);

impl Image {
    fn bytes(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl StorageBackend for Image {
    fn len(&self) -> io::Result<u64> {
        Ok(self.bytes().len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let bytes = self.bytes();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start.checked_add(out.len()) {
            Some(end) if end <= bytes.len() => {
                out.copy_from_slice(&bytes[start..end]);
                Ok(())
            }
            _ => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        self.bytes().resize(len, 0);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut bytes = self.bytes();
        let start =
            usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let end = start + data.len();
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[start..end].copy_from_slice(data);
        Ok(())
    }
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
    let laying_out = marked(file, path)?;
    if head.starts_with(REDB_MAGIC) || REDB_MAGIC.starts_with(&head) {
        return Ok(if len < HEADER_LEN {
            Content::Leftover
        } else {
            if laying_out {
                // Laid out whole; the crash came before the mark was removed.
                unmark(file, path)?;
            }
            Content::Database
        });
    }
    let zeros = head.iter().all(|&b| b == 0);
    if zeros && (laying_out || (len <= MAX_ZERO_SCAN && all_zero(file, path, len)?)) {
        return Ok(Content::Leftover);
    }
    let found = if head.starts_with(SQLITE_MAGIC) {
        "an SQLite database".to_owned()
    } else if zeros {
        "zero bytes where a lock file's header belongs (a creation interrupted on a file \
         system without extended attributes? if no process uses it, remove it)"
            .to_owned()
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

/// Whether the file is marked as being laid out in place.
fn marked(file: &File, path: &Path) -> Result<bool> {
    let mut value = [0u8; 8];
    match rustix::fs::fgetxattr(file, LAYING_OUT, &mut value[..]) {
        Ok(_) => Ok(true),
        Err(e) if e == Errno::NODATA || e == Errno::NOTSUP || e == Errno::OPNOTSUPP => Ok(false),
        Err(e) => Err(Error::io(path, "read the attributes of", e.into())),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_first_page_is_a_leftover_only_while_marked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut bytes = vec![0u8; 3 * FIRST_PAGE];
        bytes[FIRST_PAGE + 7] = 1; // a body, no header: an interrupted lay-out
        fs::write(&path, &bytes).unwrap();
        let file = File::options().read(true).write(true).open(&path).unwrap();
        let err = classify(&file, &path).unwrap_err();
        assert!(err.to_string().contains("zero bytes"), "{err}");

        rustix::fs::fsetxattr(&file, LAYING_OUT, b"1", rustix::fs::XattrFlags::empty()).unwrap();
        assert_eq!(classify(&file, &path).unwrap(), Content::Leftover);
        let options = Options {
            cache_size: 1 << 20,
            busy_timeout: std::time::Duration::from_secs(1),
            hooks: Default::default(),
            durability: super::super::Durability::Immediate,
            mode: 0o600,
            trust: false,
            read_only: false,
        };
        lay_out_in_place(&file, &path, &options).unwrap();
        assert!(!marked(&file, &path).unwrap(), "unmarked once laid out");
        assert_eq!(classify(&file, &path).unwrap(), Content::Database);

        // Whole, but the crash came before the mark went: a database.
        rustix::fs::fsetxattr(&file, LAYING_OUT, b"1", rustix::fs::XattrFlags::empty()).unwrap();
        assert_eq!(classify(&file, &path).unwrap(), Content::Database);
        assert!(!marked(&file, &path).unwrap());
    }
}
