//! The rows of the job helpers (J1 to J7). The helpers accept any
//! [`Locker`], so J1 to J6 hold for every locker; J7 holds for a lease
//! locker, which must say so through [`Locker::lease_locker`].

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::jobs::{Outcome, OverlapOptions, with_unique, with_unique_window, without_overlap};
use crate::locker::Locker;
use crate::value::LockValue;

use super::rows::Fixture;

const SEC: Duration = Duration::from_secs(1);

fn someone_else<L: Locker<String>>(f: &Fixture<L>, key: &str) {
    let lock = LockValue::new("other".to_owned()).with_token("other-token");
    assert!(f.locker().acquire(key, lock).unwrap(), "the key is free");
}

/// J1: `with_unique` runs the job once, holding the key under a token of
/// its own, and releases it after.
pub(super) fn j1_unique_runs_and_releases<L: Locker<String>>(f: &Fixture<L>) {
    let outcome = with_unique(f.locker(), "job", None, |lease| {
        assert_eq!(lease.key(), "job");
        let held = f
            .locker()
            .get("job")
            .unwrap()
            .expect("held while the job runs");
        assert_eq!(
            held.token.as_deref(),
            Some(lease.token()),
            "under the job's token"
        );
        assert_eq!(held.expires_at, None, "no TTL: no expiry");
        assert!(lease.check().unwrap(), "check: still the job's");
        42
    })
    .unwrap();
    assert_eq!(outcome, Outcome::Ran(42));
    assert!(!f.locker().exists("job").unwrap(), "released after the job");
}

/// J2: `with_unique` skips while another holds the key, and a duplicate of
/// a running job leaves that job's lock alone.
pub(super) fn j2_unique_skips<L: Locker<String>>(f: &Fixture<L>) {
    someone_else(f, "taken");
    let skipped = with_unique(f.locker(), "taken", None, |_| panic!("ran while held"));
    assert_eq!(skipped.unwrap(), Outcome::Skipped);
    let other = f.locker().get("taken").unwrap().expect("left alone");
    assert_eq!(other.token.as_deref(), Some("other-token"));

    let outcome = with_unique(f.locker(), "job", None, |lease| {
        let again = with_unique(f.locker(), "job", None, |_| panic!("a duplicate ran"));
        assert_eq!(again.unwrap(), Outcome::Skipped);
        assert!(lease.check().unwrap(), "the duplicate released nothing");
    });
    assert_eq!(outcome.unwrap(), Outcome::Ran(()));
}

/// J3: `with_unique`'s TTL counts on the locker's clock; a zero TTL is
/// invalid; a job that panics releases the key before the panic goes on.
pub(super) fn j3_unique_ttl_and_panic<L: Locker<String>>(f: &Fixture<L>) {
    assert_eq!(
        f.locker().now(),
        f.now(),
        "Locker::now must return the time of the clock the locker reads"
    );
    let ttl = 30 * SEC;
    let outcome = with_unique(f.locker(), "job", Some(ttl), |lease| {
        let held = f.locker().get("job").unwrap().expect("held");
        assert_eq!(
            held.expires_at,
            Some(f.now() + ttl),
            "the TTL on the locker's clock"
        );
        assert_eq!(lease.expires_at(), held.expires_at);
    });
    assert_eq!(outcome.unwrap(), Outcome::Ran(()));
    let zero = with_unique(f.locker(), "zero", Some(Duration::ZERO), |_| ());
    assert!(
        matches!(zero, Err(Error::InvalidArgument { .. })),
        "{zero:?}"
    );
    assert!(!f.locker().exists("zero").unwrap());

    let unwound = panic::catch_unwind(AssertUnwindSafe(|| {
        with_unique(f.locker(), "job", None, |_| -> () {
            panic!("the job failed")
        })
    }));
    assert!(unwound.is_err(), "the job's panic goes on");
    assert!(!f.locker().exists("job").unwrap(), "released as it unwound");
}

/// J4: `with_unique_window` keeps the key for the window after the job,
/// also after a panic; once the window has passed the job runs again; a
/// zero window frees the key.
pub(super) fn j4_unique_window<L: Locker<String>>(f: &Fixture<L>) {
    let window = 60 * SEC;
    let ran = with_unique_window(f.locker(), "job", window, |_| 1).unwrap();
    assert_eq!(ran, Outcome::Ran(1));
    let held = f.locker().get("job").unwrap().expect("held for the window");
    assert_eq!(
        held.expires_at,
        Some(f.now() + window),
        "window from the job's end"
    );
    assert_eq!(
        with_unique_window(f.locker(), "job", window, |_| 2).unwrap(),
        Outcome::Skipped
    );
    f.advance(window + SEC);
    assert_eq!(
        with_unique_window(f.locker(), "job", window, |_| 3).unwrap(),
        Outcome::Ran(3)
    );

    let unwound = panic::catch_unwind(AssertUnwindSafe(|| {
        with_unique_window(f.locker(), "failing", window, |_| -> () {
            panic!("failed")
        })
    }));
    assert!(unwound.is_err());
    assert!(
        f.locker().exists("failing").unwrap(),
        "a failed run keeps its window"
    );

    let zero = with_unique_window(f.locker(), "zero", Duration::ZERO, |_| ()).unwrap();
    assert_eq!(zero, Outcome::Ran(()));
    assert!(
        !f.locker().exists("zero").unwrap(),
        "a zero window frees the key"
    );
}

