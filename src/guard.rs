//! Guards: leases that release themselves, carry a fencing token, renew in
//! the background and say when they are lost. Written once over
//! [`LeaseLocker`], for every locker.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{RecvTimeoutError, Sender};

use crate::error::{Error, Result};
use crate::info::{InspectableLocker, LockInfo, LockState};
use crate::locker::RenewableLocker;
use crate::value::expiry_after;

/// What a locker grants a lease with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The fencing token of this acquisition.
    pub fence: u64,
    /// When the lease expires unless renewed; `None` if never.
    pub expires_at: Option<SystemTime>,
}

impl Lease {
    /// A lease with `fence`, expiring at `expires_at` (`None`: never): what
    /// [`RawLeaseLocker::acquire_lease`] returns for a grant.
    ///
    /// ```
    /// let lease = hostlock::Lease::new(7, None);
    /// assert_eq!(lease.fence, 7);
    /// ```
    pub fn new(fence: u64, expires_at: Option<SystemTime>) -> Lease {
        Lease { fence, expires_at }
    }
}

/// The primitives a locker implements to grant leases: what guards, fair
/// waits and the job helpers are built on, as `lock_api`'s `RawMutex` is
/// what its `Mutex` is built on.
///
/// Implement this for a locker of your own; use the methods of
/// [`LeaseLocker`], which every `RawLeaseLocker` that is `Clone` gets. The
/// primitives are not meant to be called by users: a waiter that joins a
/// queue with [`enqueue`](Self::enqueue) holds every newcomer up until it
/// leaves or its wait limit passes.
pub trait RawLeaseLocker<T>: RenewableLocker<T> + InspectableLocker<T> {
    /// Takes `key` if no live lock holds it and it is this caller's turn,
    /// with `value`, owner `token`, and an expiry of `ttl` after now on the
    /// locker's clock (`None`: never). It is the turn of the caller holding
    /// `ticket` when no waiter that is still waiting got its ticket earlier;
    /// without a ticket, when no one waits at all. A granted ticket leaves
    /// the queue. A [`FileLocker`](crate::FileLocker) binds the lock to its
    /// session, so it is free at once if the holder's process dies.
    ///
    /// # Errors
    /// An invalid key or token, or a storage error.
    fn acquire_lease(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
        token: &str,
        ticket: Option<u64>,
    ) -> Result<Option<Lease>>;

    /// Sets the expiry of the live lock under `key` held with `token` to
    /// `expires_at` (`None`: never) and unbinds it from its holder's session,
    /// so that it outlives its holder. Returns `Ok(false)`, changing nothing,
    /// if the lock is not live with that token or `expires_at` is not in the
    /// future.
    ///
    /// # Errors
    /// An invalid key or token, an expiry outside the storable range, or a
    /// storage error.
    fn detach(&self, key: &str, token: &str, expires_at: Option<SystemTime>) -> Result<bool>;

    /// Joins the queue of waiters for `key` and returns this waiter's ticket,
    /// greater than every ticket before it. A waiter that gives up leaves
    /// with [`dequeue`](Self::dequeue); one whose process dies, or that is
    /// still queued `max_wait` after it joined, counts as gone.
    ///
    /// # Errors
    /// An invalid key, or a storage error.
    fn enqueue(&self, key: &str, max_wait: Option<Duration>) -> Result<u64>;

    /// Joins the queue of waiters for `key` as [`enqueue`](Self::enqueue)
    /// does, leaving the lease this waiter will ask for: the `value`, `ttl`
    /// and `token` it will pass to [`acquire_lease`](Self::acquire_lease)
    /// with the ticket. A locker may then hand the key to this waiter in the
    /// very transaction of the release that frees it, with the TTL counted
    /// from the hand-off, so that the waiter's next `acquire_lease` finds
    /// the lease already its own. A waiter that gives up instead must still
    /// [`dequeue`](Self::dequeue), which gives back a key handed to it.
    ///
    /// The default forgets the request and calls `enqueue`;
    /// [`FileLocker`](crate::FileLocker) hands keys over.
    ///
    /// # Errors
    /// An invalid key or token, a value that does not encode, or a storage
    /// error.
    fn enqueue_lease(
        &self,
        key: &str,
        max_wait: Option<Duration>,
        value: &T,
        ttl: Option<Duration>,
        token: &str,
    ) -> Result<u64> {
        let _ = (value, ttl, token);
        self.enqueue(key, max_wait)
    }

