//! Files and paths that are not usable lock files each give a specific error
//! that names the path, never a panic.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use hostlock::{Error, FileLocker, LockValue, Locker, RenewableLocker};

fn open(path: &Path) -> hostlock::Result<FileLocker<String>> {
    FileLocker::builder(path).background_cleanup(false).open()
}

fn open_err(path: &Path) -> Error {
    let err = open(path).expect_err("the open must fail");
    let message = err.to_string();
    assert!(
        message.contains(&*path.to_string_lossy())
            || path
                .parent()
                .is_some_and(|p| message.contains(&*p.to_string_lossy())),
        "the message {message:?} must name the path"
    );
    err
}

/// A real lock file with a few locks in it, closed.
fn real_lock_file(dir: &Path) -> PathBuf {
    let path = dir.join("real.redb");
    let locker = open(&path).unwrap();
    for i in 0..50 {
        let lock = LockValue::new(format!("value {i}")).with_token("t");
        assert!(locker.acquire(&format!("key-{i}"), lock).unwrap());
    }
    path
}

#[test]
fn random_bytes_are_not_a_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("random.redb");
    let bytes: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(&path, bytes).unwrap();
    let err = open_err(&path);
    assert!(matches!(err, Error::NotLockFile { .. }), "{err:?}");
}

#[test]
fn an_sqlite_database_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.resize(4096, 0);
    fs::write(&path, bytes).unwrap();
    let err = open_err(&path);
    assert!(
        matches!(&err, Error::NotLockFile { found, .. } if found.contains("SQLite")),
        "{err:?}"
    );
}

#[test]
fn another_programs_redb_database_is_not_a_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let table: redb::TableDefinition<'_, u64, u64> = redb::TableDefinition::new("orders");
            tx.open_table(table).unwrap().insert(1, 2).unwrap();
        }
        tx.commit().unwrap();
    }
    let err = open_err(&path);
    assert!(
        matches!(&err, Error::NotLockFile { found, .. } if found.contains("orders")),
        "{err:?}"
    );
}

/// Records `format` as the file's format version.
fn set_format(path: &Path, format: u64) {
    let db = redb::Database::create(path).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let meta: redb::TableDefinition<'_, &str, u64> =
            redb::TableDefinition::new("hostlock_meta");
        tx.open_table(meta)
            .unwrap()
            .insert("format", format)
            .unwrap();
    }
    tx.commit().unwrap();
}

#[test]
fn a_file_from_a_future_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = real_lock_file(dir.path());
    set_format(&path, 99);
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion {
                found: 99,
                supported: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_file_of_the_sidecar_format_says_how_to_replace_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = real_lock_file(dir.path());
    set_format(&path, 1);
    let err = open_err(&path);
    assert!(
        matches!(err, Error::UnsupportedVersion { found: 1, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("older hostlock"), "{message}");
    assert!(message.contains("remove the file"), "{message}");
}

#[test]
fn truncated_files_are_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = real_lock_file(dir.path());
    let bytes = fs::read(&path).unwrap();
    for keep in [bytes.len() / 2, 4096] {
        let cut = dir.path().join(format!("cut-{keep}.redb"));
        fs::write(&cut, &bytes[..keep]).unwrap();
        let err = open_err(&cut);
        assert!(
            matches!(err, Error::Corrupted { .. }),
            "kept {keep}: {err:?}"
        );
    }
}

/// What an interrupted creation can leave (a cut-off header, zeros, an empty
/// file) holds no lock, and is laid out anew instead of refused for good.
#[test]
fn leftovers_of_an_interrupted_creation_are_laid_out_anew() {
    let dir = tempfile::tempdir().unwrap();
    let path = real_lock_file(dir.path());
    let bytes = fs::read(&path).unwrap();
    let leftovers: [(&str, Vec<u8>); 4] = [
        ("cut-5", bytes[..5].to_vec()),
        ("cut-100", bytes[..100].to_vec()),
        ("zeros", vec![0; 72 << 10]),
        ("empty", Vec::new()),
    ];
    for (name, content) in leftovers {
        let leftover = dir.path().join(format!("{name}.redb"));
        fs::write(&leftover, content).unwrap();
        fs::set_permissions(&leftover, fs::Permissions::from_mode(0o640)).unwrap();
        let locker = open(&leftover).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(locker.acquire("k", LockValue::new("v".into())).unwrap());
        assert!(locker.check().unwrap().problems.is_empty());
        let mode = fs::metadata(&leftover).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640, "{name}: laid out in place, mode kept");
    }
}

