//! One check per row of `docs/semantics.md`, named after its row.
//!
//! Each check gets a fresh locker and the `ManualClock` it reads, and panics
//! on the first thing the locker gets wrong. Time moves only through the clock.

use std::panic;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::{Clock, ManualClock};
use crate::error::{Error, Result};
use crate::info::{LockInfo, LockState};
use crate::locker::Locker;
use crate::value::{LockValue, MAX_KEY_LEN, MAX_TOKEN_LEN, latest_expiry};

use super::jobs::{
    j1_unique_runs_and_releases, j2_unique_skips, j3_unique_ttl_and_panic, j4_unique_window,
    j5_overlap_waits, j6_overlap_excludes, j7_helpers_use_leases,
};
use super::leases::{
    Held, LeaseOps, q1_try_lock_free, q2_try_lock_refused, q3_try_lock_for_waits,
    q4_waiter_past_its_wait, q5_unlock_releases, q6_stale_guard, q7_renew, q8_renew_lost,
    q9_keep_alive_notices, q10_hold_for,
};
use super::report::Row;

/// The trait a check needs beyond [`Locker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    Locker,
    Cleanup,
    Renew,
    Inspect,
    Lease,
}

impl Need {
    fn trait_name(self) -> &'static str {
        match self {
            Need::Locker => "Locker",
            Need::Cleanup => "CleanableLocker",
            Need::Renew => "RenewableLocker",
            Need::Inspect => "InspectableLocker",
            Need::Lease => "RawLeaseLocker",
        }
    }
}

/// The operations of the optional traits, as far as the locker under test
/// implements them. Checks that need one are only run when it is there;
/// checks that merely look further with one (`cleanup` after a replacing
/// acquire, say) do so when it is there.
pub(super) struct Caps<L> {
    pub(super) cleanup: Option<CleanupFn<L>>,
    pub(super) touch: Option<TouchFn<L>>,
    pub(super) release_if_owner: Option<ReleaseIfOwnerFn<L>>,
    pub(super) info: Option<InfoFn<L>>,
    pub(super) list: Option<ListFn<L>>,
    pub(super) leases: Option<LeaseOps<L>>,
}

type CleanupFn<L> = fn(&L) -> Result<usize>;
type TouchFn<L> = fn(&L, &str, &str, SystemTime) -> Result<bool>;
type ReleaseIfOwnerFn<L> = fn(&L, &str, &str) -> Result<bool>;
type InfoFn<L> = fn(&L, &str) -> Result<Option<LockInfo<String>>>;
type ListFn<L> = fn(&L, bool) -> Result<Vec<LockInfo<String>>>;

impl<L> Caps<L> {
    pub(super) fn none() -> Caps<L> {
        Caps {
            cleanup: None,
            touch: None,
            release_if_owner: None,
            info: None,
            list: None,
            leases: None,
        }
    }

    pub(super) fn has(&self, need: Need) -> bool {
        match need {
            Need::Locker => true,
            Need::Cleanup => self.cleanup.is_some(),
            Need::Renew => self.touch.is_some() && self.release_if_owner.is_some(),
            Need::Inspect => self.info.is_some() && self.list.is_some(),
            Need::Lease => self.leases.is_some(),
        }
    }

    /// The names of the optional traits present, for `Debug`.
    pub(super) fn names(&self) -> Vec<&'static str> {
        [Need::Cleanup, Need::Renew, Need::Inspect, Need::Lease]
            .into_iter()
            .filter(|&need| self.has(need))
            .map(Need::trait_name)
            .collect()
    }
}

// Function pointers are `Copy` whatever `L` is; a derive would ask `L: Copy`.
impl<L> Clone for Caps<L> {
    fn clone(&self) -> Caps<L> {
        *self
    }
}

impl<L> Copy for Caps<L> {}

/// One check: its row, what it needs, and the code.
pub(super) struct Check<L> {
    pub(super) row: Row,
    pub(super) need: Need,
    pub(super) run: fn(&Fixture<L>),
}

fn check<L>(
    id: &'static str,
    description: &'static str,
    need: Need,
    run: fn(&Fixture<L>),
) -> Check<L> {
    Check {
        row: Row {
            id,
            description,
            needs: need.trait_name(),
        },
        need,
        run,
    }
}

