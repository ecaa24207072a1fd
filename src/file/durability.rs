//! How far a commit is on disk when a call returns, and the boot marker that
//! keeps a relaxed file from outliving a power cut unnoticed.

use std::fs::{self, File};
use std::path::Path;

use rustix::fs::XattrFlags;
use rustix::io::Errno;

use super::store::Options;

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
/// within the boot that wrote it: the file records the host's boot id (in an
/// extended attribute, so the file system must keep those), and the first opener after a reboot empties the file instead of
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

/// The extended attribute of the lock file that names the host's boot while
/// relaxed commits may be unsynced. It lives on the file itself (its inode):
/// only those who may write the file can set it, and it can be read when the
/// file's pages are torn.
const ATTRIBUTE: &str = "user.hostlock.relaxed-boot";

/// Where the host's boot id is read.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

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
pub(crate) fn prepare(file: &File, path: &Path, options: &Options, alone: bool) -> Result<bool> {
    let durability = options.durability;
    let mut emptied = false;
    let mut current = false;
    if let Some(recorded) = recorded(file, path)? {
        let now = boot_id()?;
        if recorded != now && alone {
            super::create::lay_out_in_place(file, path, options)?;
            forget(file, path)?;
            emptied = true;
        } else if recorded == now {
            current = true;
        }
    }
    if durability == Durability::Relaxed && !current {
        record(file, path, &boot_id()?)?;
    }
    Ok(emptied)
}

/// Whether the file records relaxed commits of an earlier boot: a reader
/// must not trust it until a writer has laid it out anew.
pub(crate) fn from_another_boot(file: &File, path: &Path) -> Result<bool> {
    match recorded(file, path)? {
        Some(recorded) => Ok(recorded != boot_id()?),
        None => Ok(false),
    }
}

/// The boot recorded on the file; none where the file system keeps no
/// extended attributes (then no relaxed opener can have used it).
fn recorded(file: &File, path: &Path) -> Result<Option<String>> {
    let mut value = [0u8; 128];
    match rustix::fs::fgetxattr(file, ATTRIBUTE, &mut value[..]) {
        Ok(len) => Ok(Some(String::from_utf8_lossy(&value[..len]).into_owned())),
        Err(e) if e == Errno::NODATA || e == Errno::NOTSUP || e == Errno::OPNOTSUPP => Ok(None),
        Err(e) => Err(Error::io(
            path,
            "read the relaxed-boot attribute of",
            e.into(),
        )),
    }
}

/// Records the boot on the file, and on disk before any relaxed commit can be.
fn record(file: &File, path: &Path, boot: &str) -> Result<()> {
    match rustix::fs::fsetxattr(file, ATTRIBUTE, boot.as_bytes(), XattrFlags::empty()) {
        Ok(()) => file.sync_all().map_err(|e| Error::io(path, "sync", e)),
        Err(e) if e == Errno::NOTSUP || e == Errno::OPNOTSUPP => Err(Error::invalid(
            "durability",
            format!(
                "relaxed durability records the boot on the lock file as an extended \
                 attribute, which the file system of {} does not keep; use \
                 Durability::Immediate there",
                path.display()
            ),
        )),
        Err(e) => Err(Error::io(path, "record the boot on", e.into())),
    }
}

fn forget(file: &File, path: &Path) -> Result<()> {
    match rustix::fs::fremovexattr(file, ATTRIBUTE) {
        Ok(()) => Ok(()),
        Err(e) if e == Errno::NODATA => Ok(()),
        Err(e) => Err(Error::io(
            path,
            "clear the relaxed-boot attribute of",
            e.into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a reboot leaves: another boot recorded.
    fn pretend_another_boot(file: &File, path: &Path) -> Result<()> {
        record(file, path, "00000000-0000-0000-0000-000000000000")
    }

    fn options(durability: Durability) -> Options {
        Options {
            cache_size: 1 << 20,
            busy_timeout: std::time::Duration::from_secs(1),
            hooks: Default::default(),
            durability,
            mode: 0o600,
            trust: false,
            read_only: false,
        }
    }

    #[test]
    fn a_relaxed_file_from_another_boot_is_emptied_by_its_first_opener() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks.redb");
        fs::write(&path, b"whatever the last boot left").unwrap();
        let file = File::options().read(true).write(true).open(&path).unwrap();
        let (relaxed, immediate) = (options(Durability::Relaxed), options(Durability::Immediate));

        // Relaxed in this boot: recorded, nothing emptied.
        assert!(!prepare(&file, &path, &relaxed, true).unwrap());
        assert_eq!(recorded(&file, &path).unwrap(), Some(boot_id().unwrap()));
        assert!(!prepare(&file, &path, &immediate, true).unwrap());
        assert_eq!(fs::metadata(&path).unwrap().len(), 27);

        // Another boot: a second opener leaves it, the first lays it out anew.
        pretend_another_boot(&file, &path).unwrap();
        assert!(!prepare(&file, &path, &immediate, false).unwrap());
        assert_eq!(fs::metadata(&path).unwrap().len(), 27);
        assert!(prepare(&file, &path, &immediate, true).unwrap());
        assert!(fs::read(&path).unwrap().starts_with(b"redb"));
        assert_eq!(
            recorded(&file, &path).unwrap(),
            None,
            "an immediate opener leaves no marker"
        );

        pretend_another_boot(&file, &path).unwrap();
        assert!(prepare(&file, &path, &relaxed, true).unwrap());
        assert_eq!(recorded(&file, &path).unwrap(), Some(boot_id().unwrap()));
    }
}
