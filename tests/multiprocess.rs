//! Mutual exclusion between real processes sharing one lock file, including
//! processes killed with SIGKILL while they hold locks or write.
//!
//! Every holder appends `enter` and `leave` records to a shared log from
//! inside its critical section; the log proves that no two holds of a key
//! overlapped.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use hostlock::{FileLocker, LockValue, Locker, ManualClock, RenewableLocker};

use common::LOG;
const CYCLES: &str = "HOSTLOCK_TEST_CYCLES";
const KEYS: &str = "HOSTLOCK_TEST_KEYS";
const TTL_MS: &str = "HOSTLOCK_TEST_TTL_MS";

/// The body of every child process; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let file = common::setting(common::FILE);
    match role.as_str() {
        "hammer" => hammer(&file),
        "hold" => hold(&file),
        other => panic!("unknown role {other}"),
    }
}

/// Takes the keys in turn, `CYCLES` times, logging each hold.
fn hammer(file: &str) {
    let cycles: usize = common::setting(CYCLES).parse().unwrap();
    let keys: Vec<String> = common::setting(KEYS)
        .split(',')
        .map(str::to_owned)
        .collect();
    let ttl = Duration::from_millis(common::setting(TTL_MS).parse().unwrap());
    let mut log = common::shared_log();
    let locker: FileLocker<u32> = FileLocker::open(file).unwrap();
    let pid = std::process::id();
    let parent = std::os::unix::process::parent_id();
    for cycle in 0..cycles {
        if common::orphaned(parent) {
            return;
        }
        let key = &keys[cycle % keys.len()];
        let token = format!("{pid}-{cycle}");
        let mut attempts = 0u32;
        while !locker
            .acquire(key, LockValue::new(pid).with_ttl(ttl).with_token(&token))
            .unwrap()
        {
            attempts += 1;
            thread::sleep(Duration::from_micros(100 * u64::from(attempts.min(20))));
        }
        // One write() per record: O_APPEND keeps records whole and in order.
        log.write_all(format!("enter {key} {pid} {cycle}\n").as_bytes())
            .unwrap();
        log.write_all(format!("leave {key} {pid} {cycle}\n").as_bytes())
            .unwrap();
        assert!(
            locker.release_if_owner(key, &token).unwrap(),
            "the lease of {key} was lost in cycle {cycle}"
        );
    }
}

/// Takes the key `victim` with no expiry, says so, and waits to be killed.
fn hold(file: &str) {
    let locker: FileLocker<u32> = FileLocker::open(file).unwrap();
    let ttl = Duration::from_millis(common::setting(TTL_MS).parse().unwrap());
    let lock = LockValue::new(std::process::id()).with_ttl(ttl);
    assert!(locker.acquire("victim", lock).unwrap());
    // libtest may have written "test child_entry ... " on this line already.
    println!("READY");
    std::io::stdout().flush().unwrap();
    let parent = std::os::unix::process::parent_id();
    while !common::orphaned(parent) {
        thread::sleep(Duration::from_millis(100));
    }
}

fn spawn_hammer(file: &Path, log: &Path, cycles: usize, keys: &str, ttl_ms: u64) -> Child {
    common::child("hammer", file)
        .env(LOG, log)
        .env(CYCLES, cycles.to_string())
        .env(KEYS, keys)
        .env(TTL_MS, ttl_ms.to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("start a child")
}

fn wait_success(mut child: Child) {
    let status = child.wait().unwrap();
    assert!(status.success(), "a child failed: {status}");
}

/// Checks the shared log: per key, every `enter` is followed by the `leave`
/// of the same hold before any other `enter`, except after an `enter` of a
/// process in `killed`, whose hold ended with its death. Returns the number
/// of completed holds.
fn check_log(log: &Path, killed: &HashSet<u32>) -> usize {
    let text = std::fs::read_to_string(log).unwrap();
    let mut open: HashMap<String, (u32, String)> = HashMap::new();
    let mut holds = 0;
    for (n, line) in text.lines().enumerate() {
        let parts: Vec<&str> = line.split(' ').collect();
        let [what, key, pid, cycle] = parts[..] else {
            panic!("line {n}: malformed record {line:?}");
        };
        let pid: u32 = pid.parse().unwrap();
        match what {
            "enter" => {
                if let Some((holder, c)) = open.get(key) {
                    assert!(
                        killed.contains(holder),
                        "line {n}: {pid} entered {key} while {holder} (cycle {c}) held it"
                    );
                }
                open.insert(key.to_owned(), (pid, cycle.to_owned()));
            }
            "leave" => {
                let holder = open.remove(key);
                assert_eq!(
                    holder,
                    Some((pid, cycle.to_owned())),
                    "line {n}: {pid} left {key} that it did not hold"
                );
                holds += 1;
            }
            _ => panic!("line {n}: malformed record {line:?}"),
        }
    }
    for (key, (holder, _)) in &open {
        assert!(
            killed.contains(holder),
            "{holder} never left {key} and was not killed"
        );
    }
    holds
}

/// A new lock file and an empty shared log in a temporary folder. The file is
/// created first so the children race on locks, not on creation.
fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("locks.redb");
    let log = dir.path().join("holds.log");
    std::fs::write(&log, "").unwrap();
    drop(FileLocker::<u32>::open(&file).unwrap());
    (dir, file, log)
}

