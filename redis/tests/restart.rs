//! The server stopped and started again mid-run, with `appendonly yes` and
//! `appendfsync always`: what was acknowledged is still there, fences keep
//! growing, calls made while it is down fail naming it, and the locker works
//! again once it is back.

mod common;

use std::time::{Duration, Instant};

use hostlock::{
    CleanableLocker, Error, InspectableLocker, LeaseLocker, LockValue, Locker, ManualClock,
    RenewableLocker,
};
use hostlock_redis::RedisLocker;

use common::{Server, prefix};

fn is_server_error(e: &Error, addr: &str) -> bool {
    matches!(e, Error::Backend { store, transient: true, .. } if store.contains(addr))
        && e.to_string().contains(addr)
}

#[test]
fn acknowledged_locks_survive_a_restart_and_errors_name_the_server_meanwhile() {
    let mut server = Server::start();
    let addr = server.addr();
    let clock = ManualClock::default();
    let prefix = prefix("restart");
    let open = || -> RedisLocker<String> {
        RedisLocker::builder(&server.url())
            .prefix(prefix.as_str())
            .clock(clock.clone())
            .session_timeout(Duration::from_secs(30))
            .open()
            .unwrap()
    };
    let locker = open();
    let idle = open();

    let hour = clock.now_plus(Duration::from_secs(3600));
    for i in 0..5 {
        let lock = LockValue::new(format!("v{i}")).with_token(format!("t{i}"));
        let lock = if i % 2 == 0 {
            lock.expiring_at(hour)
        } else {
            lock
        };
        assert!(locker.acquire(&format!("k{i}"), lock).unwrap());
    }
    let guard = locker
        .try_lock("guarded", "g".to_owned(), None)
        .unwrap()
        .expect("free");
    let before: Vec<_> = locker
        .list(true)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(before.len(), 6);
    let highest = before.iter().map(|i| i.fence).max().unwrap();
    assert!(idle.exists("k0").unwrap());

    server.stop();
    let down = [
        locker
            .acquire("new", LockValue::new("x".to_owned()))
            .unwrap_err(),
        locker.get("k0").unwrap_err(),
        locker.exists("k1").unwrap_err(),
        locker.release("k1").unwrap_err(),
        locker.touch("k0", "t0", hour).unwrap_err(),
        locker.cleanup().unwrap_err(),
        locker.list(false).unwrap_err(),
        locker.try_lock("other", "x".to_owned(), None).unwrap_err(),
        guard.check().unwrap_err(),
    ];
    for e in &down {
        assert!(is_server_error(e, &addr), "{e:?} / {e}");
        assert!(e.is_transient());
    }
    assert!(!locker.is_connected());
    // Nothing changed while the server was down: the next acquire of the
    // new key after the restart succeeds, and k1 is still there.

    let stopped = Instant::now();
    server.restart();
    eprintln!("the server was down for {:?}", stopped.elapsed());

    // A locker idle across the restart works at its first call.
    assert!(idle.exists("k1").unwrap());
    let after: Vec<_> = locker
        .list(true)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(after, before, "every acknowledged lock is back as it was");
    assert!(guard.check().unwrap(), "the guard's lease survived");
    assert!(
        locker
            .acquire("new", LockValue::new("x".to_owned()))
            .unwrap()
    );
    let new = locker.info("new").unwrap().expect("held");
    assert!(new.fence > highest, "fences keep growing after a restart");
    let next = idle
        .try_lock("other", "y".to_owned(), Some(Duration::from_secs(60)))
        .unwrap()
        .expect("free");
    assert!(next.fence() > new.fence);
    assert!(locker.release_if_owner("k1", "t1").unwrap());
    assert!(guard.unlock().unwrap());
    assert!(next.unlock().unwrap());
}

trait Plus {
    fn now_plus(&self, by: Duration) -> std::time::SystemTime;
}

impl Plus for ManualClock {
    fn now_plus(&self, by: Duration) -> std::time::SystemTime {
        hostlock::Clock::now(self) + by
    }
}
