//! Whether a path can be trusted as a lock file: what it names, and who else
//! could put another file (or a symlink) in its place.
//!
//! The lock space is the file itself, so whoever can replace the file under
//! its path can split it: processes that open the path after the swap share
//! another lock space. That is possible for anyone who can write the file's
//! directory, unless the directory is sticky (like `/tmp`) and the file is
//! the opener's own. A world-writable file can be emptied by anyone.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const WORLD_WRITABLE: u32 = 0o002;
const STICKY: u32 = 0o1000;

/// The directory a path lives in (`.` for a bare name).
pub(crate) fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// What a path names before anything is opened: refuses what can never be a
/// lock file (a directory, a FIFO, a device, a socket), so that opening it
/// neither hangs nor touches a device, and a symlink planted by another user
/// in a directory anyone can write. `Ok(false)` when nothing is there yet.
pub(crate) fn check_path(path: &Path, trust: bool) -> Result<bool> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = parent_of(path);
            return match fs::metadata(parent) {
                Ok(dir) if dir.is_dir() => {
                    if !trust {
                        check_directory(path, parent, &dir, None)?;
                    }
                    Ok(false)
                }
                Ok(_) => Err(Error::NotFound {
                    path: parent.to_owned(),
                }),
                Err(e) => Err(Error::io(parent, "inspect the directory of", e)),
            };
        }
        Err(e) => return Err(Error::io(path, "inspect", e)),
    };
    if meta.file_type().is_symlink() {
        if !trust {
            let parent = parent_of(path);
            let dir = fs::metadata(parent).map_err(|e| Error::io(parent, "inspect", e))?;
            check_directory(path, parent, &dir, Some(meta.uid()))
                .map_err(|e| symlink_reason(e, meta.uid()))?;
        }
        return match fs::metadata(path) {
            Ok(target) => {
                check_kind(path, &target)?;
                Ok(true)
            }
            // A dangling symlink: creation never follows one.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotLockFile {
                path: path.to_owned(),
                found: "a symlink to nothing; hostlock does not create a file through a symlink"
                    .to_owned(),
            }),
            Err(e) => Err(Error::io(path, "inspect", e)),
        };
    }
    check_kind(path, &meta)?;
    Ok(true)
}

fn symlink_reason(e: Error, owner: u32) -> Error {
    match e {
        Error::Untrusted { path, .. } => Error::Untrusted {
            path,
            reason: format!(
                "it is a symlink owned by user {owner} in a directory anyone can write, \
                 so it may point anywhere its owner likes"
            ),
        },
        other => other,
    }
}

/// Refuses anything but a regular file.
pub(crate) fn check_kind(path: &Path, meta: &Metadata) -> Result<()> {
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(());
    }
    if kind.is_dir() {
        return Err(Error::IsDirectory {
            path: path.to_owned(),
        });
    }
    let found = if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(Error::NotLockFile {
        path: path.to_owned(),
        found: found.to_owned(),
    })
}

/// Checks an opened lock file (its metadata from the open descriptor): a
/// regular file that no one but its users could write or replace.
pub(crate) fn check_opened(path: &Path, meta: &Metadata, trust: bool) -> Result<()> {
    check_kind(path, meta)?;
    if trust {
        return Ok(());
    }
    if meta.mode() & WORLD_WRITABLE != 0 {
        return Err(untrusted(
            path,
            format!(
                "anyone may write it (mode {:04o}); remove write access for others \
                 (chmod o-w)",
                meta.mode() & 0o7777
            ),
        ));
    }
    // The directory that holds the file itself, past any symlink.
    let real = fs::canonicalize(path).map_err(|e| Error::io(path, "resolve", e))?;
    let parent = parent_of(&real);
    let dir = fs::metadata(parent).map_err(|e| Error::io(parent, "inspect", e))?;
    check_directory(path, parent, &dir, Some(meta.uid()))
}

/// Refuses a directory where someone other than the opener could replace
/// the file (owned by `owner`, or about to be created by the opener).
fn check_directory(path: &Path, parent: &Path, dir: &Metadata, owner: Option<u32>) -> Result<()> {
    let mode = dir.mode();
    if mode & WORLD_WRITABLE == 0 {
        return Ok(());
    }
    if mode & STICKY == 0 {
        return Err(untrusted(
            path,
            format!(
                "its directory {} may be written by anyone and is not sticky, so anyone \
                 can replace the file",
                parent.display()
            ),
        ));
    }
    let me = euid();
    match owner {
        // Root and the directory's owner could replace the file anyway.
        Some(owner) if owner != me && owner != 0 && owner != dir.uid() => Err(untrusted(
            path,
            format!(
                "it belongs to user {owner}, not to this process's user {me}, in {} where \
                 anyone may create files, so its owner can replace it at any time",
                parent.display()
            ),
        )),
        _ => Ok(()),
    }
}

fn untrusted(path: &Path, reason: String) -> Error {
    Error::Untrusted {
        path: PathBuf::from(path),
        reason,
    }
}

/// The effective user id of this process.
pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}
