//! The contract of `docs/semantics.md`, one test per row, run against every
//! locker. Each test names its row; time moves only through a `ManualClock`.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hostlock::{
    CleanableLocker, Clock, Error, FileLocker, InspectableLocker, LockState, LockValue,
    MAX_KEY_LEN, ManualClock, MemoryLocker, RenewableLocker, latest_expiry,
};

/// What every locker under test implements.
trait Subject:
    CleanableLocker<String> + RenewableLocker<String> + InspectableLocker<String> + Send + Sync
{
}
impl<L> Subject for L where
    L: CleanableLocker<String> + RenewableLocker<String> + InspectableLocker<String> + Send + Sync
{
}

/// A locker under test, its clock, and whatever must outlive it.
struct Fixture<L> {
    locker: L,
    clock: ManualClock,
    _dir: Option<tempfile::TempDir>,
}

const SEC: Duration = Duration::from_secs(1);

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn memory() -> Fixture<MemoryLocker<String>> {
    let clock = ManualClock::new(start());
    Fixture {
        locker: MemoryLocker::with_clock(clock.clone()),
        clock,
        _dir: None,
    }
}

fn file() -> Fixture<FileLocker<String>> {
    let clock = ManualClock::new(start());
    let dir = tempfile::tempdir().expect("temp dir");
    let locker = FileLocker::builder(dir.path().join("locks.redb"))
        .clock(clock.clone())
        .background_cleanup(false)
        .open()
        .expect("open a new lock file");
    Fixture {
        locker,
        clock,
        _dir: Some(dir),
    }
}

fn lock(value: &str) -> LockValue<String> {
    LockValue::new(value.to_owned())
}

/// A lock expiring `secs` seconds after the clock's current time.
fn lease(f: &Fixture<impl Subject>, value: &str, secs: u64) -> LockValue<String> {
    lock(value).expiring_at(f.clock.now() + Duration::from_secs(secs))
}

/// Whether an entry (live or expired) is still stored under `key`: moves the
/// clock back to the start, where every stored lock is live again, and looks.
fn stored(f: &Fixture<impl Subject>, key: &str) -> Option<LockValue<String>> {
    let now = f.clock.now();
    f.clock.set(start() - SEC);
    let found = f.locker.get(key).expect("get");
    f.clock.set(now);
    found
}

fn is_invalid(result: hostlock::Result<impl std::fmt::Debug>) -> bool {
    matches!(result, Err(Error::InvalidArgument { .. }))
}

// ---- rows -------------------------------------------------------------

/// L1: a lock whose expiry equals now is live; one nanosecond later it is expired.
fn l1_live_until_expiry_inclusive(f: Fixture<impl Subject>) {
    let at = f.clock.now() + SEC;
    assert!(f.locker.acquire("k", lock("v").expiring_at(at)).unwrap());
    f.clock.set(at);
    assert!(f.locker.exists("k").unwrap());
    f.clock.set(at + Duration::from_nanos(1));
    assert!(!f.locker.exists("k").unwrap());
}

/// X1: exists on a free key.
fn x1_exists_free(f: Fixture<impl Subject>) {
    assert!(!f.locker.exists("k").unwrap());
}

/// X2: exists on a held key.
fn x2_exists_held(f: Fixture<impl Subject>) {
    assert!(f.locker.acquire("k", lease(&f, "v", 10)).unwrap());
    assert!(f.locker.exists("k").unwrap());
    assert!(f.locker.acquire("forever", lock("v")).unwrap());
    assert!(f.locker.exists("forever").unwrap());
}

/// X3: exists on an expired entry.
fn x3_exists_expired(f: Fixture<impl Subject>) {
    assert!(f.locker.acquire("k", lease(&f, "v", 10)).unwrap());
    f.clock.advance(11 * SEC);
    assert!(!f.locker.exists("k").unwrap());
    assert!(stored(&f, "k").is_some(), "still stored, but not live");
}

/// G1: get on a free key.
fn g1_get_free(f: Fixture<impl Subject>) {
    assert_eq!(f.locker.get("k").unwrap(), None);
}

/// G2: get returns a live lock exactly as acquired.
fn g2_get_held(f: Fixture<impl Subject>) {
    let at = f.clock.now() + Duration::new(10, 123_456_789);
    let original = lock("ünïcode value").expiring_at(at).with_token("tok");
    assert!(f.locker.acquire("k", original.clone()).unwrap());
    assert_eq!(f.locker.get("k").unwrap(), Some(original));
    assert!(f.locker.acquire("forever", lock("x")).unwrap());
    assert_eq!(f.locker.get("forever").unwrap(), Some(lock("x")));
}