/// Every check, in the order of `docs/semantics.md`: row id, the trait it
/// needs, the check, and what the row says.
pub(super) fn checks<L: Locker<String> + Sync>() -> Vec<Check<L>> {
    macro_rules! table {
        ($($id:literal $need:ident $run:ident $description:literal;)*) => {
            vec![$(check($id, $description, Need::$need, $run)),*]
        };
    }
    table! {
        "L1"   Locker  l1_live_until_expiry_inclusive
            "a lock whose expiry is now is live; a nanosecond later it is expired";
        "X1"   Locker  x1_exists_free
            "exists on a free key is false";
        "X2"   Locker  x2_exists_held
            "exists on a held key is true";
        "X3"   Locker  x3_exists_expired
            "exists on an expired entry is false";
        "G1"   Locker  g1_get_free
            "get on a free key is None";
        "G2"   Locker  g2_get_held
            "get returns a live lock exactly as acquired";
        "G3"   Locker  g3_get_expired
            "get on an expired entry is None";
        "A1"   Locker  a1_acquire_free
            "acquire on a free key takes it";
        "A2"   Locker  a2_acquire_held
            "acquire on a held key is refused and changes nothing";
        "A3"   Locker  a3_acquire_over_expired
            "acquire over an expired entry replaces it";
        "A4"   Locker  a4_acquire_already_expired_free
            "an already expired lock on a free key is granted and leaves the key free";
        "A5"   Locker  a5_acquire_already_expired_held
            "an already expired lock on a held key is refused";
        "A6"   Locker  a6_acquire_no_expiry
            "a lock with no expiry never expires";
        "A7"   Locker  a7_acquire_atomic_across_threads
            "of 8 threads racing to acquire a key, exactly one wins";
        "R1"   Locker  r1_release_held
            "release of a held key frees it and is true";
        "R2"   Locker  r2_release_expired
            "release of an expired entry removes it and is false";
        "R3"   Locker  r3_release_free
            "release of a free key is false";
        "F1"   Locker  f1_force_release_held
            "force_release of a held key frees it";
        "F2"   Locker  f2_force_release_expired
            "force_release of an expired entry removes it";
        "F3"   Locker  f3_force_release_free
            "force_release of a free key succeeds";
        "C1"   Cleanup c1_cleanup_expired
            "cleanup removes exactly the expired entries and counts them";
        "C2"   Cleanup c2_cleanup_nothing_expired
            "cleanup with nothing expired removes nothing";
        "T1"   Renew   t1_touch_owner
            "touch by the owner moves the expiry, later or sooner, and nothing else";
        "T1b"  Renew   t1b_touch_sets_expiry
            "touch gives an owned lock with no expiry one, up to latest_expiry()";
        "T2"   Renew   t2_touch_other_token
            "touch with another token changes nothing";
        "T3"   Renew   t3_touch_no_token
            "touch never matches a lock without a token";
        "T4"   Renew   t4_touch_expired
            "touch leaves an expired lock expired";
        "T5"   Renew   t5_touch_free
            "touch of a free key is false";
        "T6"   Renew   t6_touch_not_in_future
            "touch to an expiry that is not after now changes nothing";
        "O1"   Renew   o1_release_if_owner_held
            "release_if_owner by the owner frees the key";
        "O2"   Renew   o2_release_if_owner_expired
            "release_if_owner of an expired lease with that token removes it and is false";
        "O3"   Renew   o3_release_if_owner_other_token
            "release_if_owner with another token changes nothing";
        "O4"   Renew   o4_release_if_owner_no_token
            "release_if_owner never releases a lock without a token";
        "O5"   Renew   o5_release_if_owner_free
            "release_if_owner of a free key is false";
        "O6"   Renew   o6_release_if_owner_expired_other
            "release_if_owner leaves an expired entry with another token for cleanup";
        "V1"   Locker  v1_empty_key
            "the empty key is invalid for every operation";
        "V2"   Locker  v2_key_length
            "a key over MAX_KEY_LEN bytes is invalid; one of MAX_KEY_LEN bytes is fine";
        "V3"   Locker  v3_empty_token
            "an empty token, or one over MAX_TOKEN_LEN bytes, is invalid";
        "V4"   Locker  v4_expiry_range
            "an expiry before the Unix epoch or after latest_expiry() is invalid";
        "N1"   Inspect n1_fences_increase
            "every acquire that stores a lock gets a greater fence; nothing else does";
        "I1"   Inspect i1_info
            "info shows a stored entry, live or expired, and None for a free key";
        "I2"   Inspect i2_list
            "list shows the live locks by key, and the expired entries on request";
        "K1"   Locker  k1_clock_backwards
            "an expired entry not yet removed is live again when the clock moves back";
        "Q1"   Lease   q1_try_lock_free
            "try_lock takes a free key with a fresh token, a new fence and the TTL; a zero TTL is invalid";
        "Q2"   Lease   q2_try_lock_refused
            "try_lock is refused on a held key and on a free one with waiters";
        "Q3"   Lease   q3_try_lock_for_waits
            "try_lock_for is served once the key is released; a zero wait does not queue";
        "Q4"   Lease   q4_waiter_past_its_wait
            "a waiter still queued past its wait counts as gone";
        "Q5"   Lease   q5_unlock_releases
            "a guard's unlock, or its drop, releases its lock";
        "Q6"   Lease   q6_stale_guard
            "a stale guard releases nothing of the new holder's";
        "Q7"   Lease   q7_renew
            "renew moves the expiry to ttl from now; a zero TTL is invalid";
        "Q8"   Lease   q8_renew_lost
            "renew of a lost lease is false, and lost() says why";
        "Q9"   Lease   q9_keep_alive_notices
            "a keep-alive notices a lock released by someone else";
        "Q10"  Lease   q10_hold_for
            "hold_for keeps the lock past its guard until the hold ends; a zero hold releases";
        "J1"   Locker  j1_unique_runs_and_releases
            "with_unique runs the job holding the key under its own token, and releases it";
        "J2"   Locker  j2_unique_skips
            "with_unique skips a held key; a duplicate leaves the running job's lock alone";
        "J3"   Locker  j3_unique_ttl_and_panic
            "with_unique's TTL is on the locker's clock, not zero; a panicking job releases";
        "J4"   Locker  j4_unique_window
            "with_unique_window holds the key for the window after the job, panic or not";
        "J5"   Locker  j5_overlap_waits
            "without_overlap waits for a release, gives up after its wait, or does not wait";
        "J6"   Locker  j6_overlap_excludes
            "without_overlap never runs two jobs of a key at once (4 threads, 20 runs)";
        "J7"   Lease   j7_helpers_use_leases
            "a lease locker gives the helpers fences and renewed TTLs";
    }
}

