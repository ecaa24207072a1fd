//! A locker written outside hostlock, from its public API alone, with no
//! hostlock locker inside: it implements every trait, the lease primitives
//! included, returns the values it reports through their public
//! constructors, and passes every row of the conformance kit, guards and
//! fair waits included. The job helpers run on it.
//!
//! Beside it, a locker of the seed's shape: the five calls of `Locker` and
//! `cleanup`, nothing more. The job helpers drive it too, by polling.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hostlock::conformance::Suite;
use hostlock::{
    CleanableLocker, Clock, Error, Holder, InspectableLocker, Lease, LockInfo, LockState,
    LockValue, Locker, MAX_KEY_LEN, MAX_TOKEN_LEN, ManualClock, Outcome, OverlapOptions,
    RawLeaseLocker, RenewableLocker, Result, latest_expiry, with_unique, without_overlap,
};

/// A lock table in a `BTreeMap`, shared by the clones of a handle.
#[derive(Clone, Debug)]
struct TableLocker {
    shared: Arc<(Mutex<Table>, Condvar)>,
    clock: ManualClock,
}

#[derive(Debug, Default)]
struct Table {
    locks: BTreeMap<String, Stored>,
    last_fence: u64,
    last_ticket: u64,
    // Per key: (ticket, wait limit on the monotonic clock).
    queues: BTreeMap<String, VecDeque<(u64, Option<Instant>)>>,
}

#[derive(Debug, Clone)]
struct Stored {
    lock: LockValue<String>,
    fence: u64,
    acquired: SystemTime,
}

fn invalid(argument: &'static str, reason: &str) -> Error {
    Error::InvalidArgument {
        argument,
        reason: reason.to_owned(),
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(invalid("key", "empty or too long"));
    }
    Ok(())
}

fn check_token(token: &str) -> Result<()> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(invalid("token", "empty or too long"));
    }
    Ok(())
}

fn check_expiry(at: SystemTime) -> Result<()> {
    if at < UNIX_EPOCH || at > latest_expiry() {
        return Err(invalid("expiry", "outside the storable range"));
    }
    Ok(())
}

impl TableLocker {
    fn new(clock: ManualClock) -> TableLocker {
        TableLocker {
            shared: Arc::default(),
            clock,
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.shared.0.lock().unwrap()
    }

    fn released(&self) {
        self.shared.1.notify_all();
    }
}

fn live(stored: &Stored, now: SystemTime) -> bool {
    stored.lock.expires_at.is_none_or(|at| at >= now)
}

impl Table {
    fn live(&self, key: &str, now: SystemTime) -> bool {
        self.locks.get(key).is_some_and(|s| live(s, now))
    }

    fn store(&mut self, key: &str, lock: LockValue<String>, now: SystemTime) -> u64 {
        self.last_fence += 1;
        let stored = Stored {
            lock,
            fence: self.last_fence,
            acquired: now,
        };
        self.locks.insert(key.to_owned(), stored);
        self.last_fence
    }

    /// Whether it is `ticket`'s turn (without one: whether no one waits).
    fn turn(&mut self, key: &str, ticket: Option<u64>) -> bool {
        let Some(queue) = self.queues.get_mut(key) else {
            return true;
        };
        let now = Instant::now();
        queue.retain(|&(t, until)| Some(t) == ticket || until.is_none_or(|u| u > now));
        let first = queue.front().map(|&(t, _)| t);
        if queue.is_empty() {
            self.queues.remove(key);
        }
        first.is_none() || first == ticket
    }

    fn leave(&mut self, key: &str, ticket: u64) {
        if let Some(queue) = self.queues.get_mut(key) {
            queue.retain(|&(t, _)| t != ticket);
            if queue.is_empty() {
                self.queues.remove(key);
            }
        }
    }
}

impl Locker<String> for TableLocker {
    fn exists(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        Ok(self.table().live(key, self.clock.now()))
    }