/// J5: `without_overlap` runs at once on a free key, waits for a release,
/// gives up when its wait has passed, does not wait with `try_once`, and
/// refuses a zero TTL.
pub(super) fn j5_overlap_waits<L: Locker<String> + Sync>(f: &Fixture<L>) {
    let free = without_overlap(f.locker(), "job", OverlapOptions::new(), |_| 1).unwrap();
    assert_eq!(free, Outcome::Ran(1));
    assert!(!f.locker().exists("job").unwrap(), "released after the job");

    someone_else(f, "job");
    let once = without_overlap(f.locker(), "job", OverlapOptions::new().try_once(), |_| 2);
    assert_eq!(once.unwrap(), Outcome::Contended);
    let short = OverlapOptions::new().wait(Duration::from_millis(20));
    assert_eq!(
        without_overlap(f.locker(), "job", short, |_| 3).unwrap(),
        Outcome::Contended
    );

    let waited = thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_millis(30));
            f.locker().release("job").unwrap();
        });
        let patient = OverlapOptions::new().wait(30 * SEC);
        without_overlap(f.locker(), "job", patient, |lease| lease.check().unwrap())
    });
    assert_eq!(waited.unwrap(), Outcome::Ran(true), "served once released");

    let zero = OverlapOptions::new().ttl(Duration::ZERO);
    let refused = without_overlap(f.locker(), "zero", zero, |_| ());
    assert!(
        matches!(refused, Err(Error::InvalidArgument { .. })),
        "{refused:?}"
    );
}

/// J6: of four threads running `without_overlap` on one key, no two jobs
/// ever run at once, and every job runs.
pub(super) fn j6_overlap_excludes<L: Locker<String> + Sync>(f: &Fixture<L>) {
    let inside = AtomicBool::new(false);
    let runs = AtomicUsize::new(0);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5 {
                    let options = OverlapOptions::new().wait(30 * SEC);
                    let outcome = without_overlap(f.locker(), "job", options, |_| {
                        assert!(!inside.swap(true, Ordering::SeqCst), "two jobs at once");
                        thread::sleep(Duration::from_millis(1));
                        inside.store(false, Ordering::SeqCst);
                        runs.fetch_add(1, Ordering::SeqCst);
                    });
                    assert_eq!(outcome.unwrap(), Outcome::Ran(()));
                }
            });
        }
    });
    assert_eq!(runs.load(Ordering::SeqCst), 20);
}

/// J7: a lease locker hands the helpers its leases: a fence that grows from
/// run to run, and a TTL renewed while `without_overlap`'s job runs.
pub(super) fn j7_helpers_use_leases<L: Locker<String>>(f: &Fixture<L>) {
    assert!(
        f.locker().lease_locker().is_some(),
        "a locker that implements RawLeaseLocker must return itself from Locker::lease_locker"
    );
    let first = with_unique(f.locker(), "job", None, |lease| lease.fence()).unwrap();
    let second = with_unique(f.locker(), "job", None, |lease| lease.fence()).unwrap();
    let (Outcome::Ran(Some(first)), Outcome::Ran(Some(second))) = (first, second) else {
        panic!("every run of a lease locker has a fence");
    };
    assert!(second > first, "fences grow: {first} then {second}");

    let ttl = Duration::from_millis(300);
    let options = OverlapOptions::new().ttl(ttl);
    let renewed = without_overlap(f.locker(), "long", options, |lease| {
        // Twice half a TTL on the locker's clock, each time waiting for the
        // keep-alive to move the expiry: past the first expiry, only
        // renewals keep the lock.
        for _ in 0..2 {
            let before = lease.expires_at().expect("a TTL");
            f.advance(ttl / 2);
            let deadline = Instant::now() + 30 * SEC;
            while lease.expires_at() == Some(before) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
        }
        lease.check().unwrap()
    });
    assert_eq!(
        renewed.unwrap(),
        Outcome::Ran(true),
        "renewed while the job ran"
    );
}