// ---- the fixture --------------------------------------------------------

/// A fresh locker, the clock it reads, and the optional operations it has.
pub(super) struct Fixture<L> {
    locker: L,
    clock: ManualClock,
    caps: Caps<L>,
}

const UNDECLARED: &str = "a conformance check used an operation it did not declare";

impl<L> Fixture<L> {
    pub(super) fn new(locker: L, clock: ManualClock, caps: Caps<L>) -> Fixture<L> {
        Fixture {
            locker,
            clock,
            caps,
        }
    }

    fn can_clean(&self) -> bool {
        self.caps.has(Need::Cleanup)
    }

    fn can_renew(&self) -> bool {
        self.caps.has(Need::Renew)
    }

    fn can_inspect(&self) -> bool {
        self.caps.has(Need::Inspect)
    }

    fn cleanup(&self) -> Result<usize> {
        (self.caps.cleanup.expect(UNDECLARED))(&self.locker)
    }

    fn touch(&self, key: &str, token: &str, at: SystemTime) -> Result<bool> {
        (self.caps.touch.expect(UNDECLARED))(&self.locker, key, token, at)
    }

    fn release_if_owner(&self, key: &str, token: &str) -> Result<bool> {
        (self.caps.release_if_owner.expect(UNDECLARED))(&self.locker, key, token)
    }

    fn info(&self, key: &str) -> Result<Option<LockInfo<String>>> {
        (self.caps.info.expect(UNDECLARED))(&self.locker, key)
    }

    fn list(&self, include_expired: bool) -> Result<Vec<LockInfo<String>>> {
        (self.caps.list.expect(UNDECLARED))(&self.locker, include_expired)
    }

    fn leases(&self) -> LeaseOps<L> {
        self.caps.leases.expect(UNDECLARED)
    }

    pub(super) fn locker(&self) -> &L {
        &self.locker
    }

    pub(super) fn now(&self) -> SystemTime {
        self.clock.now()
    }

