//! `FileLocker` for async code: writes are sent to the handle's commit
//! thread and their answers awaited, so they share commits with every
//! other caller; reads run on the task's thread (they are served from the
//! engine's cache, with no sync); waits are woken by this handle's commits
//! and look again every few milliseconds for other processes'.

use std::future::Future;
use std::sync::Arc;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::schema::Tables;
use super::store::Store;
use super::{
    Expiry, FileLocker, Granted, Queue, Step, dequeue_op, enqueue_op, grant_op, release_op,
    renew_op, timed,
};
use crate::aio::AsyncRawLeaseLocker;
use crate::error::Result;
use crate::guard::Lease;
use crate::info::{InspectableLocker, LockInfo};
use crate::value::{check_key, check_token, encode_value};

/// Runs `undo` when dropped while armed: what a cancelled call leaves
/// behind is taken away.
struct OnCancel<F: FnOnce()> {
    undo: Option<F>,
}

impl<F: FnOnce()> OnCancel<F> {
    fn new(undo: F) -> OnCancel<F> {
        OnCancel { undo: Some(undo) }
    }

    fn disarm(mut self) {
        self.undo = None;
    }
}

impl<F: FnOnce()> Drop for OnCancel<F> {
    fn drop(&mut self) {
        if let Some(undo) = self.undo.take() {
            undo();
        }
    }
}

/// Counts an async write from its start to its answer.
struct InFlight<'a> {
    count: &'a std::sync::atomic::AtomicUsize,
    was_alone: bool,
}

