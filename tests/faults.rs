//! Storage that fails: a full disk or a failing device under a `FileLocker`.
//!
//! Failures are injected through `hostlock::Faults` at every write and sync
//! of an operation in turn, and a real full disk is made with a file size
//! limit (`RLIMIT_FSIZE`) in a child process. Whatever fails, the call says
//! so with an error, every lock granted before is still there (in this handle,
//! in another, and after reopening), no lock whose grant failed appears, and
//! the file passes its integrity check.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use hostlock::{
    CleanableLocker, Error, Fault, Faults, FileLocker, InspectableLocker, LeaseLocker, LockValue,
    Locker, ManualClock, RenewableLocker,
};

use common::{FILE, child, role, setting};

const SEC: Duration = Duration::from_secs(1);

/// A clock at the same instant in every test, so runs can be compared.
fn start_clock() -> ManualClock {
    ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
}

fn open_with(path: &Path, faults: &Faults, clock: &ManualClock) -> FileLocker<u32> {
    FileLocker::builder(path)
        .background_cleanup(false)
        .clock(clock.clone())
        .faults(faults.clone())
        .open()
        .expect("open the lock file")
}

fn reopen(path: &Path, clock: &ManualClock) -> FileLocker<u32> {
    FileLocker::builder(path)
        .background_cleanup(false)
        .clock(clock.clone())
        .open()
        .expect("reopen the lock file")
}

fn is_storage_failure(err: &Error) -> bool {
    matches!(err, Error::NoSpace { .. } | Error::Io { .. })
}

/// Asserts the file holds exactly `held` among `keys`, through `locker`,
/// and that it passes the integrity check.
fn assert_holds(locker: &FileLocker<u32>, keys: &[&str], held: &[&str], context: &str) {
    for key in keys {
        let exists = locker
            .exists(key)
            .unwrap_or_else(|e| panic!("{context}: exists({key}): {e}"));
        assert_eq!(exists, held.contains(key), "{context}: is {key} held?");
    }
    let report = locker
        .check()
        .unwrap_or_else(|e| panic!("{context}: check: {e}"));
    assert!(
        report.problems.is_empty(),
        "{context}: {:?}",
        report.problems
    );
}

/// The failure points of one operation: how many writes and syncs it makes.
fn operations_of(
    setup: impl FnOnce(&FileLocker<u32>),
    op: impl FnOnce(&FileLocker<u32>, &ManualClock),
) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let clock = start_clock();
    let locker = open_with(&dir.path().join("locks.redb"), &faults, &clock);
    setup(&locker);
    let (writes, syncs) = (faults.writes(), faults.syncs());
    op(&locker, &clock);
    (faults.writes() - writes, faults.syncs() - syncs)
}

/// Sets up one failure on a board.
type Arm = Box<dyn Fn(&Faults)>;

/// Every way to arm a fault at each write and sync of an operation that makes
/// `writes` writes and `syncs` syncs: (description, arm).
fn fault_points(writes: u64, syncs: u64) -> Vec<(String, Arm)> {
    let mut points: Vec<(String, Arm)> = Vec::new();
    for fault in [Fault::DiskFull, Fault::Io] {
        for n in 0..writes {
            points.push((
                format!("write {n} fails with {fault:?}"),
                Box::new(move |f: &Faults| f.fail_writes_after(n, fault)),
            ));
        }
        for n in 0..syncs {
            points.push((
                format!("sync {n} fails with {fault:?}"),
                Box::new(move |f: &Faults| f.fail_syncs_after(n, fault)),
            ));
        }
    }
    points
}

#[test]
fn a_failing_acquire_is_an_error_and_grants_nothing() {
    let setup = |l: &FileLocker<u32>| assert!(l.acquire("kept", LockValue::new(1)).unwrap());
    let (writes, syncs) = operations_of(setup, |l, _| {
        assert!(l.acquire("new", LockValue::new(2)).unwrap())
    });
    assert!(writes > 0 && syncs > 0, "an acquire writes and syncs");
    for (point, arm) in fault_points(writes, syncs) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks.redb");
        let faults = Faults::new();
        let clock = start_clock();
        let locker = open_with(&path, &faults, &clock);
        let other = reopen(&path, &clock);
        setup(&locker);

        arm(&faults);
        let err = locker.acquire("new", LockValue::new(2)).expect_err(&point);
        assert!(is_storage_failure(&err), "{point}: {err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        // Another handle is not held up by this one's failure.
        assert!(
            other.acquire("other", LockValue::new(3)).unwrap(),
            "{point}"
        );
        faults.heal();

        let keys = ["kept", "new", "other"];
        assert_holds(&locker, &keys, &["kept", "other"], &point);
        assert_holds(&other, &keys, &["kept", "other"], &point);
        assert!(
            locker.acquire("after", LockValue::new(4)).unwrap(),
            "{point}"
        );
        drop((locker, other));
        let again = reopen(&path, &clock);
        assert_holds(
            &again,
            &keys,
            &["kept", "other"],
            &format!("{point}, reopened"),
        );
        assert!(again.exists("after").unwrap(), "{point}");
    }
}

