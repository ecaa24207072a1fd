//! Input the locker must refuse clearly, never with a panic and never by
//! changing a lock: files that are not SQLite databases, tables of another
//! format version, values of another type, absurd arguments, and files the
//! process may not write.
//!
//! Root may write anywhere, so when the tests run as root the permission
//! checks run in a child process started as the unprivileged user `nobody`.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use hostlock::{
    Error, InspectableLocker, LeaseLocker, LockValue, Locker, MAX_KEY_LEN, MAX_TOKEN_LEN,
    MAX_VALUE_LEN, RenewableLocker, latest_expiry,
};
use hostlock_sqlite::SqliteLocker;

use common::{DB, child, role, setting};

/// The user and group id of `nobody` on Linux.
const NOBODY: u32 = 65534;

fn open<T>(path: &Path) -> hostlock::Result<SqliteLocker<T>> {
    SqliteLocker::open(path)
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        (
            "text",
            "these are not the tables you are looking for\n".repeat(100),
        ),
        ("short", "hello".to_owned()),
    ] {
        let path = dir.path().join(name);
        fs::write(&path, &bytes).unwrap();
        match open::<String>(&path) {
            Err(Error::NotLockFile { path: p, found }) => {
                assert_eq!(p, path);
                assert!(found.contains("not a SQLite database"), "{found}");
            }
            other => panic!("{name}: expected NotLockFile, got {other:?}"),
        }
        assert_eq!(fs::read(&path).unwrap(), bytes.as_bytes(), "left as it was");
    }
}

#[test]
fn a_directory_or_a_missing_parent_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        open::<String>(dir.path()),
        Err(Error::IsDirectory { path }) if path == dir.path()
    ));
    let missing = dir.path().join("no-such-dir").join("locks.db");
    assert!(matches!(
        open::<String>(&missing),
        Err(Error::NotFound { path }) if path == missing
    ));
}

#[test]
fn tables_of_an_unknown_format_version_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.db");
    drop(open::<String>(&path).unwrap());
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute(
        "UPDATE hostlock_meta SET value = 99 WHERE name = 'format'",
        [],
    )
    .unwrap();
    drop(db);
    let err = open::<String>(&path).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::UnsupportedVersion { path: p, found: 99, supported: 1 } if *p == path
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade"), "{err}");
}

#[test]
fn an_application_database_keeps_its_own_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch("CREATE TABLE jobs (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO jobs (name) VALUES ('reindex');")
        .unwrap();
    let locker: SqliteLocker<String> = open(&path).unwrap();
    assert!(locker.acquire("k", LockValue::new("v".to_owned())).unwrap());
    let name: String = db
        .query_row("SELECT name FROM jobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(name, "reindex");
}

#[test]
fn a_value_of_another_type_is_an_error_naming_key_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.db");
    let strings: SqliteLocker<String> = open(&path).unwrap();
    assert!(
        strings
            .acquire("text", LockValue::new("words".to_owned()))
            .unwrap()
    );
    let numbers: SqliteLocker<u64> = open(&path).unwrap();
    assert!(numbers.acquire("number", LockValue::new(7)).unwrap());
    let is_value_type = |err: &Error| {
        matches!(
            err,
            Error::ValueType { path: p, key, expected, .. }
                if *p == path && key == "text" && *expected == "u64"
        )
    };
    assert!(is_value_type(&numbers.get("text").unwrap_err()));
    assert!(is_value_type(&numbers.info("text").unwrap_err()));
    // Listed in its place; the entry that decodes is shown beside it.
    let listed = numbers.list(true).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].as_ref().unwrap().key, "number");
    assert!(is_value_type(listed[1].as_ref().unwrap_err()));
    // The calls that need no value still work.
    assert!(numbers.exists("text").unwrap());
    assert!(numbers.release("text").unwrap());
}

