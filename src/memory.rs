//! `MemoryLocker`: the in-process locker.

#[cfg(feature = "tokio")]
mod aio;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::clock::{Clock, SystemClock};
use crate::error::Result;
use crate::guard::{Lease, RawLeaseLocker};
use crate::info::{Holder, InspectableLocker, LockInfo, LockState};
use crate::locker::{CleanableLocker, Locker, RenewableLocker};
use crate::value::{
    LockValue, check_expiry, check_key, check_lock, check_token, clamp_now, expiry_after,
};

/// A locker that keeps its locks in memory, shared by the threads of one
/// process.
///
/// It follows the same contract as [`FileLocker`](crate::FileLocker), so it
/// serves for tests and for programs that run as a single process. Its locks
/// are gone when it is dropped. It is cheap to clone: clones share the locks.
///
/// ```
/// use hostlock::{Locker, LockValue, MemoryLocker};
///
/// let locker = MemoryLocker::new();
/// assert!(locker.acquire("report", LockValue::new("worker-1"))?);
/// assert!(!locker.acquire("report", LockValue::new("worker-2"))?);
/// assert_eq!(locker.get("report")?.unwrap().value, "worker-1");
/// # Ok::<(), hostlock::Error>(())
/// ```
pub struct MemoryLocker<T> {
    shared: Arc<Shared<T>>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    // Notified whenever an entry is removed, for the threads waiting for a key.
    released: Condvar,
    // The same, for tasks waiting for a key.
    #[cfg(feature = "tokio")]
    released_signal: crate::signal::Signal,
    clock: Arc<dyn Clock>,
}

impl<T> Clone for MemoryLocker<T> {
    fn clone(&self) -> MemoryLocker<T> {
        MemoryLocker {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A thread waiting in a key's queue.
#[derive(Debug, Clone, Copy)]
struct Waiter {
    ticket: u64,
    /// When it stops counting, on the monotonic clock.
    until: Option<Instant>,
    /// When its turn began: the key was found free with it first in line.
    since: Option<Instant>,
}

/// How long a waiter whose turn has come may take to claim it before it
/// passes to the next (as in a lock file's queue).
const TURN_GRACE: Duration = Duration::from_secs(1);

struct State<T> {
    locks: HashMap<String, Entry<T>>,
    // Every entry with an expiry, ordered by it, so cleanup visits only what expired.
    by_expiry: BTreeSet<(SystemTime, String)>,
    // The last fence handed out, for any key.
    fence: u64,
    // The tickets of the threads waiting for each key, in arrival order.
    queues: HashMap<String, VecDeque<Waiter>>,
    // The last ticket handed out.
    ticket: u64,
}

struct Entry<T> {
    lock: LockValue<T>,
    fence: u64,
    acquired: SystemTime,
}

impl<T> State<T> {
    fn remove(&mut self, key: &str) -> Option<Entry<T>> {
        let old = self.locks.remove(key)?;
        if let Some(at) = old.lock.expires_at {
            self.by_expiry.remove(&(at, key.to_owned()));
        }
        Some(old)
    }

    fn insert(&mut self, key: &str, entry: Entry<T>) {
        self.remove(key);
        if let Some(at) = entry.lock.expires_at {
            self.by_expiry.insert((at, key.to_owned()));
        }
        self.locks.insert(key.to_owned(), entry);
    }

    /// Stores `lock` under `key` with the next fence, and returns the fence.
    fn grant(&mut self, key: &str, lock: LockValue<T>, now: SystemTime) -> u64 {
        self.fence += 1;
        let fence = self.fence;
        self.insert(
            key,
            Entry {
                lock,
                fence,
                acquired: now,
            },
        );
        fence
    }

    /// Whether it is `ticket`'s turn to take the free `key` (without a
    /// ticket: whether no one waits). Waiters past their wait limit count as
    /// gone, and leave; so does a first waiter that has not claimed its turn
    /// within `TURN_GRACE` of its beginning (a waiter that enqueued and never
    /// came back), whose turn begins now if it had not.
    fn turn(&mut self, key: &str, ticket: Option<u64>) -> bool {
        let Some(queue) = self.queues.get_mut(key) else {
            return true;
        };
        let now = Instant::now();
        queue.retain(|w| Some(w.ticket) == ticket || w.until.is_none_or(|until| until > now));
        while let Some(first) = queue.front_mut() {
            if Some(first.ticket) == ticket {
                break;
            }
            match first.since {
                Some(since) if now.duration_since(since) > TURN_GRACE => {
                    queue.pop_front();
                }
                Some(_) => break,
                None => {
                    first.since = Some(now);
                    break;
                }
            }
        }
        let first = queue.front().map(|w| w.ticket);
        if queue.is_empty() {
            self.queues.remove(key);
        }
        first.is_none() || first == ticket
    }

    fn live(&self, key: &str, now: SystemTime) -> Option<&Entry<T>> {
        self.locks.get(key).filter(|e| !e.lock.is_expired_at(now))
    }
}

impl<T: Clone> Entry<T> {
    fn info(&self, key: &str, now: SystemTime) -> LockInfo<T> {
        LockInfo {
            key: key.to_owned(),
            value: self.lock.value.clone(),
            expires_at: self.lock.expires_at,
            has_token: self.lock.token.is_some(),
            fence: self.fence,
            acquired_at: self.acquired,
            holder: Holder {
                pid: std::process::id(),
                alive: Some(true),
            },
            state: if self.lock.is_expired_at(now) {
                LockState::Expired
            } else {
                LockState::Live
            },
        }
    }
}

impl<T> MemoryLocker<T> {
    /// An empty locker on the system clock.
    pub fn new() -> MemoryLocker<T> {
        MemoryLocker::with_clock(SystemClock)
    }

    /// An empty locker that reads the time from `clock`.
    pub fn with_clock(clock: impl Clock + 'static) -> MemoryLocker<T> {
        MemoryLocker {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    locks: HashMap::new(),
                    by_expiry: BTreeSet::new(),
                    fence: 0,
                    queues: HashMap::new(),
                    ticket: 0,
                }),
                released: Condvar::new(),
                #[cfg(feature = "tokio")]
                released_signal: crate::signal::Signal::default(),
                clock: Arc::new(clock),
            }),
        }
    }

    // A panic while the mutex was held cannot leave the maps half-updated in a
    // way that matters: every mutation is a single insert or remove pair.
    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn clock_now(&self) -> SystemTime {
        clamp_now(self.shared.clock.now())
    }

    fn notify_released(&self) {
        self.shared.released.notify_all();
        #[cfg(feature = "tokio")]
        self.shared.released_signal.notify();
    }
}