/// A release, renewal or cleanup whose commit fails may have reached the
/// file all the same (the storage failed after the commit was written): the
/// call is an error, and the lock is either as before or as the call would
/// have left it, the same for every handle and after reopening.
#[test]
fn a_failing_release_or_renewal_is_an_error_and_all_or_nothing() {
    type Op = fn(&FileLocker<u32>) -> hostlock::Result<()>;
    let ops: [(&str, Op); 5] = [
        ("release", |l| l.release("kept").map(drop)),
        ("force_release", |l| l.force_release("kept")),
        ("release_if_owner", |l| {
            l.release_if_owner("kept", "me").map(drop)
        }),
        ("touch", |l| {
            let later = l.now() + 100 * SEC;
            l.touch("kept", "me", later).map(drop)
        }),
        ("cleanup", |l| l.cleanup().map(drop)),
    ];
    let setup = |l: &FileLocker<u32>| {
        let lock = LockValue::new(1)
            .expiring_at(l.now() + 10 * SEC)
            .with_token("me");
        assert!(l.acquire("kept", lock).unwrap());
        let stale = LockValue::new(2).expiring_at(l.now() + SEC);
        assert!(l.acquire("stale", stale).unwrap());
    };
    // What "kept" looks like: held, and until when.
    let state = |l: &FileLocker<u32>| l.get("kept").unwrap().map(|lock| lock.expires_at);
    let stored = |l: &FileLocker<u32>| l.check().unwrap().locks;
    for (name, op) in ops {
        let (writes, syncs) = operations_of(setup, |l, clock| {
            clock.advance(2 * SEC);
            op(l).unwrap();
        });
        assert!(writes > 0 && syncs > 0, "{name} writes and syncs");
        let (mut undone, mut done) = (0, 0);
        for (point, arm) in fault_points(writes, syncs) {
            let point = format!("{name}: {point}");
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("locks.redb");
            let faults = Faults::new();
            let clock = start_clock();
            let locker = open_with(&path, &faults, &clock);
            setup(&locker);
            clock.advance(2 * SEC);
            let before = (state(&locker), stored(&locker));
            let expected = {
                let scratch = tempfile::tempdir().unwrap();
                let model_clock = start_clock();
                let model = open_with(&scratch.path().join("m.redb"), &Faults::new(), &model_clock);
                setup(&model);
                model_clock.advance(2 * SEC);
                op(&model).unwrap();
                (state(&model), stored(&model))
            };

            arm(&faults);
            let err = op(&locker).expect_err(&point);
            assert!(is_storage_failure(&err), "{point}: {err:?}");
            faults.heal();

            let after = (state(&locker), stored(&locker));
            if after == before {
                undone += 1;
            } else {
                assert_eq!(after, expected, "{point}: neither before nor after");
                done += 1;
            }
            assert_holds(&locker, &["stale"], &[], &point);
            drop(locker);
            let again = reopen(&path, &clock);
            let reopened = (state(&again), stored(&again));
            assert_eq!(reopened, after, "{point}: reopened");
        }
        // Most failures stop the commit; at least one lands after all.
        assert!(undone > done, "{name}: {undone} undone, {done} done");
    }
}

#[test]
fn a_guard_whose_grant_fails_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let faults = Faults::new();
    let clock = start_clock();
    let locker = open_with(&path, &faults, &clock);
    faults.fail_syncs_after(0, Fault::Io);
    let err = locker
        .try_lock("job", 1, Some(SEC))
        .expect_err("the grant fails");
    assert!(is_storage_failure(&err), "{err:?}");
    faults.heal();
    assert!(!locker.exists("job").unwrap());
    let guard = locker.try_lock("job", 1, Some(SEC)).unwrap().expect("free");
    assert!(locker.exists("job").unwrap());
    drop(guard);
    assert!(!locker.exists("job").unwrap());
}

#[test]
fn reads_go_on_while_writes_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let faults = Faults::new();
    let clock = start_clock();
    let locker = open_with(&path, &faults, &clock);
    assert!(locker.acquire("kept", LockValue::new(7)).unwrap());
    faults.fail_writes_after(0, Fault::DiskFull);
    for _ in 0..3 {
        let err = locker.acquire("new", LockValue::new(1)).unwrap_err();
        assert!(matches!(err, Error::NoSpace { .. }), "{err:?}");
        assert!(err.to_string().contains("free some space"), "{err}");
    }
    assert!(faults.injected() >= 3);
    faults.heal();
    assert_eq!(locker.get("kept").unwrap().map(|l| l.value), Some(7));
    assert!(locker.acquire("new", LockValue::new(1)).unwrap());
}

// ---- A real full disk: a file size limit in a child process ----