    /// Leaves the queue of waiters for `key`. A key a release handed to
    /// this ticket (see [`enqueue_lease`](Self::enqueue_lease)) and that
    /// its waiter has not claimed goes to the next waiter.
    ///
    /// # Errors
    /// An invalid key, or a storage error.
    fn dequeue(&self, key: &str, ticket: u64) -> Result<()>;

    /// How many waiters are queued for `key`, gone ones included until they
    /// are cleared.
    ///
    /// # Errors
    /// An invalid key, or a storage error.
    fn waiters(&self, key: &str) -> Result<usize>;

    /// Waits until `key` may be free for the holder of `ticket` (or for
    /// anyone, without one), or `timeout` has passed. May return early.
    fn wait_for_release(&self, key: &str, ticket: Option<u64>, timeout: Duration);
}

/// Guards and fair waits: the API users call, provided for every
/// [`RawLeaseLocker`] that is `Clone` (every locker handle of this crate is
/// a cheap clone of a shared one), as `lock_api`'s `Mutex` is provided over
/// any `RawMutex`. Its methods hand out [`LockGuard`]s with a fresh random
/// owner token; a guard owns a clone of the locker, so it can be kept in a
/// struct or moved to another thread.
///
/// ```
/// use hostlock::{LeaseLocker, MemoryLocker};
/// use std::time::Duration;
///
/// let locker = MemoryLocker::new();
/// let guard = locker.try_lock("report", "worker-1", Some(Duration::from_secs(30)))?
///     .expect("free");
/// assert!(locker.try_lock("report", "worker-2", None)?.is_none());
/// let fence = guard.fence();
/// drop(guard); // released, checked against the guard's token
/// let next = locker.try_lock("report", "worker-2", None)?.expect("free again");
/// assert!(next.fence() > fence);
/// # Ok::<(), hostlock::Error>(())
/// ```
pub trait LeaseLocker<T>: RawLeaseLocker<T> + Clone {
    /// Takes `key` if it is free right now.
    ///
    /// # Errors
    /// An invalid key, a zero TTL (a lease that would end before it began),
    /// or a storage error.
    fn try_lock(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
    ) -> Result<Option<LockGuard<Self, T>>> {
        check_ttl(ttl)?;
        let token = random_token();
        let lease = self.acquire_lease(key, value, ttl, &token, None)?;
        Ok(lease.map(|lease| LockGuard::new(self.clone(), key, token, ttl, lease)))
    }

    /// Takes `key`, waiting up to `wait` for it. Waiters are served in the
    /// order they arrived, across threads and processes. A
    /// [`FileLocker`](crate::FileLocker) hands the key to the first waiter
    /// in the very transaction that releases it, and wakes that waiter,
    /// whatever its process (see [`enqueue_lease`](RawLeaseLocker::enqueue_lease));
    /// a key freed otherwise (an expiry, a holder that died) is noticed
    /// within 25 ms. A waiter that times out leaves the queue, passing on a
    /// key handed to it.
    ///
    /// # Errors
    /// An invalid key, or a storage error.
    fn try_lock_for(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
        wait: Duration,
    ) -> Result<Option<LockGuard<Self, T>>>
    where
        T: Clone,
    {
        check_ttl(ttl)?;
        if let Some(guard) = self.try_lock(key, value.clone(), ttl)? {
            return Ok(Some(guard));
        }
        // Nothing to wait for: joining the queue would only hold others up.
        if wait.is_zero() {
            return Ok(None);
        }
        let started = Instant::now();
        let deadline = started.checked_add(wait);
        let limit = deadline.is_some().then_some(wait);
        let token = random_token();
        let ticket = Ticket {
            locker: self,
            key,
            number: self.enqueue_lease(key, limit, &value, ttl, &token)?,
            value: PhantomData,
        };
        loop {
            let lease = self.acquire_lease(key, value.clone(), ttl, &token, Some(ticket.number))?;
            if let Some(lease) = lease {
                std::mem::forget(ticket); // granted: it left the queue
                return Ok(Some(LockGuard::new(self.clone(), key, token, ttl, lease)));
            }
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return Ok(None);
            }
            self.wait_for_release(key, Some(ticket.number), left);
        }
    }

    /// Takes `key`, waiting as long as it takes.
    ///
    /// # Errors
    /// An invalid key, or a storage error.
    fn lock(&self, key: &str, value: T, ttl: Option<Duration>) -> Result<LockGuard<Self, T>>
    where
        T: Clone,
    {
        loop {
            if let Some(guard) = self.try_lock_for(key, value.clone(), ttl, Duration::MAX)? {
                return Ok(guard);
            }
        }
    }
}