/// G3: get on an expired entry.
fn g3_get_expired(f: Fixture<impl Subject>) {
    assert!(f.locker.acquire("k", lease(&f, "v", 10)).unwrap());
    f.clock.advance(11 * SEC);
    assert_eq!(f.locker.get("k").unwrap(), None);
}

/// A1: acquire on a free key takes it.
fn a1_acquire_free(f: Fixture<impl Subject>) {
    assert!(f.locker.acquire("k", lease(&f, "a", 10)).unwrap());
    assert_eq!(f.locker.get("k").unwrap().unwrap().value, "a");
}

/// A2: acquire on a live lock is refused and changes nothing.
fn a2_acquire_held(f: Fixture<impl Subject>) {
    let first = lease(&f, "a", 10).with_token("t1");
    assert!(f.locker.acquire("k", first.clone()).unwrap());
    assert!(!f.locker.acquire("k", lease(&f, "b", 100)).unwrap());
    assert!(!f.locker.acquire("k", lock("c")).unwrap());
    assert_eq!(f.locker.get("k").unwrap(), Some(first));
}

/// A3: acquire over an expired entry replaces it.
fn a3_acquire_over_expired(f: Fixture<impl Subject>) {
    assert!(f.locker.acquire("k", lease(&f, "old", 10)).unwrap());
    f.clock.advance(11 * SEC);
    let new = lease(&f, "new", 10).with_token("t2");
    assert!(f.locker.acquire("k", new.clone()).unwrap());
    assert_eq!(f.locker.get("k").unwrap(), Some(new));
    // The old entry's expiry no longer counts: cleanup finds nothing.
    assert_eq!(f.locker.cleanup().unwrap(), 0);
}

/// A4: an already-expired lock on a free key is granted and leaves the key free.
fn a4_acquire_already_expired_free(f: Fixture<impl Subject>) {
    let past = lock("v").expiring_at(f.clock.now() - SEC);
    assert!(f.locker.acquire("k", past.clone()).unwrap());
    assert!(!f.locker.exists("k").unwrap());
    assert_eq!(stored(&f, "k"), None);
    // Over an expired entry, the entry is replaced and the key left free.
    assert!(f.locker.acquire("k", lease(&f, "old", 1)).unwrap());
    f.clock.advance(2 * SEC);
    assert!(f.locker.acquire("k", past).unwrap());
    assert_eq!(stored(&f, "k"), None);
    assert_eq!(f.locker.cleanup().unwrap(), 0);
}

/// A5: an already-expired lock on a held key is refused.
fn a5_acquire_already_expired_held(f: Fixture<impl Subject>) {
    assert!(f.locker.acquire("k", lock("holder")).unwrap());
    let past = lock("v").expiring_at(f.clock.now() - SEC);
    assert!(!f.locker.acquire("k", past).unwrap());
    assert_eq!(f.locker.get("k").unwrap().unwrap().value, "holder");
}

/// A6: a lock with no expiry never expires.
fn a6_acquire_no_expiry(f: Fixture<impl Subject>) {
    assert!(f.locker.acquire("k", lock("v")).unwrap());
    f.clock.set(latest_expiry() + SEC);
    assert!(f.locker.exists("k").unwrap());
    assert_eq!(f.locker.cleanup().unwrap(), 0);
}