    pub(super) fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub(super) fn try_lock(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<Option<Box<dyn Held>>> {
        (self.leases().try_lock)(&self.locker, key, value, ttl)
    }

    pub(super) fn try_lock_for(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
        wait: Duration,
    ) -> Result<Option<Box<dyn Held>>> {
        (self.leases().try_lock_for)(&self.locker, key, value, ttl, wait)
    }

    pub(super) fn enqueue(&self, key: &str, wait: Option<Duration>) -> Result<u64> {
        (self.leases().enqueue)(&self.locker, key, wait)
    }

    pub(super) fn dequeue(&self, key: &str, ticket: u64) -> Result<()> {
        (self.leases().dequeue)(&self.locker, key, ticket)
    }

    pub(super) fn waiters(&self, key: &str) -> Result<usize> {
        (self.leases().waiters)(&self.locker, key)
    }
}

const SEC: Duration = Duration::from_secs(1);

/// Where the clock of every check starts: 2023-11-14T22:13:20Z.
pub(super) fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn lock(value: &str) -> LockValue<String> {
    LockValue::new(value.to_owned())
}

/// A lock expiring `secs` seconds after the clock's current time.
fn lease<L>(f: &Fixture<L>, value: &str, secs: u64) -> LockValue<String> {
    lock(value).expiring_at(f.clock.now() + Duration::from_secs(secs))
}

/// Whether an entry (live or expired) is still stored under `key`: moves the
/// clock back to before the start, where every stored lock is live again,
/// and looks.
fn stored<L: Locker<String>>(f: &Fixture<L>, key: &str) -> Option<LockValue<String>> {
    let now = f.clock.now();
    f.clock.set(start() - SEC);
    let found = f.locker.get(key);
    f.clock.set(now);
    found.expect("get")
}

fn is_invalid(result: Result<impl std::fmt::Debug>) -> bool {
    matches!(result, Err(Error::InvalidArgument { .. }))
}

// ---- the rows -----------------------------------------------------------

/// L1: a lock whose expiry equals now is live; one nanosecond later it is expired.
fn l1_live_until_expiry_inclusive<L: Locker<String>>(f: &Fixture<L>) {
    let at = f.clock.now() + SEC;
    assert!(f.locker.acquire("k", lock("v").expiring_at(at)).unwrap());
    f.clock.set(at);
    assert!(
        f.locker.exists("k").unwrap(),
        "a lock expiring exactly now is live"
    );
    f.clock.set(at + Duration::from_nanos(1));
    assert!(
        !f.locker.exists("k").unwrap(),
        "a lock that expired a nanosecond ago is not live"
    );
}

/// X1: exists on a free key.
fn x1_exists_free<L: Locker<String>>(f: &Fixture<L>) {
    assert!(!f.locker.exists("k").unwrap());
}

/// X2: exists on a held key.
fn x2_exists_held<L: Locker<String>>(f: &Fixture<L>) {
    assert!(f.locker.acquire("k", lease(f, "v", 10)).unwrap());
    assert!(f.locker.exists("k").unwrap());
    assert!(f.locker.acquire("forever", lock("v")).unwrap());
    assert!(f.locker.exists("forever").unwrap());
}

/// X3: exists on an expired entry.
fn x3_exists_expired<L: Locker<String>>(f: &Fixture<L>) {
    assert!(f.locker.acquire("k", lease(f, "v", 10)).unwrap());
    f.clock.advance(11 * SEC);
    assert!(!f.locker.exists("k").unwrap());
    assert!(stored(f, "k").is_some(), "still stored, but not live");
}

/// G1: get on a free key.
fn g1_get_free<L: Locker<String>>(f: &Fixture<L>) {
    assert_eq!(f.locker.get("k").unwrap(), None);
}

/// G2: get returns a live lock exactly as acquired.
fn g2_get_held<L: Locker<String>>(f: &Fixture<L>) {
    let at = f.clock.now() + Duration::new(10, 123_456_789);
    let original = lock("ünïcode value").expiring_at(at).with_token("tok");
    assert!(f.locker.acquire("k", original.clone()).unwrap());
    assert_eq!(f.locker.get("k").unwrap(), Some(original));
    assert!(f.locker.acquire("forever", lock("x")).unwrap());
    assert_eq!(f.locker.get("forever").unwrap(), Some(lock("x")));
}

/// G3: get on an expired entry.
fn g3_get_expired<L: Locker<String>>(f: &Fixture<L>) {
    assert!(f.locker.acquire("k", lease(f, "v", 10)).unwrap());
    f.clock.advance(11 * SEC);
    assert_eq!(f.locker.get("k").unwrap(), None);
}

/// A1: acquire on a free key takes it.
fn a1_acquire_free<L: Locker<String>>(f: &Fixture<L>) {
    assert!(f.locker.acquire("k", lease(f, "a", 10)).unwrap());
    assert_eq!(f.locker.get("k").unwrap().expect("held").value, "a");
}

/// A2: acquire on a live lock is refused and changes nothing.
fn a2_acquire_held<L: Locker<String>>(f: &Fixture<L>) {
    let first = lease(f, "a", 10).with_token("t1");
    assert!(f.locker.acquire("k", first.clone()).unwrap());
    assert!(
        !f.locker.acquire("k", lease(f, "b", 100)).unwrap(),
        "a second acquire of a held key must be refused"
    );
    assert!(
        !f.locker.acquire("k", lock("c")).unwrap(),
        "a second acquire of a held key must be refused"
    );
    assert_eq!(f.locker.get("k").unwrap(), Some(first));
}

/// A3: acquire over an expired entry replaces it.
fn a3_acquire_over_expired<L: Locker<String>>(f: &Fixture<L>) {
    assert!(f.locker.acquire("k", lease(f, "old", 10)).unwrap());
    f.clock.advance(11 * SEC);
    let new = lease(f, "new", 10).with_token("t2");
    assert!(f.locker.acquire("k", new.clone()).unwrap());
    assert_eq!(f.locker.get("k").unwrap(), Some(new));
    if f.can_clean() {
        assert_eq!(
            f.cleanup().unwrap(),
            0,
            "the replaced entry's expiry no longer counts"
        );
    }
}

/// A4: an already expired lock on a free key is granted and leaves the key free.
fn a4_acquire_already_expired_free<L: Locker<String>>(f: &Fixture<L>) {
    let past = lock("v").expiring_at(f.clock.now() - SEC);
    assert!(f.locker.acquire("k", past.clone()).unwrap());
    assert!(!f.locker.exists("k").unwrap());
    assert_eq!(stored(f, "k"), None, "an expired lock is not stored");
    // Over an expired entry, the entry is replaced and the key left free.
    assert!(f.locker.acquire("k", lease(f, "old", 1)).unwrap());
    f.clock.advance(2 * SEC);
    assert!(f.locker.acquire("k", past).unwrap());
    assert_eq!(stored(f, "k"), None, "the old entry is removed");
    if f.can_clean() {
        assert_eq!(f.cleanup().unwrap(), 0);
    }
}

/// A5: an already expired lock on a held key is refused.
fn a5_acquire_already_expired_held<L: Locker<String>>(f: &Fixture<L>) {
    assert!(f.locker.acquire("k", lock("holder")).unwrap());
    let past = lock("v").expiring_at(f.clock.now() - SEC);
    assert!(
        !f.locker.acquire("k", past).unwrap(),
        "an acquire of a held key must be refused"
    );
    assert_eq!(f.locker.get("k").unwrap().expect("held").value, "holder");
}

/// A6: a lock with no expiry never expires.
fn a6_acquire_no_expiry<L: Locker<String>>(f: &Fixture<L>) {
    assert!(f.locker.acquire("k", lock("v")).unwrap());
    f.clock.set(latest_expiry() + SEC);
    assert!(f.locker.exists("k").unwrap());
    if f.can_clean() {
        assert_eq!(f.cleanup().unwrap(), 0);
    }
}

/// A7: acquire is atomic across threads: of many racing for a key, one wins.
fn a7_acquire_atomic_across_threads<L: Locker<String> + Sync>(f: &Fixture<L>) {
    const THREADS: usize = 8;
    let locker = &f.locker;
    for round in 0..5 {
        let key = format!("race-{round}");
        let barrier = Barrier::new(THREADS);
        let winners: usize = thread::scope(|scope| {
            let racers: Vec<_> = (0..THREADS)
                .map(|i| {
                    let (key, barrier) = (&key, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        locker.acquire(key, lock(&i.to_string())).unwrap()
                    })
                })
                .collect();
            racers
                .into_iter()
                .map(|racer| match racer.join() {
                    Ok(won) => usize::from(won),
                    Err(payload) => panic::resume_unwind(payload),
                })
                .sum()
        });
        assert_eq!(
            winners, 1,
            "round {round}: {winners} of {THREADS} threads took the key"
        );
    }
}