/// The child fills the file with locks until the size limit stops it, then
/// prints the keys it was granted and the error it got.
#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    assert_eq!(role, "fill", "unknown role");
    let path = PathBuf::from(setting(FILE));
    let locker: FileLocker<String> = FileLocker::builder(&path)
        .background_cleanup(false)
        .open()
        .expect("open below the limit");
    let value = "x".repeat(8 << 10);
    // The test harness has begun a line ("test child_entry ... ").
    println!();
    for i in 0.. {
        let key = format!("key-{i}");
        match locker.acquire(&key, LockValue::new(value.clone())) {
            Ok(true) => println!("granted {key}"),
            Ok(false) => panic!("{key} was refused though free"),
            Err(e) => {
                println!("failed {key}: {e:?}");
                println!("message: {e}");
                break;
            }
        }
    }
}

#[test]
fn a_full_disk_keeps_every_granted_lock_and_none_that_failed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    // Create the file below the limit first, so that opening succeeds.
    drop(reopen(&path, &start_clock()));
    let start = std::fs::metadata(&path).unwrap().len();
    let limit_kib = start / 1024 + 4096;

    let cmd = child("fill", &path);
    let mut args = vec![cmd.get_program().to_owned()];
    args.extend(cmd.get_args().map(ToOwned::to_owned));
    // An ignored SIGXFSZ makes a write past the limit fail with EFBIG
    // instead of killing the process; the shell passes both on.
    let script = format!("trap '' XFSZ; ulimit -f {limit_kib}; exec \"$0\" \"$@\"");
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .args(args)
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let granted: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("granted "))
        .collect();
    let failed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("failed "))
        .expect("the child hit the limit");
    let message = stdout
        .lines()
        .find_map(|l| l.strip_prefix("message: "))
        .expect("the child printed the message");
    assert!(granted.len() >= 10, "only {} locks fit", granted.len());
    assert!(failed.contains("NoSpace"), "{failed}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    let failed_key = failed.split(':').next().unwrap();

    let locker: FileLocker<String> = FileLocker::builder(&path)
        .background_cleanup(false)
        .open()
        .expect("reopen after the full disk");
    for key in &granted {
        assert!(locker.exists(key).unwrap(), "{key} was granted, then lost");
    }
    assert!(
        !locker.exists(failed_key).unwrap(),
        "{failed_key} failed, yet is held"
    );
    let report = locker.check().unwrap();
    assert_eq!(report.locks, granted.len());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// A grant whose commit failed before it reached the file gave its fence to
/// no one, so the next grant of the key (here another handle, on the same
/// frozen clock, with the same value) carries the same fence. The failed
/// handle's clean-up must remove only its own grant, were it there.
#[test]
fn a_failed_grants_clean_up_never_removes_another_holders_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let clock = start_clock();
    for fault in [Fault::DiskFull, Fault::Io] {
        let faults = Faults::new();
        let a = open_with(&path, &faults, &clock);
        let b = reopen(&path, &clock);
        let c = reopen(&path, &clock);
        faults.fail_writes_after(0, fault);
        let err = a.acquire("job", LockValue::new(1)).unwrap_err();
        assert!(is_storage_failure(&err), "{err:?}");
        assert!(
            b.acquire("job", LockValue::new(1)).unwrap(),
            "free: A's grant failed"
        );
        let fence = b.info("job").unwrap().unwrap().fence;
        faults.heal();
        // A's next call settles its failed grant first.
        assert!(a.exists("job").unwrap(), "B's lock is still there");
        assert!(
            !c.acquire("job", LockValue::new(2)).unwrap(),
            "no third holder"
        );
        assert_eq!(c.info("job").unwrap().unwrap().fence, fence);
        assert!(b.release("job").unwrap());
    }
}

/// A handle opened again after a failed write keeps telling other processes
/// that it is a live writer: redb's locks for that (its shared-writer and
/// consistent bytes, at 2^62 + 1 and + 4) stay held. Were the new engine
/// handle on the same open file description as the failed one, closing the
/// failed one would release them, and another process could run recovery
/// under live writers.
#[test]
fn a_handle_recovered_after_a_failed_write_still_holds_its_writer_locks() {
    use redb::StorageBackend;
    use std::ops::Bound;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let clock = start_clock();
    let faults = Faults::new();
    let locker = open_with(&path, &faults, &clock);
    let probe = redb::backends::FileBackend::new(std::fs::File::open(&path).unwrap()).unwrap();
    let held = |byte: u64| {
        probe
            .query_lock_range(Bound::Included(byte), Bound::Included(byte))
            .unwrap()
    };
    let (shared_writer, consistent) = ((1u64 << 62) + 1, (1u64 << 62) + 4);
    assert!(held(shared_writer) && held(consistent));
    for fault in [Fault::Io, Fault::DiskFull] {
        faults.fail_writes_after(0, fault);
        assert!(locker.acquire("k", LockValue::new(1)).is_err());
        faults.heal();
        assert!(locker.acquire("k", LockValue::new(1)).unwrap(), "recovered");
        assert!(locker.release("k").unwrap());
        assert!(held(shared_writer), "{fault:?}: still a writer");
        assert!(held(consistent), "{fault:?}: still consistent");
    }
}