impl<L: RawLeaseLocker<T> + Clone, T> LeaseLocker<T> for L {}

/// Refuses a lease of zero length: it would end before it began, and a lock
/// taken for it would hold nothing.
pub(crate) fn check_ttl(ttl: Option<Duration>) -> Result<()> {
    match ttl {
        Some(ttl) if ttl.is_zero() => Err(Error::invalid(
            "ttl",
            "a lease of zero length ends before it begins; give a positive TTL, or none to \
             hold the lock until it is released",
        )),
        _ => Ok(()),
    }
}

/// A place in a key's queue of waiters, left when dropped (also when the
/// wait unwinds).
struct Ticket<'a, L: RawLeaseLocker<T>, T> {
    locker: &'a L,
    key: &'a str,
    number: u64,
    value: PhantomData<fn(T)>,
}

impl<L: RawLeaseLocker<T>, T> Drop for Ticket<'_, L, T> {
    fn drop(&mut self) {
        // A ticket left behind by a failure here counts as gone once its
        // process exits (FileLocker), or blocks no one after its deadline.
        let _ = self.locker.dequeue(self.key, self.number);
    }
}

/// Why a lease was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseLost {
    /// Its expiry passed before it was renewed.
    Expired,
    /// The lock is no longer this guard's: released or force-released by
    /// someone else, or taken by another holder after it expired.
    Taken,
    /// The locker can no longer vouch for the lock: its file was deleted,
    /// replaced or truncated ([`Error::Replaced`]), or found damaged. The
    /// message is the error's. Unlike a busy file or an I/O error, which a
    /// keep-alive retries, this does not pass.
    Broken(String),
}

impl fmt::Display for LeaseLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseLost::Expired => f.write_str("the lease expired before it was renewed"),
            LeaseLost::Taken => f.write_str("the lock was released or taken by someone else"),
            LeaseLost::Broken(why) => write!(f, "the lock can no longer be vouched for: {why}"),
        }
    }
}

/// What a guard and its keep-alive thread share.
#[derive(Debug)]
struct Status {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug)]
struct State {
    expires_at: Option<SystemTime>,
    lost: Option<LeaseLost>,
}

impl Status {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn renewed(&self, at: SystemTime) {
        self.lock().expires_at = Some(at);
        self.changed.notify_all();
    }

    fn lose(&self, why: LeaseLost) {
        self.lock().lost.get_or_insert(why);
        self.changed.notify_all();
    }
}

/// A held lock, released (checked against its owner token) when dropped.
///
/// Made by [`LeaseLocker::try_lock`], [`try_lock_for`](LeaseLocker::try_lock_for)
/// and [`lock`](LeaseLocker::lock). Its [fence](Self::fence) is greater than
/// every fence handed out before for the key: give it to the resource the
/// lock protects, and have the resource reject writes that carry a fence
/// lower than the highest it has seen. A holder that stalled past its
/// expiry, and whose key was taken since, is then refused, where a check of
/// the lock alone would have raced.
///
/// A guard owns a clone of its locker: the handle (and, for a
/// [`FileLocker`](crate::FileLocker), its session) stays open while a guard
/// lives, and a guard leaked with `mem::forget` keeps it open for good.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<L: RawLeaseLocker<T>, T> {
    locker: L,
    key: String,
    token: String,
    fence: u64,
    ttl: Option<Duration>,
    status: Arc<Status>,
    keeper: Option<Keeper>,
    released: bool,
    value: PhantomData<fn(T)>,
}

impl<L: RawLeaseLocker<T>, T> fmt::Debug for LockGuard<L, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("key", &self.key)
            .field("fence", &self.fence)
            .field("expires_at", &self.expires_at())
            .field("keep_alive", &self.keeper.is_some())
            .finish_non_exhaustive()
    }
}

impl<L: RawLeaseLocker<T>, T> LockGuard<L, T> {
    fn new(
        locker: L,
        key: &str,
        token: String,
        ttl: Option<Duration>,
        lease: Lease,
    ) -> LockGuard<L, T> {
        LockGuard {
            locker,
            key: key.to_owned(),
            token,
            fence: lease.fence,
            ttl,
            status: Arc::new(Status {
                state: Mutex::new(State {
                    expires_at: lease.expires_at,
                    lost: None,
                }),
                changed: Condvar::new(),
            }),
            keeper: None,
            released: false,
            value: PhantomData,
        }
    }

