//! How far a commit is on disk when a call returns, and the boot marker that
//! keeps a relaxed file from outliving a power cut unnoticed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// How far a change is on disk when the call that made it returns; set with
/// [`FileLockerBuilder::durability`](crate::FileLockerBuilder::durability).
///
/// | | survives the process dying (SIGKILL) | survives power loss or a kernel crash | acquire+release cycles per second, one thread |
/// |-|-|-|-|
/// | [`Immediate`](Durability::Immediate) | yes | yes | about 1,300 (two `fdatasync` per commit) |
/// | [`Relaxed`](Durability::Relaxed) | yes | no: the file starts empty after the reboot | two to three times as many, more with threads (see `docs/benchmarks.md`) |
///
/// `Relaxed` writes every commit to the operating system and never waits for
/// the disk, like SQLite's `synchronous=OFF` in WAL mode: whatever a process
/// did is safe from that process dying, since the kernel holds it, but a
/// power cut can leave the file torn. So a relaxed file is only trusted
/// within the boot that wrote it: the sidecar folder records the host's boot
/// id, and the first opener after a reboot empties the file instead of
/// reading what may be damaged ([`FileLocker::started_fresh`](crate::FileLocker::started_fresh)
/// says so). Locks for work that a reboot ends anyway (the holders are gone)
/// lose nothing by it; a lock that must outlive a reboot needs `Immediate`.
///
/// SQLite's `synchronous=NORMAL` in WAL mode sits between the two: it can
/// lose the last commits on power loss, but never tears the database. redb
/// has no such mode for files shared between processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Every change is on disk when its call returns (the default).
    #[default]
    Immediate,
    /// Every change survives its process, not the machine: see above.
    Relaxed,
}

/// The marker in the sidecar folder: the boot id of the host while relaxed
/// commits may be unsynced.
const MARKER: &str = "relaxed-boot";

/// Where the host's boot id is read.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

fn marker(sidecar: &Path) -> PathBuf {
    sidecar.join(MARKER)
}

/// This boot's id.
pub(crate) fn boot_id() -> Result<String> {
    match fs::read_to_string(BOOT_ID) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        Ok(_) => Err(Error::invalid(
            "durability",
            format!("relaxed durability needs the host's boot id, and {BOOT_ID} is empty"),
        )),
        Err(e) => Err(Error::invalid(
            "durability",
            format!("relaxed durability needs the host's boot id from {BOOT_ID}: {e}"),
        )),
    }
}

/// Run by every opener under the open lock, before the database is opened.
///
/// If relaxed commits were made in an earlier boot, the file may be torn:
/// the first opener (`alone`) empties it, and the call returns `true`. Then,
/// for a relaxed opener, records this boot.
pub(crate) fn prepare(
    path: &Path,
    sidecar: &Path,
    durability: Durability,
    alone: bool,
) -> Result<bool> {
    let marker = marker(sidecar);
    let recorded = match fs::read_to_string(&marker) {
        Ok(id) => Some(id.trim().to_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(marker, "read", e)),
    };
    let mut emptied = false;
    let mut current = None;
    if let Some(recorded) = recorded {
        let now = boot_id()?;
        if recorded != now && alone {
            empty(path)?;
            remove_marker(&marker)?;
            emptied = true;
        } else if recorded == now {
            current = Some(now);
        }
    }
    if durability == Durability::Relaxed && current.is_none() {
        write_marker(&marker, &boot_id()?)?;
    }
    Ok(emptied)
}

/// Empties the file in place, so the storage engine starts a new one.
fn empty(path: &Path) -> Result<()> {
    let file = match OpenOptions::new().write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, "open", e)),
    };
    file.set_len(0)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(path, "empty", e))
}

fn remove_marker(marker: &Path) -> Result<()> {
    match fs::remove_file(marker) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(marker, "remove", e)),
    }
}

/// Writes the marker whole (a temporary file renamed over it) and on disk
/// before any relaxed commit can be.
fn write_marker(marker: &Path, boot: &str) -> Result<()> {
    let mut temporary = marker.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    let write = || -> io::Result<()> {
        let mut file = File::create(&temporary)?;
        file.write_all(boot.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, marker)?;
        if let Some(dir) = marker.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| Error::io(marker, "write", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relaxed_file_from_another_boot_is_emptied_by_its_first_opener() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks.redb");
        let sidecar = dir.path().join("locks.redb.hostlock");
        fs::create_dir(&sidecar).unwrap();
        fs::write(&path, b"whatever the last boot left").unwrap();

        // Relaxed in this boot: recorded, nothing emptied.
        assert!(!prepare(&path, &sidecar, Durability::Relaxed, true).unwrap());
        assert_eq!(
            fs::read_to_string(marker(&sidecar)).unwrap(),
            boot_id().unwrap()
        );
        assert!(!prepare(&path, &sidecar, Durability::Immediate, true).unwrap());
        assert_eq!(fs::metadata(&path).unwrap().len(), 27);

        // Another boot: a second opener leaves it, the first empties it.
        fs::write(marker(&sidecar), "an-earlier-boot").unwrap();
        assert!(!prepare(&path, &sidecar, Durability::Immediate, false).unwrap());
        assert_eq!(fs::metadata(&path).unwrap().len(), 27);
        assert!(prepare(&path, &sidecar, Durability::Immediate, true).unwrap());
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        assert!(
            !marker(&sidecar).exists(),
            "an immediate opener leaves no marker"
        );

        fs::write(marker(&sidecar), "an-earlier-boot").unwrap();
        assert!(prepare(&path, &sidecar, Durability::Relaxed, true).unwrap());
        assert_eq!(
            fs::read_to_string(marker(&sidecar)).unwrap(),
            boot_id().unwrap()
        );
    }
}