    fn get(&self, key: &str) -> Result<Option<LockValue<String>>> {
        check_key(key)?;
        let now = self.clock.now();
        let table = self.table();
        Ok(table
            .locks
            .get(key)
            .filter(|s| live(s, now))
            .map(|s| s.lock.clone()))
    }

    fn acquire(&self, key: &str, lock: LockValue<String>) -> Result<bool> {
        check_key(key)?;
        if let Some(token) = &lock.token {
            check_token(token)?;
        }
        if let Some(at) = lock.expires_at {
            check_expiry(at)?;
        }
        let now = self.clock.now();
        let mut table = self.table();
        if table.live(key, now) {
            return Ok(false);
        }
        if lock.expires_at.is_some_and(|at| at < now) {
            table.locks.remove(key);
            return Ok(true);
        }
        table.store(key, lock, now);
        Ok(true)
    }

    fn release(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        let now = self.clock.now();
        let held = self
            .table()
            .locks
            .remove(key)
            .is_some_and(|s| live(&s, now));
        self.released();
        Ok(held)
    }

    fn force_release(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.table().locks.remove(key);
        self.released();
        Ok(())
    }

    fn now(&self) -> SystemTime {
        self.clock.now()
    }

    fn lease_locker(&self) -> Option<Arc<dyn RawLeaseLocker<String> + Send + Sync>> {
        Some(Arc::new(self.clone()))
    }
}

impl CleanableLocker<String> for TableLocker {
    fn cleanup(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut table = self.table();
        let before = table.locks.len();
        table.locks.retain(|_, s| live(s, now));
        Ok(before - table.locks.len())
    }
}

impl RenewableLocker<String> for TableLocker {
    fn touch(&self, key: &str, token: &str, expires_at: SystemTime) -> Result<bool> {
        check_key(key)?;
        check_token(token)?;
        check_expiry(expires_at)?;
        let now = self.clock.now();
        if expires_at <= now {
            return Ok(false);
        }
        let mut table = self.table();
        match table.locks.get_mut(key) {
            Some(s) if live(s, now) && s.lock.token.as_deref() == Some(token) => {
                s.lock.expires_at = Some(expires_at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn release_if_owner(&self, key: &str, token: &str) -> Result<bool> {
        check_key(key)?;
        check_token(token)?;
        let now = self.clock.now();
        let mut table = self.table();
        let owned = table
            .locks
            .get(key)
            .is_some_and(|s| s.lock.token.as_deref() == Some(token));
        if !owned {
            return Ok(false);
        }
        let held = table.locks.remove(key).is_some_and(|s| live(&s, now));
        drop(table);
        self.released();
        Ok(held)
    }
}

impl InspectableLocker<String> for TableLocker {
    fn info(&self, key: &str) -> Result<Option<LockInfo<String>>> {
        check_key(key)?;
        let now = self.clock.now();
        Ok(self.table().locks.get(key).map(|s| info_of(key, s, now)))
    }

    fn list(&self, include_expired: bool) -> Result<Vec<Result<LockInfo<String>>>> {
        let now = self.clock.now();
        Ok(self
            .table()
            .locks
            .iter()
            .filter(|(_, s)| include_expired || live(s, now))
            .map(|(key, s)| Ok(info_of(key, s, now)))
            .collect())
    }
}

fn info_of(key: &str, stored: &Stored, now: SystemTime) -> LockInfo<String> {
    let state = if live(stored, now) {
        LockState::Live
    } else {
        LockState::Expired
    };
    let mut info = LockInfo::new(key.to_owned(), stored.lock.value.clone(), state);
    info.expires_at = stored.lock.expires_at;
    info.has_token = stored.lock.token.is_some();
    info.fence = stored.fence;
    info.acquired_at = stored.acquired;
    info.holder = Holder::new(std::process::id(), None);
    info
}

impl RawLeaseLocker<String> for TableLocker {
    fn acquire_lease(
        &self,
        key: &str,
        value: String,
        ttl: Option<Duration>,
        token: &str,
        ticket: Option<u64>,
    ) -> Result<Option<Lease>> {
        check_key(key)?;
        check_token(token)?;
        let now = self.clock.now();
        let mut table = self.table();
        if table.live(key, now) || !table.turn(key, ticket) {
            return Ok(None);
        }
        if let Some(ticket) = ticket {
            table.leave(key, ticket);
        }
        let expires_at = ttl.map(|ttl| now.checked_add(ttl).unwrap_or(latest_expiry()));
        let lock = LockValue {
            value,
            expires_at,
            token: Some(token.to_owned()),
        };
        let fence = table.store(key, lock, now);
        Ok(Some(Lease::new(fence, expires_at)))
    }

    fn detach(&self, key: &str, token: &str, expires_at: Option<SystemTime>) -> Result<bool> {
        match expires_at {
            Some(at) => self.touch(key, token, at),
            None => {
                check_key(key)?;
                check_token(token)?;
                let now = self.clock.now();
                let mut table = self.table();
                match table.locks.get_mut(key) {
                    Some(s) if live(s, now) && s.lock.token.as_deref() == Some(token) => {
                        s.lock.expires_at = None;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }
        }
    }

    fn enqueue(&self, key: &str, max_wait: Option<Duration>) -> Result<u64> {
        check_key(key)?;
        let mut table = self.table();
        table.last_ticket += 1;
        let ticket = table.last_ticket;
        let until = max_wait.and_then(|wait| Instant::now().checked_add(wait));
        table
            .queues
            .entry(key.to_owned())
            .or_default()
            .push_back((ticket, until));
        Ok(ticket)
    }

    fn dequeue(&self, key: &str, ticket: u64) -> Result<()> {
        check_key(key)?;
        self.table().leave(key, ticket);
        self.released();
        Ok(())
    }

    fn waiters(&self, key: &str) -> Result<usize> {
        check_key(key)?;
        Ok(self.table().queues.get(key).map_or(0, VecDeque::len))
    }

    fn wait_for_release(&self, key: &str, ticket: Option<u64>, timeout: Duration) {
        let mut table = self.table();
        if !table.live(key, self.clock.now()) && table.turn(key, ticket) {
            return;
        }
        // A release wakes the wait; an expiry is looked for every 5 ms.
        let wait = timeout.min(Duration::from_millis(5));
        let _ = self.shared.1.wait_timeout(table, wait).unwrap();
    }
}

#[test]
fn a_locker_of_another_crate_passes_every_row_guards_included() {
    let report = Suite::new()
        .cleanable()
        .renewable()
        .inspectable()
        .leases()
        .run(TableLocker::new);
    report.assert_passed();
    assert_eq!(report.passed().len(), 60);
    assert!(report.skipped().is_empty());
}

#[test]
fn the_job_helpers_run_on_a_locker_of_another_crate() {
    let locker = TableLocker::new(ManualClock::default());
    let outcome = with_unique(&locker, "import", None, |lease| {
        // A duplicate is skipped while the first runs.
        let again = with_unique(&locker, "import", None, |_| ()).unwrap();
        assert_eq!(again, Outcome::Skipped);
        lease.fence()
    })
    .unwrap();
    assert!(matches!(outcome, Outcome::Ran(Some(fence)) if fence > 0));
    assert!(!locker.exists("import").unwrap(), "released after the job");
}

/// A locker of the seed interface's shape: a map of locks behind a mutex,
/// with the five calls of `Locker` and `cleanup`. No tokens checked, no
/// fences, no queue.
#[derive(Clone, Debug)]
struct SeedLocker {
    locks: Arc<Mutex<BTreeMap<String, LockValue<String>>>>,
    clock: ManualClock,
}

impl SeedLocker {
    fn new(clock: ManualClock) -> SeedLocker {
        SeedLocker {
            locks: Arc::default(),
            clock,
        }
    }

    fn locks(&self) -> MutexGuard<'_, BTreeMap<String, LockValue<String>>> {
        self.locks.lock().unwrap()
    }

    /// The live lock under `key`: an expired entry stays stored, as if
    /// there were none, until it is replaced or cleaned up.
    fn live(&self, key: &str) -> Option<LockValue<String>> {
        let now = self.clock.now();
        self.locks()
            .get(key)
            .filter(|lock| !lock.is_expired_at(now))
            .cloned()
    }
}

impl Locker<String> for SeedLocker {
    fn exists(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        Ok(self.live(key).is_some())
    }

    fn get(&self, key: &str) -> Result<Option<LockValue<String>>> {
        check_key(key)?;
        Ok(self.live(key))
    }

    fn acquire(&self, key: &str, lock: LockValue<String>) -> Result<bool> {
        check_key(key)?;
        if let Some(token) = &lock.token {
            check_token(token)?;
        }
        if let Some(at) = lock.expires_at {
            check_expiry(at)?;
        }
        let now = self.clock.now();
        let mut locks = self.locks();
        if locks.get(key).is_some_and(|held| !held.is_expired_at(now)) {
            return Ok(false);
        }
        if lock.is_expired_at(now) {
            locks.remove(key);
        } else {
            locks.insert(key.to_owned(), lock);
        }
        Ok(true)
    }

    fn release(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        let now = self.clock.now();
        Ok(self
            .locks()
            .remove(key)
            .is_some_and(|old| !old.is_expired_at(now)))
    }

    fn force_release(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.locks().remove(key);
        Ok(())
    }

    fn now(&self) -> SystemTime {
        self.clock.now()
    }
}

impl CleanableLocker<String> for SeedLocker {
    fn cleanup(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut locks = self.locks();
        let before = locks.len();
        locks.retain(|_, lock| !lock.is_expired_at(now));
        Ok(before - locks.len())
    }
}

#[test]
fn a_locker_of_the_seed_shape_passes_its_rows_job_helpers_included() {
    let report = Suite::new().cleanable().run(SeedLocker::new);
    report.assert_passed();
    assert_eq!(report.passed().len(), 33);
    let passed: Vec<&str> = report.passed().iter().map(|row| row.id).collect();
    for job_row in ["J1", "J2", "J3", "J4", "J5", "J6"] {
        assert!(passed.contains(&job_row), "{job_row} not run: {report}");
    }
    assert!(
        report.skipped().iter().any(|row| row.id == "J7"),
        "J7 is for lease lockers"
    );
}

#[test]
fn a_plain_locker_gives_its_jobs_no_fence_and_the_helpers_poll() {
    let locker = SeedLocker::new(ManualClock::default());
    assert!(locker.lease_locker().is_none());
    let outcome = with_unique(&locker, "import", None, |lease| {
        assert!(lease.check().unwrap());
        lease.fence()
    });
    assert_eq!(outcome.unwrap(), Outcome::Ran(None));

    // A waiter polls until the holder's release, with no queue to join.
    assert!(
        locker
            .acquire("report", LockValue::new("other".into()))
            .unwrap()
    );
    let waited = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let options = OverlapOptions::new().wait(Duration::from_secs(30));
            without_overlap(&locker, "report", options, |lease| lease.key().to_owned())
        });
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "waits while the key is held");
        locker.release("report").unwrap();
        waiter.join().unwrap()
    });
    assert_eq!(waited.unwrap(), Outcome::Ran("report".to_owned()));

    // A wait too long to count to is a wait without end, not a panic.
    let endless = OverlapOptions::new().wait(Duration::MAX);
    let ran = without_overlap(&locker, "free", endless, |_| 1).unwrap();
    assert_eq!(ran, Outcome::Ran(1));
}
