//! The guard of an async lock: `Send + 'static`, awaited to unlock, renew
//! or learn of a loss, released without blocking when dropped.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::AsyncRawLeaseLocker;
use crate::error::{Error, Result};
use crate::guard::{Lease, LeaseLost, check_ttl, judge, refused_renewal};
use crate::value::expiry_after;

/// What a guard and its keep-alive task share.
#[derive(Debug)]
struct Status {
    state: Mutex<State>,
    changed: Notify,
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
    }

    fn lose(&self, why: LeaseLost) {
        self.lock().lost.get_or_insert(why);
        self.changed.notify_waiters();
    }

    /// Passes `e` on, first marking the lease lost if the error will not pass.
    fn broken(&self, e: Error) -> Error {
        if !e.is_transient() {
            self.lose(LeaseLost::Broken(e.to_string()));
        }
        e
    }
}

/// A held lock, for async code: made by [`AsyncLocker`](super::AsyncLocker)'s
/// `try_lock`, `try_lock_for` and `lock`.
///
/// It owns a clone of its locker, so it is `Send + 'static` (for a locker
/// and value type that are) and lives across `.await`s and in spawned tasks.
/// Dropping it releases the lock (checked against its token) without
/// waiting: the release is started and runs on its own. [`unlock`](Self::unlock)
/// awaits the release and reports it.
///
/// ```
/// use hostlock::{AsyncLocker, MemoryLocker};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let locker = AsyncLocker::new(MemoryLocker::new());
/// let ttl = Some(Duration::from_secs(30));
/// let mut guard = locker.lock("rebuild", (), ttl).await?;
/// guard.keep_alive(Duration::from_secs(10))?; // a task renews it
/// tokio::select! {
///     why = guard.wait_lost() => println!("lost the lock: {why}"),
///     () = tokio::time::sleep(Duration::from_millis(10)) => println!("work done"),
/// }
/// assert!(guard.unlock().await?);
/// # Ok::<(), hostlock::Error>(())
/// # }).unwrap();
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct AsyncGuard<L: AsyncRawLeaseLocker<T>, T> {
    locker: L,
    key: String,
    token: String,
    fence: u64,
    ttl: Option<Duration>,
    status: Arc<Status>,
    keeper: Option<JoinHandle<()>>,
    released: bool,
    value: PhantomData<fn(T)>,
}

impl<L: AsyncRawLeaseLocker<T>, T> fmt::Debug for AsyncGuard<L, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncGuard")
            .field("key", &self.key)
            .field("fence", &self.fence)
            .field("expires_at", &self.expires_at())
            .field("keep_alive", &self.keeper.is_some())
            .finish_non_exhaustive()
    }
}