impl<T> Default for MemoryLocker<T> {
    fn default() -> MemoryLocker<T> {
        MemoryLocker::new()
    }
}

impl<T> fmt::Debug for MemoryLocker<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLocker")
            .field("entries", &self.state().locks.len())
            .finish_non_exhaustive()
    }
}

impl<T: Clone> Locker<T> for MemoryLocker<T> {
    fn exists(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        Ok(self.state().live(key, self.clock_now()).is_some())
    }

    fn get(&self, key: &str) -> Result<Option<LockValue<T>>> {
        check_key(key)?;
        Ok(self
            .state()
            .live(key, self.clock_now())
            .map(|e| e.lock.clone()))
    }

    fn acquire(&self, key: &str, lock: LockValue<T>) -> Result<bool> {
        check_lock(key, &lock)?;
        let mut state = self.state();
        let now = self.clock_now();
        if state.live(key, now).is_some() {
            return Ok(false);
        }
        // The new lock replaces any expired entry; one that is itself already
        // expired leaves the key free.
        if lock.is_expired_at(now) {
            state.remove(key);
        } else {
            state.grant(key, lock, now);
        }
        Ok(true)
    }

    fn release(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        let now = self.clock_now();
        let old = self.state().remove(key);
        self.notify_released();
        Ok(old.is_some_and(|old| !old.lock.is_expired_at(now)))
    }

    fn force_release(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.state().remove(key);
        self.notify_released();
        Ok(())
    }

    fn now(&self) -> SystemTime {
        self.clock_now()
    }

    fn lease_locker(&self) -> Option<Arc<dyn RawLeaseLocker<T> + Send + Sync>>
    where
        T: Send + Sync + 'static,
    {
        Some(Arc::new(self.clone()))
    }
}

impl<T: Clone> CleanableLocker<T> for MemoryLocker<T> {
    fn cleanup(&self) -> Result<usize> {
        let mut state = self.state();
        let now = self.clock_now();
        let expired: Vec<String> = state
            .by_expiry
            .iter()
            .take_while(|(at, _)| *at < now)
            .map(|(_, key)| key.clone())
            .collect();
        for key in &expired {
            state.remove(key);
        }
        self.notify_released();
        Ok(expired.len())
    }
}

impl<T: Clone> RenewableLocker<T> for MemoryLocker<T> {
    fn touch(&self, key: &str, token: &str, expires_at: SystemTime) -> Result<bool> {
        check_key(key)?;
        check_token(token)?;
        check_expiry(expires_at)?;
        let mut state = self.state();
        let now = self.clock_now();
        if expires_at <= now {
            return Ok(false);
        }
        let Some(mut entry) = state.remove(key) else {
            return Ok(false);
        };
        let owned = !entry.lock.is_expired_at(now) && entry.lock.token.as_deref() == Some(token);
        if owned {
            entry.lock.expires_at = Some(expires_at);
        }
        state.insert(key, entry);
        Ok(owned)
    }

