//! Group commit: the writes of many threads of one handle share
//! transactions, and each thread still gets its own, correct result.

use std::sync::Barrier;

use hostlock::{Faults, FileLocker, LockValue, Locker};

const THREADS: usize = 8;
const CYCLES: usize = 25;

#[test]
fn threads_share_commits_and_keep_their_own_results() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let locker: FileLocker<usize> = FileLocker::builder(dir.path().join("locks.redb"))
        .background_cleanup(false)
        .faults(faults.clone())
        .open()
        .unwrap();
    let syncs_before = faults.syncs();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (locker, barrier) = (locker.clone(), &barrier);
            s.spawn(move || {
                barrier.wait();
                for c in 0..CYCLES {
                    let own = format!("t{t}-{c}");
                    assert!(locker.acquire(&own, LockValue::new(t)).unwrap());
                    // Every thread also contends for one shared key.
                    let shared = locker.acquire("shared", LockValue::new(t)).unwrap();
                    if shared {
                        assert_eq!(locker.get("shared").unwrap().unwrap().value, t);
                        assert!(locker.release("shared").unwrap());
                    }
                    assert!(!locker.acquire(&own, LockValue::new(t)).unwrap());
                    assert!(locker.release(&own).unwrap());
                    assert!(!locker.release(&own).unwrap());
                }
            });
        }
    });
    assert!(!locker.exists("shared").unwrap());
    // A commit of one operation costs two syncs; shared commits cost fewer
    // per operation. Only the changes count: refused acquires and releases
    // of free keys commit nothing.
    let changes = THREADS * CYCLES * 2;
    let syncs = faults.syncs() - syncs_before;
    eprintln!("{changes} changes in {syncs} syncs");
    assert!(
        (syncs as usize) < 2 * changes,
        "{syncs} syncs for {changes} changes: no commit was shared"
    );
    assert!(locker.check().unwrap().problems.is_empty());
}