/// Nothing is created beside a file that is refused, and nothing hangs.
#[test]
fn refused_files_are_left_alone_and_nothing_is_created_beside_them() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("app.sqlite");
    fs::write(&sqlite, b"SQLite format 3\0 and then some pages").unwrap();
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let socket = dir.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let before = listing(dir.path());

    let err = open_err(&sqlite);
    assert!(err.to_string().contains("an SQLite database"), "{err}");
    for (path, kind) in [(&fifo, "FIFO"), (&socket, "socket")] {
        let err = open_err(path);
        assert!(matches!(err, Error::NotLockFile { .. }), "{err:?}");
        assert!(err.to_string().contains(kind), "{err}");
    }
    let err = open(Path::new("/dev/null")).unwrap_err();
    assert!(err.to_string().contains("character device"), "{err}");
    assert!(!Path::new("/dev/null.hostlock").exists());
    assert_eq!(listing(dir.path()), before, "nothing was created");
    assert_eq!(
        fs::read(&sqlite).unwrap().len(),
        36,
        "the file is untouched"
    );
}

fn listing(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    names
}

#[test]
fn a_file_written_with_another_value_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = real_lock_file(dir.path());
    let locker: FileLocker<u64> = FileLocker::builder(&path)
        .background_cleanup(false)
        .open()
        .unwrap();
    let err = locker.get("key-1").unwrap_err();
    assert!(
        matches!(&err, Error::ValueType { key, expected: "u64", .. } if key == "key-1"),
        "{err:?}"
    );
    assert!(err.to_string().contains("another value type"), "{err}");
    // Everything that does not decode the value still works.
    assert!(locker.exists("key-1").unwrap());
    assert!(!locker.acquire("key-1", LockValue::new(7)).unwrap());
    assert!(locker.release_if_owner("key-1", "t").unwrap());
}

#[test]
fn a_directory_is_not_a_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = open_err(dir.path());
    assert!(matches!(err, Error::IsDirectory { .. }), "{err:?}");
}

#[test]
fn a_missing_parent_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let err = open_err(&missing.join("locks.redb"));
    assert!(
        matches!(&err, Error::NotFound { path } if *path == missing),
        "{err:?}"
    );
}

#[test]
fn a_read_only_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = real_lock_file(dir.path());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
    let err = open_err(&path);
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    assert!(err.to_string().contains("make it writable"));
}

#[test]
fn absurd_settings_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let zero = std::time::Duration::ZERO;
    for result in [
        FileLocker::<String>::builder(&path)
            .busy_timeout(zero)
            .open(),
        FileLocker::<String>::builder(&path)
            .cleanup_interval(zero)
            .open(),
    ] {
        assert!(
            matches!(result, Err(Error::InvalidArgument { .. })),
            "{result:?}"
        );
    }
    assert!(!path.exists(), "nothing is created for an invalid setting");
}

#[test]
fn damaged_pages_are_found_when_opening() {
    let dir = tempfile::tempdir().unwrap();
    let path = real_lock_file(dir.path());
    let bytes = fs::read(&path).unwrap();
    for (n, stride) in [97usize, 509, 1021].into_iter().enumerate() {
        let mut damaged = bytes.clone();
        for i in (4096..damaged.len()).step_by(stride) {
            damaged[i] ^= 0x5a;
        }
        let copy = dir.path().join(format!("damaged-{n}.redb"));
        fs::write(&copy, &damaged).unwrap();
        // The first handle to open a file checks every page of it.
        let err = open_err(&copy);
        assert!(
            matches!(err, Error::Corrupted { .. }),
            "stride {stride}: {err:?}"
        );
    }
}