    fn release_if_owner(&self, key: &str, token: &str) -> Result<bool> {
        check_key(key)?;
        check_token(token)?;
        let mut state = self.state();
        let now = self.clock_now();
        match state.locks.get(key) {
            Some(entry) if entry.lock.token.as_deref() == Some(token) => {
                let live = !entry.lock.is_expired_at(now);
                state.remove(key);
                self.notify_released();
                Ok(live)
            }
            _ => Ok(false),
        }
    }
}

impl<T: Clone> InspectableLocker<T> for MemoryLocker<T> {
    fn info(&self, key: &str) -> Result<Option<LockInfo<T>>> {
        check_key(key)?;
        let now = self.clock_now();
        Ok(self.state().locks.get(key).map(|e| e.info(key, now)))
    }

    fn list(&self, include_expired: bool) -> Result<Vec<Result<LockInfo<T>>>> {
        let now = self.clock_now();
        let state = self.state();
        let mut all: Vec<LockInfo<T>> = state
            .locks
            .iter()
            .map(|(key, e)| e.info(key, now))
            .filter(|info| include_expired || info.state == LockState::Live)
            .collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(all.into_iter().map(Ok).collect())
    }
}

/// How often a waiter looks whether the lock it waits for has expired.
const EXPIRY_POLL: Duration = Duration::from_millis(5);

impl<T: Clone> RawLeaseLocker<T> for MemoryLocker<T> {
    fn acquire_lease(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
        token: &str,
        ticket: Option<u64>,
    ) -> Result<Option<Lease>> {
        check_key(key)?;
        check_token(token)?;
        let mut state = self.state();
        let now = self.clock_now();
        if state.live(key, now).is_some() || !state.turn(key, ticket) {
            return Ok(None);
        }
        // It is the ticket's turn: it is first in the queue, and leaves it.
        if ticket.is_some()
            && let Some(queue) = state.queues.get_mut(key)
        {
            queue.retain(|w| Some(w.ticket) != ticket);
            if queue.is_empty() {
                state.queues.remove(key);
            }
        }
        let expires_at = ttl.map(|ttl| expiry_after(now, ttl));
        let lock = LockValue {
            value,
            expires_at,
            token: Some(token.to_owned()),
        };
        let fence = state.grant(key, lock, now);
        Ok(Some(Lease { fence, expires_at }))
    }

    // A memory locker's locks have no session to outlive: only the expiry
    // changes.
    fn detach(&self, key: &str, token: &str, expires_at: Option<SystemTime>) -> Result<bool> {
        match expires_at {
            Some(at) => self.touch(key, token, at),
            None => {
                check_key(key)?;
                check_token(token)?;
                let mut state = self.state();
                let now = self.clock_now();
                let Some(mut entry) = state.remove(key) else {
                    return Ok(false);
                };
                let owned =
                    !entry.lock.is_expired_at(now) && entry.lock.token.as_deref() == Some(token);
                if owned {
                    entry.lock.expires_at = None;
                }
                state.insert(key, entry);
                Ok(owned)
            }
        }
    }

    // A waiter past its wait limit (on the monotonic clock) counts as gone:
    // one that never leaves (a ticket leaked with `mem::forget`, or a caller
    // of `enqueue` that forgot `dequeue`) holds no one up past it.
    fn enqueue(&self, key: &str, max_wait: Option<Duration>) -> Result<u64> {
        check_key(key)?;
        let mut state = self.state();
        state.ticket += 1;
        let ticket = state.ticket;
        let until = max_wait.and_then(|wait| Instant::now().checked_add(wait));
        state
            .queues
            .entry(key.to_owned())
            .or_default()
            .push_back(Waiter {
                ticket,
                until,
                since: None,
            });
        Ok(ticket)
    }

    fn dequeue(&self, key: &str, ticket: u64) -> Result<()> {
        check_key(key)?;
        let mut state = self.state();
        if let Some(queue) = state.queues.get_mut(key) {
            queue.retain(|w| w.ticket != ticket);
            if queue.is_empty() {
                state.queues.remove(key);
            }
        }
        drop(state);
        self.notify_released();
        Ok(())
    }

    fn waiters(&self, key: &str) -> Result<usize> {
        check_key(key)?;
        Ok(self.state().queues.get(key).map_or(0, VecDeque::len))
    }

    fn wait_for_release(&self, key: &str, ticket: Option<u64>, timeout: Duration) {
        let mut state = self.state();
        if state.live(key, self.clock_now()).is_none() && state.turn(key, ticket) {
            return;
        }
        // A release wakes the wait at once; an expiry is no notification,
        // so look again at least every few milliseconds.
        let _ = self
            .shared
            .released
            .wait_timeout(state, timeout.min(EXPIRY_POLL))
            .unwrap_or_else(PoisonError::into_inner);
    }
}
