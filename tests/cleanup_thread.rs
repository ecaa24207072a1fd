//! The background cleanup thread: it removes expired locks on its own, one
//! handle sweeps for all, it reports its errors, and it stops with the last
//! handle.
//!
//! These tests wait for a background thread, so they poll with a generous
//! deadline; expiry itself moves only through a `ManualClock`.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use std::ops::Bound;

use hostlock::{Clock, Fault, Faults, FileLocker, LockValue, Locker, ManualClock};
use redb::StorageBackend;
use redb::backends::FileBackend;

/// The tests count this process's threads, so they run one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const TICK: Duration = Duration::from_millis(10);

fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(TICK);
    }
}

fn cleanup_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "hostlock-cleanu")
        .count()
}

fn open(path: &Path, clock: &ManualClock) -> FileLocker<String> {
    FileLocker::builder(path)
        .clock(clock.clone())
        .cleanup_interval(TICK)
        .open()
        .unwrap()
}

/// Whether an entry is stored under `key`, live or expired.
fn stored(locker: &FileLocker<String>, clock: &ManualClock, key: &str) -> bool {
    let now = clock.now();
    clock.set(now - Duration::from_secs(3600));
    let found = locker.get(key).unwrap().is_some();
    clock.set(now);
    found
}

#[test]
fn expired_locks_are_removed_in_the_background() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let locker = open(&dir.path().join("locks.redb"), &clock);
    let soon = clock.now() + Duration::from_secs(1);
    assert!(
        locker
            .acquire("short", LockValue::new("s".into()).expiring_at(soon))
            .unwrap()
    );
    assert!(
        locker
            .acquire("forever", LockValue::new("f".into()))
            .unwrap()
    );
    thread::sleep(TICK * 5);
    assert!(stored(&locker, &clock, "short"), "not expired yet: kept");

    clock.advance(Duration::from_secs(2));
    eventually("the thread removed the expired lock", || {
        !stored(&locker, &clock, "short")
    });
    assert!(locker.exists("forever").unwrap());
}

#[test]
fn one_handle_sweeps_and_another_takes_over_when_it_closes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let clock = ManualClock::default();
    let first = open(&path, &clock);
    let second = open(&path, &clock);
    thread::sleep(TICK * 5);
    // Exactly one of the two holds the sweeper lock, a byte-range lock in
    // the file itself (docs/design.md, "Byte-range locks in the file").
    const SWEEPER_BYTE: u64 = (1 << 61) + 2;
    let probe = FileBackend::new(std::fs::File::open(&path).unwrap()).unwrap();
    let byte = (Bound::Included(SWEEPER_BYTE), Bound::Included(SWEEPER_BYTE));
    assert!(
        !probe.try_lock_shared_range(byte.0, byte.1).unwrap(),
        "someone sweeps"
    );
    // No file was created beside the lock file for it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    drop(first);
    let at = clock.now() + Duration::from_secs(1);
    assert!(
        second
            .acquire("k", LockValue::new("v".into()).expiring_at(at))
            .unwrap()
    );
    clock.advance(Duration::from_secs(2));
    eventually("the remaining handle swept", || {
        !stored(&second, &clock, "k")
    });
}

#[test]
fn the_thread_stops_with_the_last_clone() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let before = cleanup_threads();
    let locker = open(&dir.path().join("locks.redb"), &clock);
    let clone = locker.clone();
    // A new thread sets its name itself, just after it starts.
    eventually("the thread is running", || cleanup_threads() == before + 1);
    thread::sleep(TICK * 3);
    assert_eq!(cleanup_threads(), before + 1, "clones share one thread");
    drop(locker);
    assert_eq!(cleanup_threads(), before + 1);
    drop(clone);
    // The drop joined the thread, so it is gone already.
    assert_eq!(cleanup_threads(), before);

    let quiet: FileLocker<String> = FileLocker::builder(dir.path().join("quiet.redb"))
        .background_cleanup(false)
        .open()
        .unwrap();
    assert_eq!(cleanup_threads(), before, "no thread when turned off");
    drop(quiet);
}

#[test]
fn errors_go_to_the_callback_which_may_panic() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    // An expired lock on a full disk: every tick finds it and fails to
    // remove it.
    let clock = ManualClock::default();
    let faults = Faults::new();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&errors);
    let locker: FileLocker<String> = FileLocker::builder(&path)
        .clock(clock.clone())
        .faults(faults.clone())
        .cleanup_interval(TICK)
        .on_cleanup_error(move |e| {
            sink.lock().unwrap().push(e.to_string());
            panic!("a panicking callback must not end the thread");
        })
        .open()
        .unwrap();
    let soon = clock.now() + Duration::from_secs(1);
    let lock = LockValue::new("v".to_owned()).expiring_at(soon);
    assert!(locker.acquire("old", lock).unwrap());
    clock.advance(Duration::from_secs(2));
    faults.fail_writes_after(0, Fault::DiskFull);
    eventually("several errors were reported", || {
        errors.lock().unwrap().len() >= 3
    });
    let first = errors.lock().unwrap()[0].clone();
    assert!(first.contains("no space"), "{first}");
    // The locker itself works again once the disk does.
    faults.heal();
    assert!(locker.acquire("k", LockValue::new("v".into())).unwrap());
}

#[test]
fn nothing_expired_means_nothing_written() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let clock = ManualClock::default();
    let locker = open(&path, &clock);
    let later = clock.now() + Duration::from_secs(60);
    assert!(
        locker
            .acquire("k", LockValue::new("v".into()).expiring_at(later))
            .unwrap()
    );
    let before = std::fs::read(&path).unwrap();
    assert_eq!(hostlock::CleanableLocker::cleanup(&locker).unwrap(), 0);
    thread::sleep(TICK * 10); // several ticks of the thread
    assert!(std::fs::read(&path).unwrap() == before, "the file changed");
}

#[test]
fn a_file_locker_is_send_and_sync() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    // Also for a value type that is neither Send nor Sync.
    shareable::<FileLocker<std::rc::Rc<String>>>();
    shareable::<FileLocker<String>>();
}

/// The child: opens the file first (so it sweeps), says so, and waits to be
/// killed.
#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    assert_eq!(role, "sweeper");
    let locker: FileLocker<String> = FileLocker::builder(common::setting(common::FILE))
        .cleanup_interval(TICK)
        .open()
        .unwrap();
    println!("\nOPEN");
    let parent = std::os::unix::process::parent_id();
    while !common::orphaned(parent) {
        thread::sleep(TICK);
    }
    drop(locker);
}

/// An elected sweeper that is stopped keeps the sweeper lock; another
/// handle stands in once expired locks pile up past two of its intervals.
#[test]
fn another_handle_stands_in_for_a_stopped_sweeper() {
    use std::io::{BufRead, BufReader};
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let mut child = common::Reaped(
        common::child("sweeper", &path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = child.0.stdout.take().unwrap();
    assert!(
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .any(|l| l == "OPEN"),
        "the child opened the file"
    );
    let clock = ManualClock::default();
    let locker = open(&path, &clock);
    thread::sleep(TICK * 5);
    common::while_stopped(child.0.id(), Duration::from_secs(60), || {
        let soon = clock.now() + Duration::from_secs(1);
        for i in 0..20 {
            let lock = LockValue::new("v".to_owned()).expiring_at(soon);
            assert!(locker.acquire(&format!("k{i}"), lock).unwrap());
        }
        clock.advance(Duration::from_secs(2));
        eventually("a stand-in swept", || !stored(&locker, &clock, "k0"));
        assert!((0..20).all(|i| !stored(&locker, &clock, &format!("k{i}"))));
    });
}
