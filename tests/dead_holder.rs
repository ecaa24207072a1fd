//! Locks bound to a locker session are free the moment their holder is gone:
//! its handle closed or its process killed, whatever its TTL.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use hostlock::{
    CleanableLocker, FileLocker, InspectableLocker, LeaseLocker, LockState, LockValue, Locker,
};

/// The body of every child process; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let locker = bound(Path::new(&common::setting(common::FILE)));
    // Either a bound lock taken with the trait's acquire, or a guard; both
    // without TTL.
    let pid = std::process::id();
    let guard = match role.as_str() {
        "hold" => {
            assert!(locker.acquire("job", LockValue::new(pid)).unwrap());
            None
        }
        "guard" => Some(locker.try_lock("job", pid, None).unwrap().unwrap()),
        other => panic!("unknown role {other}"),
    };
    let fence = locker.info("job").unwrap().unwrap().fence;
    assert!(guard.as_ref().is_none_or(|g| g.fence() == fence));
    // libtest may have written "test child_entry ... " on this line already.
    println!("READY {fence}");
    let parent = std::os::unix::process::parent_id();
    while !common::orphaned(parent) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn bound(path: &Path) -> FileLocker<u32> {
    FileLocker::builder(path)
        .bind_to_session(true)
        .background_cleanup(false)
        .open()
        .unwrap()
}

/// What the directory of the lock file holds.
fn files_beside(path: &Path) -> Vec<std::ffi::OsString> {
    let dir = path.parent().unwrap();
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect()
}

#[test]
fn a_killed_holder_frees_its_lock_at_once() {
    killed_holder_frees_its_lock_at_once("hold");
}

#[test]
fn a_killed_guard_holder_frees_its_lock_at_once() {
    killed_holder_frees_its_lock_at_once("guard");
}

fn killed_holder_frees_its_lock_at_once(role: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let locker = bound(&path);
    let mut child = common::Reaped(
        common::child(role, &path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let child_fence: u64 = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.rsplit_once("READY ").map(|(_, f)| f.parse().unwrap()))
        .expect("the child took its lock");
    assert!(locker.exists("job").unwrap());
    assert!(!locker.acquire("job", LockValue::new(0)).unwrap());
    let info = locker.info("job").unwrap().unwrap();
    assert_eq!(info.holder.alive, Some(true));
    assert_eq!(info.holder.pid, child.0.id());

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let killed = Instant::now();
    assert!(!locker.exists("job").unwrap(), "free at once, with no TTL");
    let info = locker.info("job").unwrap().unwrap();
    assert_eq!(info.state, LockState::HolderGone);
    assert_eq!(info.holder.alive, Some(false));
    assert!(locker.acquire("job", LockValue::new(1)).unwrap());
    let recovered = killed.elapsed();
    let fence = locker.info("job").unwrap().unwrap().fence;
    assert!(
        fence > child_fence,
        "fence {fence} after the dead holder's {child_fence}"
    );
    eprintln!("acquired {recovered:?} after the holder was reaped");

    // Sessions live in the file itself: nothing was left beside it.
    assert_eq!(files_beside(&path), [path.file_name().unwrap()]);
}

#[test]
fn a_closed_handle_frees_its_bound_locks_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let watcher: FileLocker<u32> = FileLocker::builder(&path)
        .background_cleanup(false)
        .open()
        .unwrap();
    let holder = bound(&path);
    assert!(holder.acquire("bound", LockValue::new(1)).unwrap());
    let unbound: FileLocker<u32> = FileLocker::builder(&path)
        .background_cleanup(false)
        .open()
        .unwrap();
    assert!(unbound.acquire("unbound", LockValue::new(2)).unwrap());
    assert_eq!(watcher.info("unbound").unwrap().unwrap().holder.alive, None);
    assert!(watcher.exists("bound").unwrap());

    // Same process, same pid, still running: only the session tells.
    drop(holder);
    drop(unbound);
    assert!(!watcher.exists("bound").unwrap());
    assert_eq!(watcher.get("bound").unwrap(), None);
    assert!(watcher.exists("unbound").unwrap(), "unbound locks stay");
    let live: Vec<String> = watcher
        .list(false)
        .unwrap()
        .into_iter()
        .map(|i| i.unwrap().key)
        .collect();
    assert_eq!(live, ["unbound"]);
    assert_eq!(watcher.list(true).unwrap().len(), 2);
    assert_eq!(watcher.cleanup().unwrap(), 1, "cleanup removes the orphan");
    assert_eq!(watcher.list(true).unwrap().len(), 1);
    assert_eq!(watcher.cleanup().unwrap(), 0);
}
