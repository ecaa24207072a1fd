//! `Durability::Relaxed`: commits that survive their process but not the
//! machine, trusted only within the boot that wrote them.

use std::fs;
use std::path::Path;

use hostlock::{Durability, FileLocker, LockValue, Locker, conformance};

fn open(path: &Path, durability: Durability) -> FileLocker<String> {
    FileLocker::builder(path)
        .durability(durability)
        .background_cleanup(false)
        .open()
        .expect("open the lock file")
}

fn lock(value: &str) -> LockValue<String> {
    LockValue::new(value.to_owned())
}

#[test]
fn a_relaxed_file_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let mut made = 0;
    conformance::run(|clock| {
        made += 1;
        FileLocker::builder(dir.path().join(format!("{made}.redb")))
            .durability(Durability::Relaxed)
            .clock(clock)
            .background_cleanup(false)
            .open()
            .expect("a new lock file")
    })
    .assert_passed();
}

#[test]
fn relaxed_locks_survive_closing_and_reopening_in_the_same_boot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let relaxed = open(&path, Durability::Relaxed);
    assert!(!relaxed.started_fresh());
    assert!(relaxed.acquire("job", lock("relaxed")).unwrap());
    // Processes may mix the settings.
    let immediate = open(&path, Durability::Immediate);
    assert!(immediate.acquire("other", lock("immediate")).unwrap());
    drop((relaxed, immediate));
    for durability in [Durability::Immediate, Durability::Relaxed] {
        let again = open(&path, durability);
        assert!(!again.started_fresh());
        assert!(again.exists("job").unwrap() && again.exists("other").unwrap());
    }
}

/// The extended attribute of the lock file that records the boot of its
/// relaxed commits.
const BOOT_ATTRIBUTE: &str = "user.hostlock.relaxed-boot";

/// A reboot is simulated by recording another boot on the file.
fn pretend_a_reboot(path: &Path) {
    let mut recorded = [0u8; 64];
    let len = rustix::fs::getxattr(path, BOOT_ATTRIBUTE, &mut recorded[..])
        .expect("a relaxed opener records the boot");
    assert!(len > 0);
    let other = b"00000000-0000-0000-0000-000000000000";
    rustix::fs::setxattr(path, BOOT_ATTRIBUTE, other, rustix::fs::XattrFlags::empty()).unwrap();
}

#[test]
fn after_a_reboot_a_relaxed_file_starts_empty_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let relaxed = open(&path, Durability::Relaxed);
    assert!(relaxed.acquire("job", lock("before")).unwrap());
    drop(relaxed);
    pretend_a_reboot(&path);

    // Whatever the first opener's setting, it does not trust the file.
    let first = open(&path, Durability::Immediate);
    assert!(first.started_fresh());
    assert!(!first.exists("job").unwrap());
    assert!(first.acquire("job", lock("after")).unwrap());
    assert!(first.check().unwrap().problems.is_empty());
    drop(first);
    // Immediate commits since: nothing to distrust.
    let again = open(&path, Durability::Immediate);
    assert!(!again.started_fresh());
    assert_eq!(again.get("job").unwrap().unwrap().value, "after");
}

#[test]
fn a_file_torn_by_a_power_cut_is_emptied_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let relaxed = open(&path, Durability::Relaxed);
    for i in 0..20 {
        assert!(relaxed.acquire(&format!("k{i}"), lock("v")).unwrap());
    }
    drop(relaxed);
    // What a power cut may leave: pages that never reached the disk.
    let mut bytes = fs::read(&path).unwrap();
    let len = bytes.len();
    bytes[len / 3..len / 2].fill(0);
    fs::write(&path, bytes).unwrap();
    pretend_a_reboot(&path);

    let after = open(&path, Durability::Relaxed);
    assert!(after.started_fresh());
    assert!(!after.exists("k0").unwrap());
    assert!(after.acquire("k0", lock("v")).unwrap());
}

#[test]
fn an_opener_that_is_not_first_leaves_the_file_to_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let relaxed = open(&path, Durability::Relaxed);
    assert!(relaxed.acquire("job", lock("held")).unwrap());
    // A marker from another boot while a handle of this boot is open can
    // only be someone's mistake; the file in use is not emptied under it.
    pretend_a_reboot(&path);
    let second = open(&path, Durability::Relaxed);
    assert!(!second.started_fresh());
    assert!(second.exists("job").unwrap());
}