#[test]
fn absurd_arguments_are_invalid_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let locker: SqliteLocker<String> = open(&dir.path().join("locks.db")).unwrap();
    let invalid = |r: hostlock::Result<bool>| matches!(r, Err(Error::InvalidArgument { .. }));
    let v = || LockValue::new("v".to_owned());
    let long_key = "k".repeat(MAX_KEY_LEN + 1);
    assert!(invalid(locker.acquire("", v())));
    assert!(invalid(locker.acquire(&long_key, v())));
    assert!(invalid(locker.exists(&long_key)));
    assert!(invalid(locker.acquire("k", v().with_token(""))));
    assert!(invalid(
        locker.acquire("k", v().with_token("t".repeat(MAX_TOKEN_LEN + 1)))
    ));
    assert!(invalid(locker.acquire(
        "k",
        v().expiring_at(UNIX_EPOCH - Duration::from_secs(1))
    )));
    assert!(invalid(locker.acquire(
        "k",
        v().expiring_at(latest_expiry() + Duration::from_secs(1))
    )));
    assert!(invalid(locker.touch("k", "", latest_expiry())));
    assert!(invalid(
        locker.acquire("k", LockValue::new("x".repeat(MAX_VALUE_LEN)))
    ));
    assert!(matches!(
        locker.try_lock("k", "v".to_owned(), Some(Duration::ZERO)),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(locker.list(true).unwrap().is_empty(), "nothing stored");
    // The longest key and token, and a value just within the limit, are fine.
    let key = "k".repeat(MAX_KEY_LEN);
    let big = "x".repeat(MAX_VALUE_LEN - 2); // two quotes make MAX_VALUE_LEN
    let token = "t".repeat(MAX_TOKEN_LEN);
    assert!(
        locker
            .acquire(&key, LockValue::new(big.clone()).with_token(token.clone()))
            .unwrap()
    );
    assert_eq!(locker.get(&key).unwrap().unwrap().value, big);
    assert!(locker.release_if_owner(&key, &token).unwrap());
    let zero = SqliteLocker::<String>::builder(dir.path().join("other.db"))
        .session_timeout(Duration::ZERO)
        .open();
    assert!(matches!(zero, Err(Error::InvalidArgument { .. })));
}

#[test]
fn a_new_database_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.db");
    let locker: SqliteLocker<String> = open(&path).unwrap();
    assert!(locker.acquire("k", LockValue::new("v".to_owned())).unwrap());
    for file in [path.clone(), dir.path().join("locks.db-wal")] {
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
}

// ---- files this process may not use ----

fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The child: opens the database it is given, takes a lock, and prints the
/// outcome.
#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    assert_eq!(role, "open", "unknown role");
    println!();
    match open::<String>(&PathBuf::from(setting(DB)))
        .and_then(|l| l.acquire("k", LockValue::new("v".to_owned())))
    {
        Ok(held) => println!("opened: acquire gave {held}"),
        Err(e) => println!("error: {e:?}\nmessage: {e}"),
    }
}

/// What opening `path` and taking a lock gives an unprivileged process: the
/// error's debug form and message, or `None` if it worked.
fn as_unprivileged(path: &Path) -> Option<(String, String)> {
    if !is_root() {
        return open::<String>(path)
            .and_then(|l| l.acquire("k", LockValue::new("v".to_owned())))
            .err()
            .map(|e| (format!("{e:?}"), e.to_string()));
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

fn give_to_nobody(path: &Path) {
    if is_root() {
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    }
}

#[test]
fn a_database_of_another_user_is_refused() {
    let dir = shared_dir();
    let path = dir.path().join("locks.db");
    drop(open::<String>(&path).unwrap());
    // Readable by everyone, writable by its owner only.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let (debug, message) = as_unprivileged(&path).expect("the open must fail");
    assert!(debug.starts_with("PermissionDenied"), "{debug}");
    assert!(message.contains(&*path.to_string_lossy()), "{message}");
}

#[test]
fn a_read_only_database_is_refused_even_to_its_owner() {
    let dir = shared_dir();
    give_to_nobody(dir.path());
    let path = dir.path().join("locks.db");
    drop(open::<String>(&path).unwrap());
    give_to_nobody(&path);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
    let (debug, message) = as_unprivileged(&path).expect("the open must fail");
    assert!(debug.starts_with("PermissionDenied"), "{debug}");
    assert!(message.contains(&*path.to_string_lossy()), "{message}");
}

#[test]
fn a_database_in_a_directory_it_may_not_write_is_refused_clearly() {
    // The file is the user's, but SQLite must create the -wal and -shm
    // files beside it.
    let dir = shared_dir();
    let path = dir.path().join("locks.db");
    drop(open::<String>(&path).unwrap());
    for leftover in ["locks.db-wal", "locks.db-shm"] {
        let _ = fs::remove_file(dir.path().join(leftover));
    }
    give_to_nobody(&path);
    let (debug, message) = as_unprivileged(&path).expect("the open must fail");
    assert!(debug.starts_with("PermissionDenied"), "{debug}");
    assert!(
        message.contains(&*dir.path().to_string_lossy()),
        "{message}"
    );
}

#[test]
fn a_database_shared_with_its_user_opens_for_that_user() {
    // The control for the tests above.
    let dir = shared_dir();
    give_to_nobody(dir.path());
    let path = dir.path().join("locks.db");
    drop(open::<String>(&path).unwrap());
    for file in ["locks.db", "locks.db-wal", "locks.db-shm"] {
        let file = dir.path().join(file);
        if file.exists() {
            give_to_nobody(&file);
        }
    }
    assert_eq!(as_unprivileged(&path), None);
    let locker: SqliteLocker<String> = open(&path).unwrap();
    assert!(locker.exists("k").unwrap(), "the other user's lock is seen");
}

#[test]
fn a_database_kept_busy_is_an_error_not_a_held_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.db");
    let locker: SqliteLocker<String> = SqliteLocker::builder(&path)
        .busy_timeout(Duration::from_millis(50))
        .open()
        .unwrap();
    // Another connection holds the write lock, as a process stopped in the
    // middle of a write would.
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let txn = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let err = locker
        .acquire("k", LockValue::new("v".to_owned()))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Busy { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert!(err.is_transient());
    // Reads go on meanwhile (WAL), and the lock is taken once it is free.
    assert!(!locker.exists("k").unwrap());
    drop(txn);
    assert!(locker.acquire("k", LockValue::new("v".to_owned())).unwrap());
}
