//! Fences of one key strictly increase across 1000 acquires mixed with
//! releases, expiry, cleanups, force_release, reopening, and acquires made by
//! other processes.

mod common;

use std::process::Stdio;
use std::time::Duration;

use hostlock::{
    CleanableLocker, Clock, FileLocker, InspectableLocker, LockValue, Locker, ManualClock,
};

/// The body of every child process; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    assert_eq!(role, "acquire");
    let locker: FileLocker<u32> = FileLocker::open(common::setting(common::FILE)).unwrap();
    assert!(
        locker
            .acquire("k", LockValue::new(std::process::id()))
            .unwrap()
    );
    let fence = locker.info("k").unwrap().unwrap().fence;
    assert!(locker.release("k").unwrap());
    println!("FENCE {fence}");
}

fn open(path: &std::path::Path, clock: &ManualClock) -> FileLocker<u32> {
    FileLocker::builder(path)
        .clock(clock.clone())
        .background_cleanup(false)
        .open()
        .unwrap()
}

#[test]
fn fences_strictly_increase_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let clock = ManualClock::default();
    let mut locker = open(&path, &clock);
    let mut last = 0;
    let mut seen = 0;
    let mut check = |fence: u64, how: &str| {
        assert!(fence > last, "{how}: fence {fence} after {last}");
        last = fence;
        seen += 1;
    };
    for i in 0..1000u32 {
        if i % 100 == 99 {
            // Another process, on the system clock, takes the key.
            locker.force_release("k").unwrap();
            let output = common::child("acquire", &path)
                .stdout(Stdio::piped())
                .output()
                .unwrap();
            assert!(output.status.success());
            let stdout = String::from_utf8(output.stdout).unwrap();
            let fence = stdout
                .lines()
                .find_map(|l| l.rsplit_once("FENCE ").map(|(_, f)| f.to_owned()))
                .expect("the child printed its fence");
            check(fence.parse().unwrap(), "child process");
            continue;
        }
        let lease = LockValue::new(i).expiring_at(clock.now() + Duration::from_secs(5));
        assert!(locker.acquire("k", lease).unwrap(), "iteration {i}");
        check(locker.info("k").unwrap().unwrap().fence, "acquire");
        match i % 5 {
            0 => assert!(locker.release("k").unwrap()),
            1 => locker.force_release("k").unwrap(),
            2 => {
                clock.advance(Duration::from_secs(6));
                assert_eq!(locker.cleanup().unwrap(), 1);
            }
            3 => clock.advance(Duration::from_secs(6)), // left to expire
            _ => {
                drop(locker);
                locker = open(&path, &clock);
                assert!(locker.release("k").unwrap());
            }
        }
    }
    assert_eq!(seen, 1000);
}
