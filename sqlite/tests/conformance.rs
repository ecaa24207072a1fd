//! The whole hostlock contract, row by row, against a real database file:
//! the conformance kit with every trait, guards and fair waits included,
//! and the job helpers running on the locker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hostlock::conformance::Suite;
use hostlock::{Locker, ManualClock, Outcome, OverlapOptions, with_unique, without_overlap};
use hostlock_sqlite::SqliteLocker;

#[test]
fn every_row_of_the_contract_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut made = 0;
    let report = Suite::new()
        .cleanable()
        .renewable()
        .inspectable()
        .leases()
        .run(|clock| {
            made += 1;
            SqliteLocker::builder(dir.path().join(format!("{made}.db")))
                .clock(clock)
                .open()
                .expect("a new database") // a panic here fails the row
        });
    report.assert_passed();
    // Every row of the kit: none failed, none skipped, none missing.
    assert_eq!(report.passed().len(), 60);
    assert!(report.skipped().is_empty());
}

#[test]
fn with_unique_runs_a_job_once_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let locker: SqliteLocker<String> = SqliteLocker::builder(dir.path().join("jobs.db"))
        .clock(ManualClock::default())
        .open()
        .unwrap();
    let outcome = with_unique(&locker, "import", None, |lease| {
        // A duplicate is skipped while the first runs.
        let again = with_unique(&locker, "import", None, |_| ()).unwrap();
        assert_eq!(again, Outcome::Skipped);
        assert!(lease.check().unwrap());
        lease.fence()
    })
    .unwrap();
    assert!(
        matches!(outcome, Outcome::Ran(Some(fence)) if fence > 0),
        "a lease with a fence: {outcome:?}"
    );
    assert!(!locker.exists("import").unwrap(), "released after the job");
}

#[test]
fn without_overlap_runs_every_job_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let locker: SqliteLocker<String> = SqliteLocker::open(dir.path().join("jobs.db")).unwrap();
    let running = AtomicUsize::new(0);
    let ran = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let options = OverlapOptions::new()
                    .ttl(Duration::from_secs(30))
                    .wait(Duration::from_secs(20));
                let outcome = without_overlap(&locker, "compact", options, |_| {
                    assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "overlap");
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                    ran.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
                assert!(matches!(outcome, Outcome::Ran(())), "{outcome:?}");
            });
        }
    });
    assert_eq!(ran.load(Ordering::SeqCst), 3);
}