/// R1: release of a live lock.
fn r1_release_held<L: Locker<String>>(f: &Fixture<L>) {
    assert!(f.locker.acquire("k", lock("v").with_token("t")).unwrap());
    assert!(f.locker.release("k").unwrap());
    assert!(!f.locker.exists("k").unwrap());
}

/// R2: release of an expired entry removes it but reports no live lock.
fn r2_release_expired<L: Locker<String>>(f: &Fixture<L>) {
    assert!(f.locker.acquire("k", lease(f, "v", 10)).unwrap());
    f.clock.advance(11 * SEC);
    assert!(!f.locker.release("k").unwrap());
    assert_eq!(stored(f, "k"), None, "the expired entry is removed");
}

/// R3: release of a free key.
fn r3_release_free<L: Locker<String>>(f: &Fixture<L>) {
    assert!(!f.locker.release("k").unwrap());
    assert!(!f.locker.exists("k").unwrap());
}

/// F1: force_release of a live lock.
fn f1_force_release_held<L: Locker<String>>(f: &Fixture<L>) {
    assert!(f.locker.acquire("k", lock("v").with_token("t")).unwrap());
    f.locker.force_release("k").unwrap();
    assert!(!f.locker.exists("k").unwrap());
}

/// F2: force_release of an expired entry removes it.
fn f2_force_release_expired<L: Locker<String>>(f: &Fixture<L>) {
    assert!(f.locker.acquire("k", lease(f, "v", 10)).unwrap());
    f.clock.advance(11 * SEC);
    f.locker.force_release("k").unwrap();
    assert_eq!(stored(f, "k"), None, "the expired entry is removed");
}

/// F3: force_release of a free key succeeds.
fn f3_force_release_free<L: Locker<String>>(f: &Fixture<L>) {
    f.locker.force_release("k").unwrap();
    assert!(!f.locker.exists("k").unwrap());
}

/// C1: cleanup removes exactly the expired entries and counts them.
fn c1_cleanup_expired<L: Locker<String>>(f: &Fixture<L>) {
    for i in 0..5 {
        let key = format!("short{i}");
        assert!(f.locker.acquire(&key, lease(f, "s", 10 + i)).unwrap());
    }
    assert!(f.locker.acquire("long", lease(f, "l", 100)).unwrap());
    assert!(f.locker.acquire("forever", lock("f")).unwrap());
    // Expiries are now+10..=now+14; at now+12 the lock expiring at now+12 is live.
    f.clock.advance(12 * SEC);
    assert_eq!(f.cleanup().unwrap(), 2, "two of five short locks expired");
    f.clock.advance(10 * SEC);
    assert_eq!(f.cleanup().unwrap(), 3, "the other three expired since");
    for i in 0..5 {
        assert_eq!(stored(f, &format!("short{i}")), None);
    }
    assert!(f.locker.exists("long").unwrap());
    assert!(f.locker.exists("forever").unwrap());
}

/// C2: cleanup with nothing expired removes nothing.
fn c2_cleanup_nothing_expired<L: Locker<String>>(f: &Fixture<L>) {
    assert_eq!(f.cleanup().unwrap(), 0);
    assert!(f.locker.acquire("long", lease(f, "l", 100)).unwrap());
    assert!(f.locker.acquire("forever", lock("f")).unwrap());
    assert_eq!(f.cleanup().unwrap(), 0);
    f.clock.advance(100 * SEC);
    assert_eq!(f.cleanup().unwrap(), 0, "expiring exactly now is live");
    assert!(f.locker.exists("long").unwrap());
    assert!(f.locker.exists("forever").unwrap());
}