/// A7: acquire is atomic across threads: of many racing for a key, one wins.
fn a7_acquire_atomic_across_threads(f: Fixture<impl Subject + 'static>) {
    let locker = Arc::new(f.locker);
    for round in 0..5 {
        let key = format!("race-{round}");
        let barrier = Arc::new(Barrier::new(8));
        let winners: usize = (0..8)
            .map(|i| {
                let (locker, barrier, key) = (locker.clone(), barrier.clone(), key.clone());
                thread::spawn(move || {
                    barrier.wait();
                    locker.acquire(&key, lock(&i.to_string())).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum();
        assert_eq!(winners, 1, "round {round}");
    }
}

/// R1: release of a live lock.
fn r1_release_held(f: Fixture<impl Subject>) {
    assert!(f.locker.acquire("k", lock("v").with_token("t")).unwrap());
    assert!(f.locker.release("k").unwrap());
    assert!(!f.locker.exists("k").unwrap());
}

/// R2: release of an expired entry removes it but reports no live lock.
fn r2_release_expired(f: Fixture<impl Subject>) {
    assert!(f.locker.acquire("k", lease(&f, "v", 10)).unwrap());
    f.clock.advance(11 * SEC);
    assert!(!f.locker.release("k").unwrap());
    assert_eq!(stored(&f, "k"), None, "the expired entry is removed");
}

/// R3: release of a free key.
fn r3_release_free(f: Fixture<impl Subject>) {
    assert!(!f.locker.release("k").unwrap());
    assert!(!f.locker.exists("k").unwrap());
}

/// F1: force_release of a live lock.
fn f1_force_release_held(f: Fixture<impl Subject>) {
    assert!(f.locker.acquire("k", lock("v").with_token("t")).unwrap());
    f.locker.force_release("k").unwrap();
    assert!(!f.locker.exists("k").unwrap());
}

/// F2: force_release of an expired entry removes it.
fn f2_force_release_expired(f: Fixture<impl Subject>) {
    assert!(f.locker.acquire("k", lease(&f, "v", 10)).unwrap());
    f.clock.advance(11 * SEC);
    f.locker.force_release("k").unwrap();
    assert_eq!(stored(&f, "k"), None);
}

/// F3: force_release of a free key succeeds.
fn f3_force_release_free(f: Fixture<impl Subject>) {
    f.locker.force_release("k").unwrap();
    assert!(!f.locker.exists("k").unwrap());
}

/// C1: cleanup removes exactly the expired entries and counts them.
fn c1_cleanup_expired(f: Fixture<impl Subject>) {
    for i in 0..5 {
        assert!(
            f.locker
                .acquire(&format!("short{i}"), lease(&f, "s", 10 + i))
                .unwrap()
        );
    }
    assert!(f.locker.acquire("long", lease(&f, "l", 100)).unwrap());
    assert!(f.locker.acquire("forever", lock("f")).unwrap());
    // Expiries are now+10..=now+14; at now+12 the lock expiring at now+12 is live.
    f.clock.advance(12 * SEC);
    assert_eq!(f.locker.cleanup().unwrap(), 2);
    f.clock.advance(10 * SEC);
    assert_eq!(f.locker.cleanup().unwrap(), 3);
    for i in 0..5 {
        assert_eq!(stored(&f, &format!("short{i}")), None);
    }
    assert!(f.locker.exists("long").unwrap());
    assert!(f.locker.exists("forever").unwrap());
}

/// C2: cleanup with nothing expired removes nothing.
fn c2_cleanup_nothing_expired(f: Fixture<impl Subject>) {
    assert_eq!(f.locker.cleanup().unwrap(), 0);
    assert!(f.locker.acquire("long", lease(&f, "l", 100)).unwrap());
    assert!(f.locker.acquire("forever", lock("f")).unwrap());
    assert_eq!(f.locker.cleanup().unwrap(), 0);
    f.clock.advance(100 * SEC);
    assert_eq!(
        f.locker.cleanup().unwrap(),
        0,
        "expiring exactly now is live"
    );
    assert!(f.locker.exists("long").unwrap());
    assert!(f.locker.exists("forever").unwrap());
}

/// T1: touch by the owner of a live lock moves its expiry and nothing else.
fn t1_touch_owner(f: Fixture<impl Subject>) {
    assert!(
        f.locker
            .acquire("k", lease(&f, "v", 10).with_token("t"))
            .unwrap()
    );
    let later = f.clock.now() + 60 * SEC;
    assert!(f.locker.touch("k", "t", later).unwrap());
    assert_eq!(
        f.locker.get("k").unwrap(),
        Some(lock("v").expiring_at(later).with_token("t"))
    );
    f.clock.advance(30 * SEC);
    assert!(f.locker.exists("k").unwrap(), "the new expiry counts");
    // A touch may also shorten the lease, as long as it stays in the future.
    let sooner = f.clock.now() + SEC;
    assert!(f.locker.touch("k", "t", sooner).unwrap());
    f.clock.advance(2 * SEC);
    assert!(!f.locker.exists("k").unwrap());
    assert_eq!(
        f.locker.cleanup().unwrap(),
        1,
        "the index follows the touch"
    );
}

/// T1b: touch may give an expiring lock the latest storable expiry, and a
/// never-expiring owned lock an expiry.
fn t1b_touch_sets_expiry(f: Fixture<impl Subject>) {
    assert!(f.locker.acquire("k", lock("v").with_token("t")).unwrap());
    let at = f.clock.now() + 5 * SEC;
    assert!(f.locker.touch("k", "t", at).unwrap());
    assert_eq!(f.locker.get("k").unwrap().unwrap().expires_at, Some(at));
    assert!(f.locker.touch("k", "t", latest_expiry()).unwrap());
    assert_eq!(
        f.locker.get("k").unwrap().unwrap().expires_at,
        Some(latest_expiry())
    );
}

/// An owned lease on "k" for the T and O rows.
fn owned(f: &Fixture<impl Subject>) -> LockValue<String> {
    let lock = lease(f, "v", 10).with_token("t");
    assert!(f.locker.acquire("k", lock.clone()).unwrap());
    lock
}

/// T2: touch with another token changes nothing.
fn t2_touch_other_token(f: Fixture<impl Subject>) {
    let lock = owned(&f);
    assert!(
        !f.locker
            .touch("k", "other", f.clock.now() + 60 * SEC)
            .unwrap()
    );
    assert_eq!(f.locker.get("k").unwrap(), Some(lock));
}

/// T3: a lock without a token never matches.
fn t3_touch_no_token(f: Fixture<impl Subject>) {
    let anon = lease(&f, "v", 10);
    assert!(f.locker.acquire("k", anon.clone()).unwrap());
    assert!(!f.locker.touch("k", "t", f.clock.now() + 60 * SEC).unwrap());
    assert_eq!(f.locker.get("k").unwrap(), Some(anon));
}

/// T4: an expired lock stays expired.
fn t4_touch_expired(f: Fixture<impl Subject>) {
    owned(&f);
    f.clock.advance(11 * SEC);
    assert!(!f.locker.touch("k", "t", f.clock.now() + 60 * SEC).unwrap());
    assert!(!f.locker.exists("k").unwrap());
}

/// T5: touch of a free key.
fn t5_touch_free(f: Fixture<impl Subject>) {
    assert!(!f.locker.touch("k", "t", f.clock.now() + 60 * SEC).unwrap());
    assert!(!f.locker.exists("k").unwrap());
}

/// T6: an expiry that is not after now changes nothing.
fn t6_touch_not_in_future(f: Fixture<impl Subject>) {
    let lock = owned(&f);
    assert!(!f.locker.touch("k", "t", f.clock.now()).unwrap());
    assert!(!f.locker.touch("k", "t", f.clock.now() - SEC).unwrap());
    assert_eq!(f.locker.get("k").unwrap(), Some(lock));
}

/// O1: the owner releases its live lock.
fn o1_release_if_owner_held(f: Fixture<impl Subject>) {
    owned(&f);
    assert!(f.locker.release_if_owner("k", "t").unwrap());
    assert!(!f.locker.exists("k").unwrap());
}

/// O2: an expired lease with that token is removed, but reported lost.
fn o2_release_if_owner_expired(f: Fixture<impl Subject>) {
    owned(&f);
    f.clock.advance(11 * SEC);
    assert!(!f.locker.release_if_owner("k", "t").unwrap());
    assert_eq!(stored(&f, "k"), None);
}

/// O3: another token changes nothing.
fn o3_release_if_owner_other_token(f: Fixture<impl Subject>) {
    let lock = owned(&f);
    assert!(!f.locker.release_if_owner("k", "other").unwrap());
    assert_eq!(f.locker.get("k").unwrap(), Some(lock));
}

/// O4: a lock without a token is never released by owner.
fn o4_release_if_owner_no_token(f: Fixture<impl Subject>) {
    assert!(f.locker.acquire("k", lease(&f, "v", 10)).unwrap());
    assert!(!f.locker.release_if_owner("k", "t").unwrap());
    assert!(f.locker.exists("k").unwrap());
}

/// O5: a free key.
fn o5_release_if_owner_free(f: Fixture<impl Subject>) {
    assert!(!f.locker.release_if_owner("k", "t").unwrap());
}

/// O6: an expired entry with another token is left for cleanup.
fn o6_release_if_owner_expired_other(f: Fixture<impl Subject>) {
    owned(&f);
    f.clock.advance(11 * SEC);
    assert!(!f.locker.release_if_owner("k", "other").unwrap());
    assert!(stored(&f, "k").is_some());
    assert_eq!(f.locker.cleanup().unwrap(), 1);
}

fn every_operation_is_invalid(f: &Fixture<impl Subject>, key: &str) {
    assert!(is_invalid(f.locker.exists(key)));
    assert!(is_invalid(f.locker.get(key)));
    assert!(is_invalid(f.locker.acquire(key, lock("v"))));
    assert!(is_invalid(f.locker.release(key)));
    assert!(is_invalid(f.locker.force_release(key)));
    assert!(is_invalid(f.locker.touch(key, "t", f.clock.now() + SEC)));
    assert!(is_invalid(f.locker.release_if_owner(key, "t")));
}

/// V1: the empty key is invalid for every operation.
fn v1_empty_key(f: Fixture<impl Subject>) {
    every_operation_is_invalid(&f, "");
}

/// V2: a key over the limit is invalid; one of exactly the limit, or with
/// any characters, is fine.
fn v2_key_length(f: Fixture<impl Subject>) {
    every_operation_is_invalid(&f, &"k".repeat(MAX_KEY_LEN + 1));
    let longest = "k".repeat(MAX_KEY_LEN);
    assert!(f.locker.acquire(&longest, lock("v")).unwrap());
    assert!(f.locker.exists(&longest).unwrap());
    assert!(
        f.locker
            .acquire("ünï/code key\0with nul", lock("v"))
            .unwrap()
    );
    assert!(f.locker.exists("ünï/code key\0with nul").unwrap());
}

/// V3: an empty token is invalid wherever a token is given.
fn v3_empty_token(f: Fixture<impl Subject>) {
    assert!(is_invalid(f.locker.acquire("k", lock("v").with_token(""))));
    assert!(!f.locker.exists("k").unwrap());
    assert!(is_invalid(f.locker.touch("k", "", f.clock.now() + SEC)));
    assert!(is_invalid(f.locker.release_if_owner("k", "")));
    let long = "t".repeat(hostlock::MAX_TOKEN_LEN + 1);
    assert!(is_invalid(
        f.locker.acquire("k", lock("v").with_token(&long))
    ));
    assert!(!f.locker.exists("k").unwrap());
}

/// V4: an expiry outside the storable range is invalid.
fn v4_expiry_range(f: Fixture<impl Subject>) {
    let before_epoch = UNIX_EPOCH - SEC;
    let too_late = latest_expiry() + SEC;
    for at in [before_epoch, too_late] {
        assert!(is_invalid(f.locker.acquire("k", lock("v").expiring_at(at))));
    }
    assert!(!f.locker.exists("k").unwrap());
    assert!(f.locker.acquire("k", lock("v").with_token("t")).unwrap());
    assert!(is_invalid(f.locker.touch("k", "t", too_late)));
    // A TTL past the storable range is capped, not refused.
    assert!(
        f.locker
            .acquire("far", lock("v").with_ttl(Duration::MAX))
            .unwrap()
    );
    assert_eq!(
        f.locker.get("far").unwrap().unwrap().expires_at,
        Some(latest_expiry())
    );
}

/// N1: every acquire gets a fence greater than every fence before it for the
/// key, across releases, expiry, cleanup and force_release; a refused acquire
/// and a touch change no fence.
fn n1_fences_increase(f: Fixture<impl Subject>) {
    let fence = |key: &str| f.locker.info(key).unwrap().expect("held").fence;
    let mut last = 0;
    let next = |label: &str, last: &mut u64| {
        let now = fence("k");
        assert!(now > *last, "{label}: fence {now} after {last}");
        *last = now;
    };
    assert!(
        f.locker
            .acquire("k", lease(&f, "v", 10).with_token("t"))
            .unwrap()
    );
    next("first acquire", &mut last);
    assert!(!f.locker.acquire("k", lock("w")).unwrap());
    assert!(f.locker.touch("k", "t", f.clock.now() + 20 * SEC).unwrap());
    assert_eq!(fence("k"), last, "refused acquire and touch keep the fence");
    assert!(f.locker.release("k").unwrap());
    assert!(f.locker.acquire("k", lease(&f, "v", 10)).unwrap());
    next("after release", &mut last);
    f.clock.advance(11 * SEC);
    assert!(f.locker.acquire("k", lease(&f, "v", 10)).unwrap());
    next("over an expired entry", &mut last);
    f.clock.advance(11 * SEC);
    assert_eq!(f.locker.cleanup().unwrap(), 1);
    assert!(f.locker.acquire("other", lock("o")).unwrap());
    assert!(f.locker.acquire("k", lock("v")).unwrap());
    next("after cleanup and another key", &mut last);
    f.locker.force_release("k").unwrap();
    assert!(f.locker.acquire("k", lock("v")).unwrap());
    next("after force_release", &mut last);
}

/// I1: info shows a stored entry, live or expired, and nothing for a free key.
fn i1_info(f: Fixture<impl Subject>) {
    assert_eq!(f.locker.info("k").unwrap(), None);
    let at = f.clock.now() + 10 * SEC;
    let acquired = f.clock.now();
    assert!(
        f.locker
            .acquire("k", lock("v").expiring_at(at).with_token("t"))
            .unwrap()
    );
    let info = f.locker.info("k").unwrap().unwrap();
    assert_eq!(info.key, "k");
    assert_eq!(info.value, "v");
    assert_eq!(info.expires_at, Some(at));
    assert!(info.has_token);
    assert_eq!(info.acquired_at, acquired);
    assert_eq!(info.holder.pid, std::process::id());
    assert_eq!(info.state, LockState::Live);
    f.clock.advance(11 * SEC);
    assert_eq!(
        f.locker.info("k").unwrap().unwrap().state,
        LockState::Expired
    );
    assert!(f.locker.acquire("anon", lock("a")).unwrap());
    let anon = f.locker.info("anon").unwrap().unwrap();
    assert!(!anon.has_token);
    assert_eq!(anon.expires_at, None);
    assert!(is_invalid(f.locker.info("")));
}

/// I2: list shows the live locks by key; with expired entries on request.
fn i2_list(f: Fixture<impl Subject>) {
    assert!(f.locker.list(true).unwrap().is_empty());
    assert!(f.locker.acquire("b", lock("2")).unwrap());
    assert!(f.locker.acquire("a", lease(&f, "1", 10)).unwrap());
    assert!(f.locker.acquire("c", lease(&f, "3", 100)).unwrap());
    f.clock.advance(11 * SEC);
    let keys = |all: Vec<hostlock::LockInfo<String>>| {
        all.into_iter()
            .map(|i| (i.key, i.value))
            .collect::<Vec<_>>()
    };
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        keys(f.locker.list(false).unwrap()),
        [pair("b", "2"), pair("c", "3")]
    );
    assert_eq!(
        keys(f.locker.list(true).unwrap()),
        [pair("a", "1"), pair("b", "2"), pair("c", "3")]
    );
}

/// K1: the clock jumping back makes an expired, not yet removed entry live again;
/// once released or cleaned up it is gone for good.
fn k1_clock_backwards(f: Fixture<impl Subject>) {
    assert!(f.locker.acquire("k", lease(&f, "v", 10)).unwrap());
    f.clock.advance(11 * SEC);
    assert!(!f.locker.exists("k").unwrap());
    f.clock.set(start());
    assert!(f.locker.exists("k").unwrap());
    f.clock.advance(11 * SEC);
    assert_eq!(f.locker.cleanup().unwrap(), 1);
    f.clock.set(start());
    assert!(!f.locker.exists("k").unwrap());
}

macro_rules! conformance {
    ($locker:ident: $($row:ident),* $(,)?) => {
        mod $locker {
            $(
                #[test]
                fn $row() {
                    super::$row(super::$locker());
                }
            )*
        }
    };
}

macro_rules! suite {
    ($($locker:ident),*) => {
        $(
            conformance!($locker:
                l1_live_until_expiry_inclusive, x1_exists_free, x2_exists_held, x3_exists_expired, g1_get_free, g2_get_held, g3_get_expired, a1_acquire_free, a2_acquire_held, a3_acquire_over_expired, a4_acquire_already_expired_free, a5_acquire_already_expired_held, a6_acquire_no_expiry, a7_acquire_atomic_across_threads, r1_release_held, r2_release_expired, r3_release_free, f1_force_release_held, f2_force_release_expired, f3_force_release_free, c1_cleanup_expired, c2_cleanup_nothing_expired, t1_touch_owner, t1b_touch_sets_expiry, t2_touch_other_token, t3_touch_no_token, t4_touch_expired, t5_touch_free, t6_touch_not_in_future, o1_release_if_owner_held, o2_release_if_owner_expired, o3_release_if_owner_other_token, o4_release_if_owner_no_token, o5_release_if_owner_free, o6_release_if_owner_expired_other, v1_empty_key, v2_key_length, v3_empty_token, v4_expiry_range, n1_fences_increase, i1_info, i2_list, k1_clock_backwards,
            );
        )*
    };
}

suite!(memory, file);
