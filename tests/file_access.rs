//! Lock files the process may not use (a read-only directory, a file or
//! folder it has no permission for) and lock files deleted or replaced while
//! open: each a specific error naming the path, never a panic, never a lock
//! granted where other processes cannot see it.
//!
//! Root may write anywhere, so when the tests run as root the permission
//! checks run in a child process started as the unprivileged user `nobody`.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use hostlock::{Error, FileLocker, LockValue, Locker};

use common::{FILE, child, role, setting};

/// The user and group id of `nobody` on Linux.
const NOBODY: u32 = 65534;

fn open(path: &Path) -> hostlock::Result<FileLocker<String>> {
    FileLocker::builder(path).background_cleanup(false).open()
}

fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The child: opens the file it is given and prints the outcome.
#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    assert_eq!(role, "open", "unknown role");
    let path = PathBuf::from(setting(FILE));
    // The test harness has begun a line ("test child_entry ... ").
    println!();
    match open(&path) {
        Ok(locker) => match locker.acquire("k", LockValue::new("v".to_owned())) {
            Ok(held) => println!("opened: acquire gave {held}"),
            Err(e) => println!("error: {e:?}\nmessage: {e}"),
        },
        Err(e) => println!("error: {e:?}\nmessage: {e}"),
    }
}

/// What opening `path` gives an unprivileged process: the error's debug
/// form and its message, or `None` if it opened.
fn open_unprivileged(path: &Path) -> Option<(String, String)> {
    if !is_root() {
        return open(path).err().map(|e| (format!("{e:?}"), e.to_string()));
    }
    let out = child("open", path)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("start the child as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if stdout.lines().any(|l| l.starts_with("opened: ")) {
        return None;
    }
    let field = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {stdout}"))
            .to_owned()
    };
    Some((field("error: "), field("message: ")))
}

/// A temporary directory that `nobody` may enter.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_new_file_in_a_read_only_directory_is_refused() {
    let dir = shared_dir();
    let locks = dir.path().join("locks");
    fs::create_dir(&locks).unwrap();
    set_mode(&locks, 0o555);
    let path = locks.join("locks.redb");
    let (debug, message) = open_unprivileged(&path).expect("the open must fail");
    assert!(debug.starts_with("PermissionDenied"), "{debug}");
    assert!(message.contains(&*locks.to_string_lossy()), "{message}");
    assert!(!path.exists(), "nothing was created");
}

#[test]
fn a_file_of_another_user_is_refused() {
    let dir = shared_dir();
    let path = dir.path().join("locks.redb");
    drop(open(&path).unwrap());
    // Readable by everyone, writable by its owner only.
    set_mode(&path, 0o644);
    let (debug, message) = open_unprivileged(&path).expect("the open must fail");
    assert!(debug.starts_with("PermissionDenied"), "{debug}");
    assert!(
        message.contains(&*dir.path().to_string_lossy()),
        "{message}"
    );
    assert!(message.contains("permission"), "{message}");
}

#[test]
fn a_sidecar_folder_of_another_user_is_refused() {
    let dir = shared_dir();
    let path = dir.path().join("locks.redb");
    drop(open(&path).unwrap());
    // The file is shared, but its sidecar folder is not.
    set_mode(&path, 0o666);
    let sidecar = dir.path().join("locks.redb.hostlock");
    set_mode(&sidecar, 0o700);
    let (debug, message) = open_unprivileged(&path).expect("the open must fail");
    assert!(debug.starts_with("PermissionDenied"), "{debug}");
    assert!(message.contains(&*sidecar.to_string_lossy()), "{message}");
}

#[test]
fn a_file_shared_with_everyone_opens_for_another_user() {
    // The control for the tests above: with the permissions opened up, the
    // unprivileged child opens the file and takes a lock.
    let dir = shared_dir();
    let path = dir.path().join("locks.redb");
    drop(open(&path).unwrap());
    set_mode(&path, 0o666);
    let sidecar = dir.path().join("locks.redb.hostlock");
    for entry in walk(&sidecar) {
        let mode = if entry.is_dir() { 0o777 } else { 0o666 };
        set_mode(&entry, mode);
    }
    assert_eq!(open_unprivileged(&path), None);
    assert!(open(&path).unwrap().exists("k").unwrap());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = vec![dir.to_owned()];
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_file_deleted_while_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let locker = open(&path).unwrap();
    assert!(locker.acquire("a", LockValue::new("1".into())).unwrap());
    fs::remove_file(&path).unwrap();

    let err = locker.acquire("b", LockValue::new("2".into())).unwrap_err();
    assert!(
        matches!(&err, Error::Replaced { path: p } if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains("open it again"), "{err}");
    let err = locker.exists("a").unwrap_err();
    assert!(matches!(err, Error::Replaced { .. }), "{err:?}");

    // Whoever opens the path now gets a new, empty file; the old handle
    // grants nothing that it would not see.
    let fresh = open(&path).unwrap();
    assert!(!fresh.exists("a").unwrap());
    assert!(fresh.acquire("b", LockValue::new("3".into())).unwrap());
    assert!(matches!(
        locker.acquire("b", LockValue::new("2".into())),
        Err(Error::Replaced { .. })
    ));
}

#[test]
fn a_file_replaced_while_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let other = dir.path().join("other.redb");
    let locker = open(&path).unwrap();
    assert!(locker.acquire("a", LockValue::new("1".into())).unwrap());
    let replacement = open(&other).unwrap();
    assert!(
        replacement
            .acquire("z", LockValue::new("9".into()))
            .unwrap()
    );
    drop(replacement);
    fs::rename(&other, &path).unwrap();

    for result in [
        locker.release("a").map(drop),
        locker.acquire("c", LockValue::new("3".into())).map(drop),
        locker.get("z").map(drop),
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Replaced { .. }), "{err:?}");
    }
    drop(locker);
    let reopened = open(&path).unwrap();
    assert!(reopened.exists("z").unwrap());
    assert!(!reopened.exists("a").unwrap());
}