impl<L: AsyncRawLeaseLocker<T>, T> AsyncGuard<L, T> {
    pub(super) fn new(
        locker: L,
        key: &str,
        token: String,
        ttl: Option<Duration>,
        lease: Lease,
    ) -> AsyncGuard<L, T> {
        AsyncGuard {
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
                changed: Notify::new(),
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

    /// The fencing token of this acquisition: see
    /// [`LockGuard::fence`](crate::LockGuard::fence).
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// When the lease expires unless renewed; `None` if never.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.status.lock().expires_at
    }

    /// Why the lease is lost, if it is known to be: a renewal or check found
    /// the lock taken, or its last known expiry passed on the locker's clock.
    /// Reads no storage.
    pub fn lost(&self) -> Option<LeaseLost> {
        lost(&self.locker, &self.status)
    }

    /// Resolves when the lease is lost, with why. With
    /// [`keep_alive`](Self::keep_alive) running, a failed renewal resolves
    /// it at once; an expiry is noticed within 50 ms. For `select!` and
    /// `tokio::time::timeout`.
    pub async fn wait_lost(&self) -> LeaseLost {
        loop {
            let changed = self.status.changed.notified();
            if let Some(why) = self.lost() {
                return why;
            }
            // Expiry is judged on the locker's clock, which no one notifies.
            let _ = tokio::time::timeout(Duration::from_millis(50), changed).await;
        }
    }

    /// Moves the expiry to `ttl` after now. Returns `Ok(false)`, and the
    /// lease counts as lost, if the lock is no longer this guard's.
    ///
    /// # Errors
    /// A zero `ttl`, or a storage error; the lease is unchanged and may be
    /// renewed again.
    pub async fn renew(&self, ttl: Duration) -> Result<bool> {
        check_ttl(Some(ttl))?;
        renew(&self.locker, &self.key, &self.token, ttl, &self.status).await
    }

    /// Reads the lock and says whether this guard still holds it (the same
    /// fence, live). A lock found lost stays lost.
    ///
    /// # Errors
    /// A storage error.
    pub async fn check(&self) -> Result<bool> {
        if self.status.lock().lost.is_some() {
            return Ok(false);
        }
        still_held(&self.locker, &self.key, self.fence, &self.status).await
    }

    /// Releases the lock if it is still this guard's, and says whether it was.
    ///
    /// # Errors
    /// A storage error; the lock may still be held (until it expires, or its
    /// holder's session ends).
    pub async fn unlock(mut self) -> Result<bool> {
        self.stop_keeper();
        self.released = true;
        self.locker.release_if_owner(&self.key, &self.token).await
    }

    /// Leaves the lock held for `ttl` from now, past this guard and its
    /// process, as [`LockGuard::hold_for`](crate::LockGuard::hold_for) does.
    ///
    /// # Errors
    /// A storage error; the lock is then released as by a drop.
    pub async fn hold_for(mut self, ttl: Duration) -> Result<bool> {
        self.stop_keeper();
        if ttl.is_zero() {
            return self.unlock().await;
        }
        let at = expiry_after(self.locker.now(), ttl);
        let kept = self.locker.detach(&self.key, &self.token, Some(at)).await;
        if matches!(kept, Ok(false)) {
            return self.unlock().await;
        }
        self.released = kept.is_ok();
        kept
    }

    /// Leaves the lock held past this guard and its process, with its
    /// current expiry, as [`LockGuard::persist`](crate::LockGuard::persist)
    /// does.
    ///
    /// # Errors
    /// A storage error; the lock is then released as by a drop.
    pub async fn persist(mut self) -> Result<bool> {
        self.stop_keeper();
        let at = self.expires_at();
        let kept = self.locker.detach(&self.key, &self.token, at).await;
        self.released = kept.is_ok();
        kept
    }

    /// Turns the drop of this guard into a hold of `ttl` from then (what a
    /// job helper's window does when its job panics).
    pub(super) fn hold_on_drop(mut self, ttl: Duration) {
        self.stop_keeper();
        self.released = true;
        let at = expiry_after(self.locker.now(), ttl);
        if ttl.is_zero() {
            self.locker.release_in_background(&self.key, &self.token);
        } else {
            self.locker
                .detach_in_background(&self.key, &self.token, Some(at));
        }
    }

    fn stop_keeper(&mut self) {
        if let Some(keeper) = self.keeper.take() {
            keeper.abort();
        }
    }
}

impl<L, T> AsyncGuard<L, T>
where
    L: AsyncRawLeaseLocker<T> + Clone,
    T: 'static,
{
    /// Renews the lease every `interval` in a task of the current runtime,
    /// to its TTL after the renewal, until the guard is dropped or unlocked.
    /// A lease with no TTL is checked instead, so that its loss is noticed.
    /// A loss, or an error that will not pass, ends the task and resolves
    /// [`wait_lost`](Self::wait_lost); passing errors are retried at the
    /// next interval.
    ///
    /// # Errors
    /// A zero interval, or no tokio runtime to run the task.
    pub fn keep_alive(&mut self, interval: Duration) -> Result<()> {
        if interval.is_zero() {
            return Err(Error::invalid(
                "keep-alive interval",
                "must be longer than zero",
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| Error::Thread {
            name: "keep-alive task",
            source: std::io::Error::other(e),
        })?;
        self.stop_keeper();
        let locker = self.locker.clone();
        let (key, token, fence, ttl) = (self.key.clone(), self.token.clone(), self.fence, self.ttl);
        let status = Arc::clone(&self.status);
        self.keeper = Some(runtime.spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is at once
            loop {
                ticks.tick().await;
                let kept = match ttl {
                    Some(ttl) => renew(&locker, &key, &token, ttl, &status).await,
                    None => still_held(&locker, &key, fence, &status).await,
                };
                if matches!(kept, Ok(false)) || status.lock().lost.is_some() {
                    return;
                }
            }
        }));
        Ok(())
    }
}

fn lost<T>(locker: &impl AsyncRawLeaseLocker<T>, status: &Status) -> Option<LeaseLost> {
    let state = status.lock();
    if let Some(why) = &state.lost {
        return Some(why.clone());
    }
    let expired = state.expires_at.is_some_and(|at| at < locker.now());
    expired.then_some(LeaseLost::Expired)
}

async fn renew<T>(
    locker: &impl AsyncRawLeaseLocker<T>,
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
        .await
        .map_err(|e| status.broken(e))?
    {
        status.renewed(at);
        return Ok(true);
    }
    let old = status.lock().expires_at;
    status.lose(refused_renewal(old, now));
    Ok(false)
}

async fn still_held<T>(
    locker: &impl AsyncRawLeaseLocker<T>,
    key: &str,
    fence: u64,
    status: &Status,
) -> Result<bool> {
    let info = locker.info(key).await.map_err(|e| status.broken(e))?;
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

impl<L: AsyncRawLeaseLocker<T>, T> Drop for AsyncGuard<L, T> {
    fn drop(&mut self) {
        self.stop_keeper();
        if !self.released {
            self.locker.release_in_background(&self.key, &self.token);
        }
    }
}