/// T1: touch by the owner of a live lock moves its expiry and nothing else.
fn t1_touch_owner<L: Locker<String>>(f: &Fixture<L>) {
    assert!(
        f.locker
            .acquire("k", lease(f, "v", 10).with_token("t"))
            .unwrap()
    );
    let later = f.clock.now() + 60 * SEC;
    assert!(f.touch("k", "t", later).unwrap());
    assert_eq!(
        f.locker.get("k").unwrap(),
        Some(lock("v").expiring_at(later).with_token("t"))
    );
    f.clock.advance(30 * SEC);
    assert!(f.locker.exists("k").unwrap(), "the new expiry counts");
    // A touch may also shorten the lease, as long as it stays in the future.
    let sooner = f.clock.now() + SEC;
    assert!(f.touch("k", "t", sooner).unwrap());
    f.clock.advance(2 * SEC);
    assert!(!f.locker.exists("k").unwrap(), "the shorter expiry counts");
    if f.can_clean() {
        assert_eq!(f.cleanup().unwrap(), 1, "cleanup follows the touch");
    }
}

/// T1b: touch may give an expiring lock the latest storable expiry, and a
/// never-expiring owned lock an expiry.
fn t1b_touch_sets_expiry<L: Locker<String>>(f: &Fixture<L>) {
    assert!(f.locker.acquire("k", lock("v").with_token("t")).unwrap());
    let at = f.clock.now() + 5 * SEC;
    assert!(f.touch("k", "t", at).unwrap());
    assert_eq!(
        f.locker.get("k").unwrap().expect("held").expires_at,
        Some(at)
    );
    assert!(f.touch("k", "t", latest_expiry()).unwrap());
    assert_eq!(
        f.locker.get("k").unwrap().expect("held").expires_at,
        Some(latest_expiry())
    );
}

/// An owned lease on "k" for the T and O rows.
fn owned<L: Locker<String>>(f: &Fixture<L>) -> LockValue<String> {
    let lock = lease(f, "v", 10).with_token("t");
    assert!(f.locker.acquire("k", lock.clone()).unwrap());
    lock
}

/// T2: touch with another token changes nothing.
fn t2_touch_other_token<L: Locker<String>>(f: &Fixture<L>) {
    let lock = owned(f);
    assert!(
        !f.touch("k", "other", f.clock.now() + 60 * SEC).unwrap(),
        "touch with another token must be refused"
    );
    assert_eq!(f.locker.get("k").unwrap(), Some(lock));
}

/// T3: a lock without a token never matches.
fn t3_touch_no_token<L: Locker<String>>(f: &Fixture<L>) {
    let anon = lease(f, "v", 10);
    assert!(f.locker.acquire("k", anon.clone()).unwrap());
    assert!(
        !f.touch("k", "t", f.clock.now() + 60 * SEC).unwrap(),
        "touch of a lock without a token must be refused"
    );
    assert_eq!(f.locker.get("k").unwrap(), Some(anon));
}

/// T4: an expired lock stays expired.
fn t4_touch_expired<L: Locker<String>>(f: &Fixture<L>) {
    owned(f);
    f.clock.advance(11 * SEC);
    assert!(
        !f.touch("k", "t", f.clock.now() + 60 * SEC).unwrap(),
        "touch of an expired lock must be refused"
    );
    assert!(!f.locker.exists("k").unwrap());
}

/// T5: touch of a free key.
fn t5_touch_free<L: Locker<String>>(f: &Fixture<L>) {
    assert!(!f.touch("k", "t", f.clock.now() + 60 * SEC).unwrap());
    assert!(!f.locker.exists("k").unwrap());
}

/// T6: an expiry that is not after now changes nothing.
fn t6_touch_not_in_future<L: Locker<String>>(f: &Fixture<L>) {
    let lock = owned(f);
    assert!(
        !f.touch("k", "t", f.clock.now()).unwrap(),
        "touch to now must be refused"
    );
    assert!(
        !f.touch("k", "t", f.clock.now() - SEC).unwrap(),
        "touch to the past must be refused"
    );
    assert_eq!(f.locker.get("k").unwrap(), Some(lock));
}

/// O1: the owner releases its live lock.
fn o1_release_if_owner_held<L: Locker<String>>(f: &Fixture<L>) {
    owned(f);
    assert!(f.release_if_owner("k", "t").unwrap());
    assert!(!f.locker.exists("k").unwrap());
}

/// O2: an expired lease with that token is removed, but reported lost.
fn o2_release_if_owner_expired<L: Locker<String>>(f: &Fixture<L>) {
    owned(f);
    f.clock.advance(11 * SEC);
    assert!(
        !f.release_if_owner("k", "t").unwrap(),
        "an expired lease is reported lost"
    );
    assert_eq!(stored(f, "k"), None, "the expired entry is removed");
}