    /// The key held.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The owner token: random, fresh for every guard.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The fencing token of this acquisition.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// When the lease expires unless renewed; `None` if never.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.status.lock().expires_at
    }

    /// Moves the expiry to `ttl` after now. Returns `Ok(false)`, and the
    /// lease counts as lost, if the lock is no longer this guard's.
    ///
    /// # Errors
    /// A storage error; the lease is unchanged and may be renewed again.
    pub fn renew(&self, ttl: Duration) -> Result<bool> {
        check_ttl(Some(ttl))?;
        renew(&self.locker, &self.key, &self.token, ttl, &self.status)
    }

    /// Why the lease is lost, if it is: a renewal or check found the lock
    /// taken, or its last known expiry passed on the locker's clock. Reads no
    /// storage; see [`check`](Self::check) for that.
    pub fn lost(&self) -> Option<LeaseLost> {
        let state = self.status.lock();
        if let Some(why) = &state.lost {
            return Some(why.clone());
        }
        let expired = state.expires_at.is_some_and(|at| at < self.locker.now());
        expired.then_some(LeaseLost::Expired)
    }

    /// Reads the lock and says whether this guard still holds it (the same
    /// fence, live). A lock found lost stays lost.
    ///
    /// # Errors
    /// A storage error.
    pub fn check(&self) -> Result<bool> {
        if self.status.lock().lost.is_some() {
            return Ok(false);
        }
        still_held(&self.locker, &self.key, self.fence, &self.status)
    }

    /// Waits up to `timeout` for the lease to be lost, and says why it was;
    /// `None` if it still holds. With [`keep_alive`](Self::keep_alive)
    /// running, a failed renewal wakes the wait at once.
    pub fn wait_lost(&self, timeout: Duration) -> Option<LeaseLost> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(why) = self.lost() {
                return Some(why);
            }
            let left = deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return None;
            }
            // Expiry is judged on the locker's clock, which no one notifies:
            // look again at least every 50 ms.
            let state = self.status.lock();
            let _ = self
                .status
                .changed
                .wait_timeout(state, left.min(Duration::from_millis(50)))
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Releases the lock if it is still this guard's, and says whether it was.
    ///
    /// # Errors
    /// A storage error; the lock may still be held (until it expires, or its
    /// holder's session ends).
    pub fn unlock(mut self) -> Result<bool> {
        self.stop_keeper();
        self.released = true;
        self.locker.release_if_owner(&self.key, &self.token)
    }

    /// Leaves the lock held for `ttl` from now, past this guard and its
    /// process: the lock gets that expiry, is unbound from the locker's
    /// session, and is not released when the guard goes. A hold that has
    /// ended before it could be kept (a zero `ttl`, or one shorter than the
    /// call) releases the lock instead. Returns `Ok(false)` if the lock was no
    /// longer this guard's.
    ///
    /// # Errors
    /// A storage error; the guard has still gone, and its lock is then
    /// released as by a drop.
    pub fn hold_for(mut self, ttl: Duration) -> Result<bool> {
        self.stop_keeper();
        if ttl.is_zero() {
            return self.unlock();
        }
        let at = expiry_after(self.locker.now(), ttl);
        let kept = self.locker.detach(&self.key, &self.token, Some(at));
        if matches!(kept, Ok(false)) {
            // The hold ended before it could be kept (a window shorter than
            // the call), or the lock is no longer this guard's: release it
            // if it still is, so that no lock is left that nobody holds.
            return self.unlock();
        }
        self.released = true;
        kept
    }

    /// Leaves the lock held past this guard and its process, with its
    /// current expiry (none, for a lock taken without TTL): it is unbound
    /// from the locker's session and not released when the guard goes.
    /// Returns `Ok(false)` if the lock was no longer this guard's.
    ///
    /// # Errors
    /// A storage error; the guard has still gone, and its lock is then
    /// released as by a drop.
    pub fn persist(mut self) -> Result<bool> {
        self.stop_keeper();
        let at = self.expires_at();
        self.detach(at)
    }

    fn detach(mut self, at: Option<SystemTime>) -> Result<bool> {
        let held = self.locker.detach(&self.key, &self.token, at)?;
        self.released = true;
        Ok(held)
    }

    fn stop_keeper(&mut self) {
        drop(self.keeper.take());
    }
}