/// A value over `MAX_VALUE_LEN` once encoded is refused before anything is
/// written; one at the limit is stored.
#[test]
fn values_over_the_size_limit_are_refused() {
    use hostlock::{LeaseLocker, MAX_VALUE_LEN};
    let dir = tempfile::tempdir().unwrap();
    let locker = open(&dir.path().join("v.redb")).unwrap();
    // CBOR puts a 5-byte header before a text string of this length.
    let fits = "x".repeat(MAX_VALUE_LEN - 5);
    let over = "x".repeat(MAX_VALUE_LEN - 4);
    assert!(locker.acquire("fits", LockValue::new(fits)).unwrap());
    let err = locker
        .acquire("over", LockValue::new(over.clone()))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                argument: "value",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("1048576 bytes"), "{err}");
    let err = locker.try_lock("over", over, None).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert!(!locker.exists("over").unwrap());
}

/// Writes raw bytes as the record of `key`, as damage (or another version)
/// would leave them, with an expiry index entry naming it.
fn plant_record(path: &Path, key: &str, bytes: &[u8]) {
    let db = redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .create(path)
        .unwrap();
    let tx = db.begin_write().unwrap();
    {
        let locks: redb::TableDefinition<'_, &str, &[u8]> =
            redb::TableDefinition::new("hostlock_locks");
        tx.open_table(locks).unwrap().insert(key, bytes).unwrap();
        let expiry: redb::TableDefinition<'_, (u64, &str), ()> =
            redb::TableDefinition::new("hostlock_expiry");
        tx.open_table(expiry).unwrap().insert((1, key), ()).unwrap();
    }
    tx.commit().unwrap();
}

/// A record that does not decode, or a value of another type, breaks
/// neither the admin calls nor `list`: they remove it, or list it as its
/// error among the others.
#[test]
fn damaged_and_foreign_records_leave_the_admin_path_working() {
    use hostlock::{CleanableLocker, InspectableLocker};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    {
        let other: FileLocker<u64> = FileLocker::builder(&path)
            .background_cleanup(false)
            .open()
            .unwrap();
        assert!(other.acquire("number", LockValue::new(7)).unwrap());
    }
    let locker = open(&path).unwrap();
    assert!(
        locker
            .acquire("text", LockValue::new("fine".into()))
            .unwrap()
    );
    drop(locker);
    for key in ["damaged-a", "damaged-b", "damaged-c"] {
        plant_record(&path, key, b"\x07not a record");
    }
    let locker = open(&path).unwrap();

    let listed = locker.list(true).unwrap();
    assert_eq!(listed.len(), 5, "{listed:?}");
    let shown: Vec<_> = listed.iter().flatten().map(|i| i.key.as_str()).collect();
    assert_eq!(shown, ["text"]);
    let errors: Vec<_> = listed.iter().filter_map(|e| e.as_ref().err()).collect();
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, Error::ValueType { key, .. } if key == "number"))
    );
    assert_eq!(
        errors
            .iter()
            .filter(|e| matches!(e, Error::Corrupted { .. }))
            .count(),
        3
    );

    assert!(!locker.release("damaged-a").unwrap());
    locker.force_release("damaged-b").unwrap();
    // The third is found through its expiry index entry.
    assert_eq!(locker.cleanup().unwrap(), 1);
    let listed = locker.list(true).unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let report = locker.check().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(
        locker
            .acquire("damaged-a", LockValue::new("new".into()))
            .unwrap()
    );
}

/// Absurd timeouts and waits are errors that name the argument, or waits
/// without end, never a panic of a time that overflows.
#[test]
fn absurd_durations_are_errors_not_panics() {
    use hostlock::{Error, FileLocker, LeaseLocker};
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    for busy in [Duration::ZERO, Duration::from_secs(86_401), Duration::MAX] {
        let opened = FileLocker::<u32>::builder(&path).busy_timeout(busy).open();
        assert!(
            matches!(
                &opened,
                Err(Error::InvalidArgument {
                    argument: "busy timeout",
                    ..
                })
            ),
            "{busy:?}: {opened:?}"
        );
    }
    assert!(!path.exists(), "nothing created for a refused setting");
    let locker: FileLocker<u32> = FileLocker::open(&path).unwrap();
    // A TTL and a wait too long to count to: the lease never expires (as
    // far as a lock file counts), the wait has no end.
    let guard = locker
        .try_lock_for("k", 2, Some(Duration::MAX), Duration::MAX)
        .unwrap();
    assert!(guard.is_some());
}