/// O3: another token changes nothing.
fn o3_release_if_owner_other_token<L: Locker<String>>(f: &Fixture<L>) {
    let lock = owned(f);
    assert!(
        !f.release_if_owner("k", "other").unwrap(),
        "release_if_owner with another token must be refused"
    );
    assert_eq!(f.locker.get("k").unwrap(), Some(lock));
}

/// O4: a lock without a token is never released by owner.
fn o4_release_if_owner_no_token<L: Locker<String>>(f: &Fixture<L>) {
    assert!(f.locker.acquire("k", lease(f, "v", 10)).unwrap());
    assert!(
        !f.release_if_owner("k", "t").unwrap(),
        "release_if_owner of a lock without a token must be refused"
    );
    assert!(f.locker.exists("k").unwrap());
}

/// O5: a free key.
fn o5_release_if_owner_free<L: Locker<String>>(f: &Fixture<L>) {
    assert!(!f.release_if_owner("k", "t").unwrap());
}

/// O6: an expired entry with another token is left for cleanup.
fn o6_release_if_owner_expired_other<L: Locker<String>>(f: &Fixture<L>) {
    owned(f);
    f.clock.advance(11 * SEC);
    assert!(!f.release_if_owner("k", "other").unwrap());
    assert!(
        stored(f, "k").is_some(),
        "an expired entry with another token is left alone"
    );
    if f.can_clean() {
        assert_eq!(f.cleanup().unwrap(), 1);
    }
}

/// Every operation the locker has refuses `key` as invalid.
fn every_operation_is_invalid<L: Locker<String>>(f: &Fixture<L>, key: &str) {
    assert!(is_invalid(f.locker.exists(key)), "exists");
    assert!(is_invalid(f.locker.get(key)), "get");
    assert!(is_invalid(f.locker.acquire(key, lock("v"))), "acquire");
    assert!(is_invalid(f.locker.release(key)), "release");
    assert!(is_invalid(f.locker.force_release(key)), "force_release");
    if f.can_renew() {
        assert!(is_invalid(f.touch(key, "t", f.clock.now() + SEC)), "touch");
        assert!(is_invalid(f.release_if_owner(key, "t")), "release_if_owner");
    }
    if f.can_inspect() {
        assert!(is_invalid(f.info(key)), "info");
    }
}

/// V1: the empty key is invalid for every operation.
fn v1_empty_key<L: Locker<String>>(f: &Fixture<L>) {
    every_operation_is_invalid(f, "");
}

/// V2: a key over the limit is invalid; one of exactly the limit, or with
/// any characters, is fine.
fn v2_key_length<L: Locker<String>>(f: &Fixture<L>) {
    every_operation_is_invalid(f, &"k".repeat(MAX_KEY_LEN + 1));
    let longest = "k".repeat(MAX_KEY_LEN);
    assert!(f.locker.acquire(&longest, lock("v")).unwrap());
    assert!(f.locker.exists(&longest).unwrap());
    let odd = "ünï/code key\0with nul";
    assert!(f.locker.acquire(odd, lock("v")).unwrap());
    assert!(f.locker.exists(odd).unwrap());
}

/// V3: an empty token, or one over the limit, is invalid wherever a token is given.
fn v3_empty_token<L: Locker<String>>(f: &Fixture<L>) {
    let long = "t".repeat(MAX_TOKEN_LEN + 1);
    for token in ["", &long] {
        assert!(
            is_invalid(f.locker.acquire("k", lock("v").with_token(token))),
            "acquire with a token of {} bytes",
            token.len()
        );
        assert!(!f.locker.exists("k").unwrap());
        if f.can_renew() {
            let at = f.clock.now() + SEC;
            assert!(
                is_invalid(f.touch("k", token, at)),
                "touch with a token of {} bytes",
                token.len()
            );
            assert!(
                is_invalid(f.release_if_owner("k", token)),
                "release_if_owner with a token of {} bytes",
                token.len()
            );
        }
    }
}

/// V4: an expiry outside the storable range is invalid.
fn v4_expiry_range<L: Locker<String>>(f: &Fixture<L>) {
    let before_epoch = UNIX_EPOCH - SEC;
    let too_late = latest_expiry() + SEC;
    for at in [before_epoch, too_late] {
        assert!(
            is_invalid(f.locker.acquire("k", lock("v").expiring_at(at))),
            "acquire expiring at {at:?}"
        );
    }
    assert!(!f.locker.exists("k").unwrap());
    if f.can_renew() {
        assert!(f.locker.acquire("k", lock("v").with_token("t")).unwrap());
        assert!(
            is_invalid(f.touch("k", "t", too_late)),
            "touch to {too_late:?}"
        );
    }
    // A TTL past the storable range is capped, not refused.
    assert!(
        f.locker
            .acquire("far", lock("v").with_ttl(Duration::MAX))
            .unwrap()
    );
    assert_eq!(
        f.locker.get("far").unwrap().expect("held").expires_at,
        Some(latest_expiry())
    );
}

