//! Real processes against one server: four contenders never hold a key at
//! once and all get in; a SIGKILLed holder's lease is free within the session
//! timeout, while a living holder's is never taken.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use hostlock::{CleanableLocker, InspectableLocker, LeaseLocker, LockState, LockValue, Locker};
use hostlock_redis::RedisLocker;

use common::{PREFIX, Reaped, Server, URL, child, orphaned, prefix, setting, shared_log};

const CONTENDERS: usize = 4;
const ROUNDS: usize = 15;
/// The session timeout of the holder that gets killed.
const SESSION: Duration = Duration::from_millis(500);

/// What a re-executed test binary does, by its role.
#[test]
fn child_entry() {
    let Some(role) = common::role() else {
        return;
    };
    match role.as_str() {
        "contender" => contender(),
        "holder" => holder(),
        other => panic!("unknown role {other}"),
    }
}

fn open(session: Duration) -> RedisLocker<String> {
    RedisLocker::builder(&setting(URL))
        .prefix(setting(PREFIX))
        .session_timeout(session)
        .open()
        .expect("a locker in the child")
}

fn contender() {
    let locker = open(Duration::from_secs(5));
    let mut log = shared_log();
    let pid = std::process::id();
    for _ in 0..ROUNDS {
        let guard = locker
            .lock("shared", pid.to_string(), Some(Duration::from_secs(30)))
            .expect("lock");
        log.write_all(format!("enter {pid} {}\n", guard.fence()).as_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
        log.write_all(format!("leave {pid}\n").as_bytes()).unwrap();
        assert!(guard.unlock().expect("unlock"), "still held at the end");
    }
}

fn holder() {
    let parent = std::os::unix::process::parent_id();
    let locker = open(SESSION);
    assert!(
        locker
            .acquire("plain", LockValue::new("no session".to_owned()))
            .unwrap()
    );
    let guard = locker
        .try_lock("held", "holder".to_owned(), None)
        .expect("try_lock")
        .expect("the key is free");
    let other = locker
        .try_lock(
            "other",
            "holder".to_owned(),
            Some(Duration::from_secs(3600)),
        )
        .expect("try_lock")
        .expect("the key is free");
    shared_log()
        .write_all(format!("held {}\n", guard.fence()).as_bytes())
        .unwrap();
    while !orphaned(parent) {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop((guard, other));
}

fn lines(path: &std::path::Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap();
    BufReader::new(file).lines().map(Result::unwrap).collect()
}

#[test]
fn four_processes_never_hold_a_key_at_once_and_all_get_in() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    std::fs::write(&log, "").unwrap();
    let prefix = prefix("mutex");
    let mut children: Vec<Reaped> = (0..CONTENDERS)
        .map(|_| {
            Reaped(
                child("child_entry", "contender", &server.url(), &prefix, &log)
                    .spawn()
                    .expect("start a contender"),
            )
        })
        .collect();
    for child in &mut children {
        let status = child.0.wait().unwrap();
        assert!(status.success(), "a contender failed: {status}");
    }
    let lines = lines(&log);
    assert_eq!(lines.len(), 2 * CONTENDERS * ROUNDS, "{lines:#?}");
    let mut counts = std::collections::HashMap::new();
    let mut last_fence = 0;
    for pair in lines.chunks(2) {
        let enter: Vec<&str> = pair[0].split(' ').collect();
        let leave: Vec<&str> = pair[1].split(' ').collect();
        assert_eq!(enter[0], "enter", "two holders at once: {pair:?}");
        assert_eq!(leave, ["leave", enter[1]], "two holders at once: {pair:?}");
        let fence: u64 = enter[2].parse().unwrap();
        assert!(fence > last_fence, "fences grow: {last_fence} then {fence}");
        last_fence = fence;
        *counts.entry(enter[1].to_owned()).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), CONTENDERS, "everyone got in");
    assert!(counts.values().all(|&n| n == ROUNDS), "{counts:?}");
}

#[test]
fn a_killed_holder_frees_its_lease_within_the_session_timeout_a_living_one_never() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    std::fs::write(&log, "").unwrap();
    let prefix = prefix("dead");
    let locker: RedisLocker<String> = RedisLocker::builder(&server.url())
        .prefix(prefix.as_str())
        .open()
        .unwrap();
    let mut holder = Reaped(
        child("child_entry", "holder", &server.url(), &prefix, &log)
            .spawn()
            .expect("start the holder"),
    );
    assert!(
        common::wait_until(Duration::from_secs(10), || !lines(&log).is_empty()),
        "the holder took the key"
    );

    // Alive, it keeps its lease well past its session timeout.
    let watched = Instant::now();
    while watched.elapsed() < 4 * SESSION {
        assert!(
            locker
                .try_lock("held", "me".to_owned(), None)
                .unwrap()
                .is_none(),
            "a living holder's lease was taken"
        );
        let info = locker.info("held").unwrap().expect("held");
        assert_eq!(info.state, LockState::Live);
        assert_eq!(info.holder.alive, Some(true));
        std::thread::sleep(Duration::from_millis(20));
    }

    holder.0.kill().unwrap();
    holder.0.wait().unwrap();
    let killed = Instant::now();
    let guard = locker
        .try_lock_for("held", "me".to_owned(), None, Duration::from_secs(10))
        .unwrap()
        .expect("the dead holder's key is free");
    let took = killed.elapsed();
    eprintln!(
        "a SIGKILLed holder's key was taken {took:?} after the kill (session timeout {SESSION:?})"
    );
    assert!(
        took <= SESSION + Duration::from_millis(500),
        "took {took:?}, more than the session timeout {SESSION:?} and a margin"
    );
    let old: u64 = lines(&log)[0]
        .strip_prefix("held ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(guard.fence() > old, "the new holder's fence is greater");
    // A lock taken without a session stays: only its expiry frees it.
    let plain = locker.info("plain").unwrap().expect("still there");
    assert_eq!(plain.state, LockState::Live);
    assert_eq!(plain.holder.alive, None);
    assert!(locker.exists("plain").unwrap());
    // The dead holder's other lease shows as such, and cleanup removes it.
    let other = locker.info("other").unwrap().expect("not cleaned up yet");
    assert_eq!(other.state, LockState::HolderGone);
    assert_eq!(other.holder.alive, Some(false));
    assert!(!locker.exists("other").unwrap());
    assert_eq!(locker.cleanup().unwrap(), 1);
    assert!(locker.info("other").unwrap().is_none());
    assert!(guard.unlock().unwrap());
}