impl<L, T> LockGuard<L, T>
where
    L: RawLeaseLocker<T> + Clone + Send + 'static,
    T: 'static,
{
    /// Renews the lease every `interval` on a background thread, to its TTL
    /// after the renewal, until the guard is dropped or unlocked. A lease
    /// with no TTL is checked instead, so that its loss (a force release) is
    /// noticed. A renewal that finds the lock taken, or comes too late,
    /// marks the lease lost and ends the thread: see [`lost`](Self::lost)
    /// and [`wait_lost`](Self::wait_lost). So does an error that will not
    /// pass ([`LeaseLost::Broken`]: the file was replaced or is damaged);
    /// passing ones (a busy file, an I/O error, a full disk) are retried at
    /// the next interval, and the lease is lost once its expiry passes.
    ///
    /// Pick an interval well below the TTL (a third of it, say).
    ///
    /// # Errors
    /// A zero interval, or no thread could be started.
    pub fn keep_alive(&mut self, interval: Duration) -> Result<()> {
        if interval.is_zero() {
            return Err(Error::invalid(
                "keep-alive interval",
                "must be longer than zero",
            ));
        }
        self.stop_keeper();
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let locker = self.locker.clone();
        let (key, token, fence, ttl) = (self.key.clone(), self.token.clone(), self.fence, self.ttl);
        let status = Arc::clone(&self.status);
        let thread = thread::Builder::new()
            .name("hostlock-keep-alive".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let kept = match ttl {
                        Some(ttl) => renew(&locker, &key, &token, ttl, &status),
                        None => still_held(&locker, &key, fence, &status),
                    };
                    if matches!(kept, Ok(false)) || status.lock().lost.is_some() {
                        return;
                    }
                }
            })
            .map_err(|source| Error::Thread {
                name: "keep-alive",
                source,
            })?;
        self.keeper = Some(Keeper {
            stop: Some(stop),
            thread: Some(thread),
        });
        Ok(())
    }
}

fn renew<T>(
    locker: &impl RawLeaseLocker<T>,
    key: &str,
    token: &str,
    ttl: Duration,
    status: &Status,
) -> Result<bool> {
    if status.lock().lost.is_some() {
        return Ok(false);
    }
    let now = locker.now();
    let at = expiry_after(now, ttl);
    if locker
        .touch(key, token, at)
        .map_err(|e| broken(status, e))?
    {
        status.renewed(at);
        return Ok(true);
    }
    let old = status.lock().expires_at;
    status.lose(refused_renewal(old, now));
    Ok(false)
}

/// Why a lease whose renewal was refused at `now` is lost, given its last
/// known expiry.
pub(crate) fn refused_renewal(expires_at: Option<SystemTime>, now: SystemTime) -> LeaseLost {
    if expires_at.is_some_and(|old| old < now) {
        LeaseLost::Expired
    } else {
        LeaseLost::Taken
    }
}

/// What a look at the lock under a lease's key says of the lease with
/// `fence`: held still, with the expiry found (another handle may have
/// renewed it with the token), or lost, and why.
pub(crate) fn judge<T>(
    info: Option<LockInfo<T>>,
    fence: u64,
) -> Result<Option<SystemTime>, LeaseLost> {
    match info {
        Some(info) if info.fence == fence && info.state == LockState::Live => Ok(info.expires_at),
        Some(info) if info.fence == fence && info.state == LockState::Expired => {
            Err(LeaseLost::Expired)
        }
        _ => Err(LeaseLost::Taken),
    }
}

fn still_held<T>(
    locker: &impl RawLeaseLocker<T>,
    key: &str,
    fence: u64,
    status: &Status,
) -> Result<bool> {
    let info = locker.info(key).map_err(|e| broken(status, e))?;
    match judge(info, fence) {
        Ok(expires_at) => {
            status.lock().expires_at = expires_at;
            Ok(true)
        }
        Err(why) => {
            status.lose(why);
            Ok(false)
        }
    }
}

/// Passes `e` on, first marking the lease lost if the error will not pass.
fn broken(status: &Status, e: Error) -> Error {
    if !e.is_transient() {
        status.lose(LeaseLost::Broken(e.to_string()));
    }
    e
}

impl<L: RawLeaseLocker<T>, T> Drop for LockGuard<L, T> {
    fn drop(&mut self) {
        self.stop_keeper();
        if !self.released {
            // A drop cannot report an error; `unlock` can. The lock expires,
            // or is freed with its holder's session, in any case.
            let _ = self.locker.release_if_owner(&self.key, &self.token);
        }
    }
}

/// A running keep-alive thread; dropping it stops and joins the thread.
#[derive(Debug)]
struct Keeper {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Keeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A fresh random 64-bit value, from the standard library's randomly keyed
/// hasher (seeded by the operating system), a counter, the process id and
/// the time.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// A fresh owner token: 128 random bits in hex.
pub(crate) fn random_token() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}