/// N1: every acquire that stores a lock gets a fence greater than every fence
/// before it, for any key, across releases, expiry, cleanup and
/// force_release; a refused acquire and a touch change no fence.
fn n1_fences_increase<L: Locker<String>>(f: &Fixture<L>) {
    let fence = |key: &str| f.info(key).unwrap().expect("held").fence;
    let mut last = 0;
    let mut next = |key: &str, after: &str| {
        let now = fence(key);
        assert!(now > last, "{after}: fence {now} after {last}");
        last = now;
    };
    assert!(
        f.locker
            .acquire("k", lease(f, "v", 10).with_token("t"))
            .unwrap()
    );
    next("k", "first acquire");
    let first = fence("k");
    assert!(
        !f.locker.acquire("k", lock("w")).unwrap(),
        "an acquire of a held key must be refused"
    );
    assert_eq!(fence("k"), first, "a refused acquire keeps the fence");
    if f.can_renew() {
        assert!(f.touch("k", "t", f.clock.now() + 20 * SEC).unwrap());
        assert_eq!(fence("k"), first, "a touch keeps the fence");
    }
    assert!(f.locker.release("k").unwrap());
    assert!(f.locker.acquire("k", lease(f, "v", 10)).unwrap());
    next("k", "after release");
    f.clock.advance(11 * SEC);
    assert!(f.locker.acquire("k", lease(f, "v", 10)).unwrap());
    next("k", "over an expired entry");
    f.clock.advance(11 * SEC);
    if f.can_clean() {
        assert_eq!(f.cleanup().unwrap(), 1);
    } else {
        f.locker.force_release("k").unwrap();
    }
    assert!(f.locker.acquire("other", lock("o")).unwrap());
    next("other", "another key");
    assert!(f.locker.acquire("k", lock("v")).unwrap());
    next("k", "after cleanup and another key");
    f.locker.force_release("k").unwrap();
    assert!(f.locker.acquire("k", lock("v")).unwrap());
    next("k", "after force_release");
}

/// I1: info shows a stored entry, live or expired, and nothing for a free key.
fn i1_info<L: Locker<String>>(f: &Fixture<L>) {
    assert_eq!(f.info("k").unwrap(), None);
    let at = f.clock.now() + 10 * SEC;
    let acquired = f.clock.now();
    assert!(
        f.locker
            .acquire("k", lock("v").expiring_at(at).with_token("t"))
            .unwrap()
    );
    let info = f.info("k").unwrap().expect("held");
    assert_eq!(info.key, "k");
    assert_eq!(info.value, "v");
    assert_eq!(info.expires_at, Some(at));
    assert!(info.has_token);
    assert_eq!(info.acquired_at, acquired);
    assert_eq!(info.holder.pid, std::process::id());
    assert_eq!(info.state, LockState::Live);
    f.clock.advance(11 * SEC);
    let expired = f.info("k").unwrap().expect("an expired entry is shown");
    assert_eq!(expired.state, LockState::Expired);
    assert!(f.locker.acquire("anon", lock("a")).unwrap());
    let anon = f.info("anon").unwrap().expect("held");
    assert!(!anon.has_token);
    assert_eq!(anon.expires_at, None);
    assert!(is_invalid(f.info("")));
}

/// I2: list shows the live locks by key; with expired entries on request.
fn i2_list<L: Locker<String>>(f: &Fixture<L>) {
    assert!(f.list(true).unwrap().is_empty());
    assert!(f.locker.acquire("b", lock("2")).unwrap());
    assert!(f.locker.acquire("a", lease(f, "1", 10)).unwrap());
    assert!(f.locker.acquire("c", lease(f, "3", 100)).unwrap());
    f.clock.advance(11 * SEC);
    let pairs = |all: Vec<LockInfo<String>>| {
        all.into_iter()
            .map(|i| (i.key, i.value))
            .collect::<Vec<_>>()
    };
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        pairs(f.list(false).unwrap()),
        [pair("b", "2"), pair("c", "3")]
    );
    assert_eq!(
        pairs(f.list(true).unwrap()),
        [pair("a", "1"), pair("b", "2"), pair("c", "3")]
    );
}

/// K1: the clock jumping back makes an expired, not yet removed entry live again;
/// once released or cleaned up it is gone for good.
fn k1_clock_backwards<L: Locker<String>>(f: &Fixture<L>) {
    assert!(f.locker.acquire("k", lease(f, "v", 10)).unwrap());
    f.clock.advance(11 * SEC);
    assert!(!f.locker.exists("k").unwrap());
    f.clock.set(start());
    assert!(
        f.locker.exists("k").unwrap(),
        "live again once the clock is back before its expiry"
    );
    f.clock.advance(11 * SEC);
    if f.can_clean() {
        assert_eq!(f.cleanup().unwrap(), 1);
    } else {
        assert!(!f.locker.release("k").unwrap());
    }
    f.clock.set(start());
    assert!(
        !f.locker.exists("k").unwrap(),
        "a removed entry does not come back"
    );
}
