//! One lock space per file: every path to the file (a hard link, a symlink,
//! a bind mount) shares its locks across processes; a file deleted, replaced
//! or truncated under a handle is reported to its guards, also in another
//! process; fences never repeat at one path; and a creation interrupted at
//! any write or sync leaves a path that opens.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use hostlock::{
    Error, Fault, Faults, FileLocker, LeaseLocker, LeaseLost, LockValue, Locker, RenewableLocker,
};

use common::{FILE, Reaped};

fn open(path: &Path) -> FileLocker<String> {
    FileLocker::builder(path)
        .background_cleanup(false)
        .open()
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// The children: take "k" through the path given, say so, and hold it until
/// killed; or hold a guard with a keep-alive and report how it was lost.
#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let path = PathBuf::from(common::setting(FILE));
    if role == "busy" {
        return busy_opens(&path);
    }
    let locker = FileLocker::<String>::builder(&path)
        .background_cleanup(false)
        .trust_path(true)
        .open()
        .unwrap();
    println!();
    match role.as_str() {
        "hold" => {
            let guard = locker.try_lock("k", "child".into(), None).unwrap();
            assert!(guard.is_some(), "the child takes k");
            println!("HELD");
            let parent = std::os::unix::process::parent_id();
            while !common::orphaned(parent) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        "keep" => {
            let mut guard = locker.try_lock("k", "child".into(), None).unwrap().unwrap();
            guard.keep_alive(Duration::from_millis(50)).unwrap();
            println!("HELD");
            match guard.wait_lost(Duration::from_secs(20)) {
                Some(LeaseLost::Broken(why)) => println!("BROKEN {why}"),
                other => println!("OTHER {other:?}"),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Starts a child in `role` on `path` and waits until it holds "k".
fn holder(role: &str, path: &Path) -> (Reaped, impl Iterator<Item = String>) {
    holder_with(common::child(role, path))
}

fn holder_with(mut command: Command) -> (Reaped, impl Iterator<Item = String>) {
    let mut child = Reaped(command.stdout(Stdio::piped()).spawn().unwrap());
    let mut lines = BufReader::new(child.0.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok);
    assert!(
        lines.by_ref().any(|line| line == "HELD"),
        "the child took its lock"
    );
    (child, lines)
}

#[test]
fn a_hard_link_and_a_symlink_share_the_files_locks_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    drop(open(&path));
    let hard = dir.path().join("hard.redb");
    let soft = dir.path().join("soft.redb");
    fs::hard_link(&path, &hard).unwrap();
    std::os::unix::fs::symlink(&path, &soft).unwrap();

    let (mut child, _) = holder("hold", &hard);
    for other in [&path, &soft, &hard] {
        let locker = open(other);
        assert!(locker.exists("k").unwrap(), "{}", other.display());
        assert!(
            locker
                .try_lock("k", "parent".into(), None)
                .unwrap()
                .is_none(),
            "{}",
            other.display()
        );
    }
    // Its session ends with it, for every path.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(
        open(&soft)
            .try_lock("k", "parent".into(), None)
            .unwrap()
            .is_some()
    );
}

/// A single-file bind mount (as a container gets one) is the same file.
/// Needs a mount namespace: root, and `unshare -m` allowed.
#[test]
fn a_bind_mount_of_the_file_shares_its_locks() {
    let allowed = Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        eprintln!("unshare -m is not allowed here: the bind mount case is not checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    drop(open(&path));
    let target = dir.path().join("mounted.redb");
    fs::write(&target, b"").unwrap();
    // The child runs in a namespace where `mounted.redb` is the lock file.
    let child = common::child("hold", &target);
    let script = r#"mount --bind "$1" "$2" && shift 2 && exec "$@""#;
    let mut command = Command::new("unshare");
    command
        .args(["-m", "sh", "-c", script, "sh"])
        .arg(&path)
        .arg(&target)
        .arg(child.get_program())
        .args(child.get_args())
        .envs(child.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let (_child, _) = holder_with(command);
    let locker = open(&path);
    assert!(locker.exists("k").unwrap(), "held through the bind mount");
    assert_eq!(fs::read(&target).unwrap(), b"", "outside the namespace");
}

#[test]
fn a_deleted_replaced_or_truncated_file_ends_a_guard_in_another_process() {
    for change in ["delete", "replace", "truncate"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks.redb");
        drop(open(&path));
        let (mut child, mut lines) = holder("keep", &path);
        match change {
            "delete" => fs::remove_file(&path).unwrap(),
            "replace" => {
                let other = dir.path().join("other.redb");
                drop(open(&other));
                fs::rename(&other, &path).unwrap();
            }
            _ => fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(0)
                .unwrap(),
        }
        // Another process may now take the key in what the path names.
        let fresh = open(&path);
        assert!(fresh.try_lock("k", "new".into(), None).unwrap().is_some());
        let said = lines.next().unwrap_or_default();
        assert!(
            said.starts_with("BROKEN") && said.contains("open it again"),
            "{change}: {said}"
        );
        child.0.wait().unwrap();
    }
}

#[test]
fn a_file_laid_out_anew_under_a_handle_is_replaced_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let old = open(&path);
    let guard = old.try_lock("k", "old".into(), None).unwrap().unwrap();
    let fence = guard.fence();
    // Emptied in place and opened again: the same inode, a new lock space.
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    let fresh = open(&path);
    let taken = fresh.try_lock("k", "new".into(), None).unwrap().unwrap();
    assert!(taken.fence() > fence, "fences do not repeat at one path");
    // The old handle neither confirms its guard nor grants anything.
    assert!(guard.check().is_err());
    assert!(matches!(guard.lost(), Some(LeaseLost::Broken(_))));
    for result in [
        old.exists("k").map(drop),
        old.acquire("j", LockValue::new("x".into())).map(drop),
        old.release_if_owner("k", taken.token()).map(drop),
    ] {
        assert!(matches!(result, Err(Error::Replaced { .. })), "{result:?}");
    }
    assert!(fresh.exists("k").unwrap());
}

#[test]
fn fences_after_recreating_a_file_are_higher() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let mut last = 0;
    for _ in 0..3 {
        let locker = open(&path);
        for key in ["a", "b"] {
            let guard = locker.try_lock(key, "v".into(), None).unwrap().unwrap();
            assert!(guard.fence() > last, "{} after {last}", guard.fence());
            last = guard.fence();
        }
        drop(locker);
        fs::remove_file(&path).unwrap();
    }
}

/// Fails the `n`th write (or sync) of creating a new file, then opens the
/// path with working storage.
fn interrupt_creation(path: &Path, n: u64, syncs: bool, fault: Fault) -> hostlock::Result<()> {
    let faults = Faults::new();
    if syncs {
        faults.fail_syncs_after(n, fault);
    } else {
        faults.fail_writes_after(n, fault);
    }
    let opened = FileLocker::<String>::builder(path)
        .background_cleanup(false)
        .faults(faults.clone())
        .open();
    let failed = opened.is_err();
    drop(opened);
    let locker = open(path);
    assert!(locker.acquire("k", LockValue::new("v".into())).unwrap());
    assert!(locker.check().unwrap().problems.is_empty());
    if failed {
        Err(Error::NoSpace { path: path.into() })
    } else {
        Ok(())
    }
}

#[test]
fn a_creation_that_fails_at_any_write_or_sync_leaves_a_usable_path() {
    let dir = tempfile::tempdir().unwrap();
    for syncs in [false, true] {
        let mut failed = 0;
        for n in 0..40 {
            for fault in [Fault::DiskFull, Fault::Io] {
                let path = dir.path().join(format!("new-{syncs}-{n}-{fault:?}.redb"));
                failed += usize::from(interrupt_creation(&path, n, syncs, fault).is_err());
                // An empty file left by a touch or an older creation, too.
                let touched = dir
                    .path()
                    .join(format!("touched-{syncs}-{n}-{fault:?}.redb"));
                fs::write(&touched, b"").unwrap();
                failed += usize::from(interrupt_creation(&touched, n, syncs, fault).is_err());
            }
        }
        assert!(failed > 8, "the faults hit the creation ({failed} failed)");
    }
    // No temporary file is left behind by a failed creation.
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A crash while creating: a child killed at random moments of its open.
#[test]
fn a_creation_killed_at_any_moment_leaves_a_usable_path() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        let path = dir.path().join(format!("killed-{i}.redb"));
        let mut child = Reaped(
            common::child("hold", &path)
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_micros(500 * i));
        let _ = child.0.kill();
        let _ = child.0.wait();
        if path.exists() {
            let locker = open(&path);
            assert!(locker.acquire("j", LockValue::new("v".into())).unwrap());
        }
    }
}

/// An open that ends in `Busy` leaves no thread and no descriptor behind:
/// here someone with read access holds a read lock on redb's header, which
/// the engine must lock while it opens. Counted in a child process of its
/// own, where no other test starts threads or opens files meanwhile.
#[test]
fn a_busy_open_leaves_no_thread_or_descriptor_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let locker = open(&path);
    assert!(locker.acquire("k", LockValue::new("v".into())).unwrap());
    let out = common::child("busy", &path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("BUSY OPENS LEFT NOTHING"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(locker.exists("k").unwrap());
}

/// The child of the test above.
fn busy_opens(path: &Path) {
    use redb::StorageBackend;
    use std::ops::Bound;
    let probe = redb::backends::FileBackend::new(fs::File::open(path).unwrap()).unwrap();
    assert!(
        probe
            .try_lock_shared_range(Bound::Included(0), Bound::Excluded(320))
            .unwrap()
    );
    let count = |dir: &str| fs::read_dir(dir).unwrap().count();
    let (threads, fds) = (count("/proc/self/task"), count("/proc/self/fd"));
    for _ in 0..5 {
        let err = FileLocker::<String>::builder(path)
            .background_cleanup(false)
            .busy_timeout(Duration::from_millis(50))
            .open()
            .unwrap_err();
        assert!(matches!(err, Error::Busy { .. }), "{err:?}");
    }
    assert_eq!(count("/proc/self/task"), threads, "no thread left behind");
    assert_eq!(count("/proc/self/fd"), fds, "no descriptor left behind");
    drop(probe);
    assert!(
        open(path).exists("k").unwrap(),
        "opens once the lock is gone"
    );
    println!("BUSY OPENS LEFT NOTHING");
}