#[test]
fn four_processes_never_hold_a_key_together() {
    let (_dir, file, log) = setup();
    let started = Instant::now();
    let children: Vec<Child> = (0..4)
        .map(|_| spawn_hammer(&file, &log, 200, "alpha,beta", 60_000))
        .collect();
    children.into_iter().for_each(wait_success);
    let elapsed = started.elapsed();
    assert_eq!(check_log(&log, &HashSet::new()), 800);
    eprintln!(
        "4 processes, 800 holds in {elapsed:?}: {:.0} acquire+release cycles/s",
        800.0 / elapsed.as_secs_f64()
    );
}

#[test]
fn sigkilled_holders_do_not_stop_the_others() {
    let (_dir, file, log) = setup();

    // A child that holds `victim` for an hour, killed while it holds it.
    let mut holder = common::child("hold", &file)
        .env(TTL_MS, 3_600_000.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = holder.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.ends_with("READY"));
    assert!(ready, "the holder did not take its lock");
    let holder_pid = holder.id();

    // Three workers that finish, and two killed at arbitrary moments of their
    // work (inside transactions and syncs as likely as not). The killed ones
    // hold short leases, so a hold they leave behind frees itself.
    let workers: Vec<Child> = (0..3)
        .map(|_| spawn_hammer(&file, &log, 150, "alpha,beta", 60_000))
        .collect();
    let mut doomed: Vec<Child> = (0..2)
        .map(|_| spawn_hammer(&file, &log, 100_000, "alpha,beta", 1_000))
        .collect();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let mut killed = HashSet::new();
    for (i, child) in doomed.iter_mut().enumerate() {
        thread::sleep(Duration::from_millis(150 + 170 * i as u64));
        killed.insert(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
    }
    workers.into_iter().for_each(wait_success);
    let holds = check_log(&log, &killed);
    assert!(holds >= 450, "the finishing workers made {holds} holds");

    // The file still opens and works; the dead holder's lock stays until it expires.
    let clock = ManualClock::new(SystemTime::now());
    let locker: FileLocker<u32> = FileLocker::builder(&file)
        .clock(clock.clone())
        .background_cleanup(false)
        .open()
        .unwrap();
    let victim = locker
        .get("victim")
        .unwrap()
        .expect("the dead holder's lock");
    assert_eq!(victim.value, holder_pid);
    assert!(!locker.acquire("victim", LockValue::new(0)).unwrap());
    clock.advance(Duration::from_secs(3_601));
    assert!(
        locker
            .acquire("victim", LockValue::new(1).with_token("t"))
            .unwrap()
    );
    assert!(locker.release_if_owner("victim", "t").unwrap());
}

#[test]
fn a_process_stopped_mid_write_makes_others_busy_not_hung() {
    let (_dir, file, log) = setup();
    let child = common::Reaped(spawn_hammer(&file, &log, 1_000_000, "alpha", 60_000));
    let bound = Duration::from_millis(300);
    let locker: FileLocker<u32> = FileLocker::builder(&file)
        .busy_timeout(bound)
        .background_cleanup(false)
        .open()
        .unwrap();
    // The child spends most of its time inside write transactions; stop it
    // until it is caught inside one. redb also holds a header lock for a few
    // microseconds while it begins and commits; a process stopped there
    // blocks the others until it runs again, so a timer resumes it.
    let mut caught = None;
    let mut stops = 0;
    let mut header_stalls = 0;
    for _ in 0..200 {
        thread::sleep(Duration::from_millis(3));
        stops += 1;
        let pid = child.0.id();
        let (result, waited) = common::while_stopped(pid, Duration::from_secs(2), || {
            let started = Instant::now();
            (locker.force_release("other"), started.elapsed())
        });
        match result {
            Ok(()) if waited >= Duration::from_secs(2) => header_stalls += 1,
            Ok(()) => {}
            Err(hostlock::Error::Busy {
                waited: reported, ..
            }) if waited < Duration::from_secs(2) => {
                caught = Some((waited, reported));
                break;
            }
            Err(hostlock::Error::Busy { .. }) => header_stalls += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    eprintln!("{stops} stops, {header_stalls} inside redb's header lock");
    let (waited, reported) = caught.expect("the child was never stopped inside a write");
    assert!(reported >= bound && waited >= bound);
    // Once it runs again, so does everyone else (the child writes without
    // pause, so a single call may still find it busy).
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = locker.force_release("other") {
        assert!(matches!(e, hostlock::Error::Busy { .. }), "{e}");
        assert!(Instant::now() < deadline, "never got a turn");
    }
    drop(child);
    locker.force_release("other").unwrap();
    eprintln!("busy after {waited:?} (bound {bound:?})");
}
