//! Lock files the process may not use (a read-only directory, a file it has
//! no permission for), lock files another user could replace (the trust
//! model in docs/design.md), and lock files deleted or replaced while open: each a specific error naming the path, never a panic, never a lock
//! granted where other processes cannot see it.
//!
//! Root may write anywhere, so when the tests run as root the permission
//! checks run in a child process started as the unprivileged user `nobody`.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use hostlock::{Error, FileLocker, InspectableLocker, LockValue, Locker};

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
    let path = PathBuf::from(setting(FILE));
    // The test harness has begun a line ("test child_entry ... ").
    println!();
    if role == "look" {
        let locker = FileLocker::<String>::builder(&path)
            .read_only(true)
            .open()
            .unwrap();
        let keys: Vec<String> = locker
            .list(true)
            .unwrap()
            .into_iter()
            .map(|i| i.unwrap().key)
            .collect();
        println!("listed: {}", keys.join(","));
        let err = locker.acquire("x", LockValue::new("v".into())).unwrap_err();
        println!("acquire: {err}");
        return;
    }
    assert_eq!(role, "open", "unknown role");
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
fn a_file_shared_with_its_user_opens_for_that_user() {
    // The control for the tests above: a file that belongs to the
    // unprivileged user opens for it, and it takes a lock.
    let dir = shared_dir();
    let path = dir.path().join("locks.redb");
    drop(open(&path).unwrap());
    if is_root() {
        std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    assert_eq!(open_unprivileged(&path), None);
    assert!(open(&path).unwrap().exists("k").unwrap());
}

#[test]
fn a_new_file_is_private_whatever_the_umask_and_group_sharing_is_a_setting() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private.redb");
    drop(open(&private).unwrap());
    assert_eq!(fs::metadata(&private).unwrap().mode() & 0o7777, 0o600);
    let shared = dir.path().join("shared.redb");
    drop(
        FileLocker::<String>::builder(&shared)
            .mode(0o660)
            .background_cleanup(false)
            .open()
            .unwrap(),
    );
    assert_eq!(fs::metadata(&shared).unwrap().mode() & 0o7777, 0o660);
    // An existing file keeps its mode.
    drop(open(&shared).unwrap());
    assert_eq!(fs::metadata(&shared).unwrap().mode() & 0o7777, 0o660);
    for bad in [0o666, 0o400, 0o700, 0o4600] {
        let err = FileLocker::<String>::builder(dir.path().join("bad.redb"))
            .mode(bad)
            .open()
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { .. }),
            "{bad:o}: {err:?}"
        );
    }
    assert!(!dir.path().join("bad.redb").exists());
}

fn assert_untrusted(path: &Path, why: &str) {
    let err = open(path).unwrap_err();
    assert!(matches!(err, Error::Untrusted { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(why), "{message}");
    assert!(message.contains("trust_path"), "{message}");
    let trusting = FileLocker::<String>::builder(path)
        .trust_path(true)
        .background_cleanup(false)
        .open();
    assert!(trusting.is_ok(), "trust_path opens it: {trusting:?}");
}

#[test]
fn a_world_writable_lock_file_is_refused_unless_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    drop(open(&path).unwrap());
    set_mode(&path, 0o666);
    assert_untrusted(&path, "anyone may write it");
}

#[test]
fn a_lock_file_in_a_world_writable_directory_without_the_sticky_bit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    set_mode(dir.path(), 0o777);
    let path = dir.path().join("locks.redb");
    assert_untrusted(&path, "not sticky");
    // A sticky one (like /tmp) is fine for the user's own file.
    set_mode(dir.path(), 0o1777);
    assert!(open(&path).is_ok());
}

/// A directory like /tmp, with a lock file (or symlink) planted in it by
/// another user. Needs root to make a file of another user.
#[test]
fn another_users_file_or_symlink_in_a_sticky_shared_directory_is_refused() {
    if !is_root() {
        eprintln!("another user's file needs root to make; run the tests as root to check it");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    set_mode(dir.path(), 0o1777);
    let planted = dir.path().join("locks.redb");
    drop(open(&planted).unwrap());
    std::os::unix::fs::chown(&planted, Some(NOBODY), Some(NOBODY)).unwrap();
    assert_untrusted(&planted, "belongs to user 65534");

    // A symlink of theirs pointing at a file of this user's elsewhere.
    let target_dir = tempfile::tempdir().unwrap();
    let target = target_dir.path().join("mine.redb");
    let link = dir.path().join("link.redb");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(NOBODY), Some(NOBODY)).unwrap();
    let err = open(&link).unwrap_err();
    assert!(matches!(err, Error::Untrusted { .. }), "{err:?}");
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(!target.exists(), "nothing was created where it points");
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

#[test]
fn read_access_is_enough_to_look() {
    let dir = shared_dir();
    let path = dir.path().join("locks.redb");
    let writer = FileLocker::<String>::builder(&path)
        .mode(0o644)
        .background_cleanup(false)
        .open()
        .unwrap();
    assert!(writer.acquire("a", LockValue::new("1".into())).unwrap());
    let before = fs::read(&path).unwrap();

    // Another user who may only read the file.
    let out = if is_root() {
        child("look", &path)
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .unwrap()
    } else {
        child("look", &path).output().unwrap()
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("listed: a"), "{stdout}");
    assert!(stdout.contains("opened read-only"), "{stdout}");

    // In this process: it sees the writers' later commits, and writes nothing.
    let reader = FileLocker::<String>::builder(&path)
        .read_only(true)
        .open()
        .unwrap();
    assert!(writer.acquire("b", LockValue::new("2".into())).unwrap());
    assert!(reader.exists("b").unwrap());
    assert_eq!(reader.get("a").unwrap().unwrap().value, "1");
    assert_eq!(reader.info("b").unwrap().unwrap().value, "2");
    let report = reader.check().unwrap();
    assert!(!report.engine_checked && report.problems.is_empty());
    assert_eq!(report.locks, 2);
    for err in [
        reader.acquire("c", LockValue::new("3".into())).unwrap_err(),
        reader.release("a").unwrap_err(),
        reader.compact().unwrap_err(),
    ] {
        assert!(matches!(err, Error::OpenedReadOnly { .. }), "{err:?}");
    }
    drop(writer);
    let after_writer = fs::read(&path).unwrap();
    assert_ne!(before, after_writer);
    drop(reader);
    assert_eq!(
        fs::read(&path).unwrap(),
        after_writer,
        "the reader wrote nothing"
    );
    let missing = FileLocker::<String>::builder(dir.path().join("missing.redb"))
        .read_only(true)
        .open()
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing:?}");
    assert!(!dir.path().join("missing.redb").exists());
}
