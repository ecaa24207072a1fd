//! A lock outlives the handle and the process that took it: it is read back
//! after reopening, and by other processes.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hostlock::{FileLocker, LockValue, Locker, RenewableLocker};

/// The body of every child process; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let locker: FileLocker<String> = FileLocker::open(common::setting(common::FILE)).unwrap();
    match role.as_str() {
        // Prints the lock under "job" and whether it can be taken.
        "read" => {
            let found = locker.get("job").unwrap();
            let taken = locker
                .acquire("job", LockValue::new("intruder".into()))
                .unwrap();
            println!("RESULT {found:?} taken={taken}");
        }
        // Takes "from-child" and exits without releasing it.
        "write" => {
            let lock = LockValue::new("written by a child".to_owned()).with_token("child-token");
            assert!(locker.acquire("from-child", lock).unwrap());
        }
        other => panic!("unknown role {other}"),
    }
    std::io::stdout().flush().unwrap();
}

fn far_future() -> SystemTime {
    UNIX_EPOCH + Duration::new(4_000_000_000, 987_654_321)
}

#[test]
fn lock_survives_the_process_and_is_seen_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("locks.redb");
    let lock = LockValue::new("nightly build".to_owned())
        .expiring_at(far_future())
        .with_token("owner");
    {
        let locker: FileLocker<String> = FileLocker::open(&file).unwrap();
        assert!(locker.acquire("job", lock.clone()).unwrap());
    }
    let output = common::child("read", &file)
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let expected = format!("RESULT {:?} taken=false", Some(lock.clone()));
    assert!(
        stdout.lines().any(|line| line.ends_with(&expected)),
        "the child saw: {stdout}"
    );

    let locker: FileLocker<String> = FileLocker::open(&file).unwrap();
    assert_eq!(locker.get("job").unwrap(), Some(lock));
    assert!(locker.release_if_owner("job", "owner").unwrap());
}

#[test]
fn lock_taken_by_an_exited_child_stays() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("locks.redb");
    let status = common::child("write", &file)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let locker: FileLocker<String> = FileLocker::open(&file).unwrap();
    let lock = locker.get("from-child").unwrap().unwrap();
    assert_eq!(lock.value, "written by a child");
    assert_eq!(lock.token.as_deref(), Some("child-token"));
    assert!(
        !locker
            .acquire("from-child", LockValue::new("me".into()))
            .unwrap()
    );
}

#[test]
fn clones_and_second_handles_share_the_locks() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("locks.redb");
    let first: FileLocker<String> = FileLocker::open(&file).unwrap();
    let clone = first.clone();
    let second: FileLocker<String> = FileLocker::open(&file).unwrap();
    assert!(first.acquire("k", LockValue::new("first".into())).unwrap());
    assert!(!clone.acquire("k", LockValue::new("clone".into())).unwrap());
    assert!(
        !second
            .acquire("k", LockValue::new("second".into()))
            .unwrap()
    );
    assert_eq!(second.get("k").unwrap().unwrap().value, "first");
    drop(first);
    assert!(clone.release("k").unwrap());
    assert!(!second.exists("k").unwrap());
}
