//! The whole conformance kit of hostlock against a real server, and the job
//! helpers run on the locker.

mod common;

use std::time::Duration;

use hostlock::conformance::Suite;
use hostlock::{Locker, ManualClock, Outcome, OverlapOptions, with_unique, without_overlap};
use hostlock_redis::RedisLocker;

use common::{Server, prefix};

#[test]
fn every_row_of_the_contract_holds_guards_and_jobs_included() {
    let server = Server::start();
    let report = Suite::new()
        .cleanable()
        .renewable()
        .inspectable()
        .leases()
        .run(|clock| {
            RedisLocker::builder(&server.url())
                .prefix(prefix("kit"))
                .clock(clock)
                .open()
                .expect("a locker on the test server")
        });
    report.assert_passed();
    assert!(report.skipped().is_empty(), "{:?}", report.skipped());
    assert_eq!(report.passed().len(), 60);
}

#[test]
fn the_job_helpers_run_on_it_with_fences() {
    let server = Server::start();
    let locker: RedisLocker<String> = RedisLocker::builder(&server.url())
        .prefix(prefix("jobs"))
        .clock(ManualClock::default())
        .open()
        .unwrap();
    let outcome = with_unique(&locker, "import", Some(Duration::from_secs(60)), |lease| {
        let again = with_unique(&locker, "import", None, |_| ()).unwrap();
        assert_eq!(again, Outcome::Skipped, "a duplicate is skipped");
        lease.fence()
    })
    .unwrap();
    let Outcome::Ran(Some(first)) = outcome else {
        panic!("the job ran under a guard with a fence: {outcome:?}");
    };
    assert!(!locker.exists("import").unwrap(), "released after the job");

    let options = OverlapOptions::new()
        .ttl(Duration::from_secs(60))
        .wait(Duration::from_secs(5));
    let outcome = without_overlap(&locker, "import", options, |lease| lease.fence()).unwrap();
    let Outcome::Ran(Some(second)) = outcome else {
        panic!("the job ran under a guard with a fence: {outcome:?}");
    };
    assert!(second > first, "fences grow: {first} then {second}");
    assert!(!locker.exists("import").unwrap());
}

#[test]
fn a_locker_is_a_cheap_handle_for_any_thread() {
    fn send_sync_clone<L: Send + Sync + Clone + 'static>() {}
    send_sync_clone::<RedisLocker<String>>();
    send_sync_clone::<RedisLocker<std::cell::Cell<u8>>>();
}