impl<'a> InFlight<'a> {
    fn enter(count: &'a std::sync::atomic::AtomicUsize) -> InFlight<'a> {
        let before = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight {
            count,
            was_alone: before == 0,
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl<T> FileLocker<T> {
    /// Joins `key`'s queue for an async caller, with the waiter's encoded
    /// request if it left one.
    fn enqueue_async(
        &self,
        key: &str,
        max_wait: Option<Duration>,
        request: Result<Option<Vec<u8>>>,
    ) -> impl Future<Output = Result<u64>> + Send {
        // The ticket is noted where a cancelled caller's undo finds it: the
        // undo is sent after the enqueue, so it runs after it.
        self.store().listen();
        let given: Arc<Mutex<Option<u64>>> = Arc::default();
        let noted = Arc::clone(&given);
        let session = self.store().session();
        let op = request
            .and_then(|request| enqueue_op(key, session, max_wait, request))
            .map(|mut op| {
                move |store: &Store, tables: &mut Tables<'_>, now: u64| {
                    let (ticket, changed) = op(store, tables, now)?;
                    *noted.lock().unwrap_or_else(PoisonError::into_inner) = Some(ticket);
                    Ok((ticket, changed))
                }
            });
        let key = key.to_owned();
        async move {
            let undo = || {
                let (key, given) = (key.clone(), Arc::clone(&given));
                let _ = self.send(move |store, tables, now| {
                    let ticket = *given.lock().unwrap_or_else(PoisonError::into_inner);
                    match ticket {
                        Some(ticket) => dequeue_op(&key, ticket)?(store, tables, now),
                        None => Ok(((), false)),
                    }
                });
            };
            self.decide_async(op?, undo).await
        }
    }

    /// Runs `f` for an async caller: on this thread, inside tokio's
    /// `block_in_place`, when the runtime has several worker threads and
    /// this handle's committer has nothing else to do (a lone caller spares
    /// the hand-off to the commit thread and back, as a lone blocking caller
    /// does); otherwise through the commit thread, awaited. Should the
    /// future be dropped while it awaits, `undo` runs (it sends what takes
    /// the operation back, which the commit thread runs after it).
    async fn decide_async<R, F>(&self, f: F, undo: impl FnOnce()) -> Result<R>
    where
        R: Send + 'static,
        F: FnMut(&Store, &mut Tables<'_>, u64) -> Result<(R, bool)> + Send + 'static,
    {
        let op = timed(&self.inner.clock, f);
        let multi_thread = tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
            runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        });
        // Only a lone caller runs here: with other tasks' writes in flight,
        // the commit thread gathers them into shared commits.
        let _in_flight = InFlight::enter(&self.store().async_in_flight);
        let alone = _in_flight.was_alone;
        let op = if multi_thread && alone && !self.store().committer_busy() {
            match tokio::task::block_in_place(|| self.store().run_if_alone(op)) {
                Ok(result) => return result,
                Err(op) => op,
            }
        } else {
            op
        };
        let pending = self.store().send(op)?;
        let cancel = OnCancel::new(undo);
        let answer = pending.answer().await;
        cancel.disarm();
        answer
    }
}

impl<T> AsyncRawLeaseLocker<T> for FileLocker<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn acquire_lease(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
        token: &str,
        ticket: Option<u64>,
    ) -> impl Future<Output = Result<Option<Lease>>> + Send {
        let prepared = check_key(key)
            .and_then(|()| check_token(token))
            .and_then(|()| encode_value(&value))
            .map(|value| {
                let session = Some(self.store().session());
                let queue = Queue::Respect(ticket);
                grant_op(key, &value, Some(token), Expiry::After(ttl), session, queue)
            });
        let (key, token) = (key.to_owned(), token.to_owned());
        async move {
            let (op, attempted) = prepared?;
            // Reads first, as the blocking call does: a key handed to this
            // waiter is claimed without a write (and with no await between
            // the claim and its answer), and a refused attempt takes no
            // write lock.
            match (self.next_step(&key, ticket)?, ticket) {
                (Step::Claim(bytes, handed), Some(ticket)) => {
                    return self.claim(&key, &token, ticket, &bytes, handed);
                }
                (Step::Try, _) => {}
                _ => return Ok(None),
            }
            // A grant whose caller has gone is released.
            let undo = || self.release_in_background(&key, &token);
            let granted = self.decide_async(op, undo).await;
            match self.settle_grant(&key, granted, &attempted)? {
                Granted::Stored(lease) => Ok(Some(lease)),
                Granted::Refused | Granted::Vacuous => Ok(None),
            }
        }
    }

    fn touch(
        &self,
        key: &str,
        token: &str,
        expires_at: SystemTime,
    ) -> impl Future<Output = Result<bool>> + Send {
        let op = renew_op(key, token, Some(expires_at), true);
        async move { self.decide_async(op?, || ()).await }
    }

    fn release_if_owner(
        &self,
        key: &str,
        token: &str,
    ) -> impl Future<Output = Result<bool>> + Send {
        let op = release_op(key, token);
        let (key, token) = (key.to_owned(), token.to_owned());
        async move {
            let released = self.decide_async(op?, || ()).await?;
            self.store().drop_claim(&key, &token);
            Ok(released)
        }
    }

    fn detach(
        &self,
        key: &str,
        token: &str,
        expires_at: Option<SystemTime>,
    ) -> impl Future<Output = Result<bool>> + Send {
        let op = renew_op(key, token, expires_at, false);
        async move { self.decide_async(op?, || ()).await }
    }

    fn info(&self, key: &str) -> impl Future<Output = Result<Option<LockInfo<T>>>> + Send {
        std::future::ready(InspectableLocker::info(self, key))
    }

    fn enqueue(
        &self,
        key: &str,
        max_wait: Option<Duration>,
    ) -> impl Future<Output = Result<u64>> + Send {
        self.enqueue_async(key, max_wait, Ok(None))
    }

    fn enqueue_lease(
        &self,
        key: &str,
        max_wait: Option<Duration>,
        value: &T,
        ttl: Option<Duration>,
        token: &str,
    ) -> impl Future<Output = Result<u64>> + Send {
        let request = check_token(token).and_then(|()| {
            let value = encode_value(value)?;
            Ok(Some(self.request(&value, ttl, token)))
        });
        self.enqueue_async(key, max_wait, request)
    }

    fn dequeue(&self, key: &str, ticket: u64) -> impl Future<Output = Result<()>> + Send {
        let op = dequeue_op(key, ticket);
        async move { self.decide_async(op?, || ()).await }
    }

    fn wait_for_release(
        &self,
        key: &str,
        ticket: Option<u64>,
        timeout: Duration,
    ) -> impl Future<Output = ()> + Send {
        let key = key.to_owned();
        let deadline = Instant::now().checked_add(timeout);
        let store = self.store();
        store.commit_signal().wait_until(
            deadline,
            || store.poll_interval(),
            move || !matches!(self.ready(&key, ticket), Ok(false)),
        )
    }

    fn now(&self) -> SystemTime {
        self.clock_now()
    }

    fn release_in_background(&self, key: &str, token: &str) {
        // The claim goes first: the lock is being let go, so another waiter
        // taking it away meanwhile takes nothing from its holder.
        self.store().drop_claim(key, token);
        if let Ok(op) = release_op(key, token) {
            let _ = self.send(op);
        }
    }

    fn dequeue_in_background(&self, key: &str, ticket: u64) {
        if let Ok(op) = dequeue_op(key, ticket) {
            let _ = self.send(op);
        }
    }

    fn detach_in_background(&self, key: &str, token: &str, expires_at: Option<SystemTime>) {
        if let Ok(op) = renew_op(key, token, expires_at, false) {
            let _ = self.send(op);
        }
    }
}
