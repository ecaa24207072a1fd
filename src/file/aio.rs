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

use super::{
    Expiry, FileLocker, Granted, Queue, dequeue_op, enqueue_op, grant_op, release_op, renew_op,
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
            let pending = self.send(op)?;
            // The commit thread runs a release sent after the grant after
            // it: a grant whose caller has gone is undone.
            let cancel = OnCancel::new(|| self.release_in_background(&key, &token));
            let granted = pending.answer().await;
            cancel.disarm();
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
        let sent = renew_op(key, token, Some(expires_at), true).and_then(|op| self.send(op));
        async move { sent?.answer().await }
    }

    fn release_if_owner(
        &self,
        key: &str,
        token: &str,
    ) -> impl Future<Output = Result<bool>> + Send {
        let sent = release_op(key, token).and_then(|op| self.send(op));
        async move { sent?.answer().await }
    }

    fn detach(
        &self,
        key: &str,
        token: &str,
        expires_at: Option<SystemTime>,
    ) -> impl Future<Output = Result<bool>> + Send {
        let sent = renew_op(key, token, expires_at, false).and_then(|op| self.send(op));
        async move { sent?.answer().await }
    }

    fn info(&self, key: &str) -> impl Future<Output = Result<Option<LockInfo<T>>>> + Send {
        std::future::ready(InspectableLocker::info(self, key))
    }

    fn enqueue(
        &self,
        key: &str,
        max_wait: Option<Duration>,
    ) -> impl Future<Output = Result<u64>> + Send {
        // The ticket is noted where a cancelled caller's undo finds it: the
        // undo is sent after the enqueue, so it runs after it.
        self.store().listen();
        let given: Arc<Mutex<Option<u64>>> = Arc::default();
        let noted = Arc::clone(&given);
        let sent = enqueue_op(key, self.store().session(), max_wait).and_then(|mut op| {
            self.send(move |store, tables, now| {
                let (ticket, changed) = op(store, tables, now)?;
                *noted.lock().unwrap_or_else(PoisonError::into_inner) = Some(ticket);
                Ok((ticket, changed))
            })
        });
        let key = key.to_owned();
        async move {
            let pending = sent?;
            let cancel = OnCancel::new(|| {
                let (key, given) = (key.clone(), Arc::clone(&given));
                let _ = self.send(move |store, tables, now| {
                    let ticket = *given.lock().unwrap_or_else(PoisonError::into_inner);
                    match ticket {
                        Some(ticket) => dequeue_op(&key, ticket)?(store, tables, now),
                        None => Ok(((), false)),
                    }
                });
            });
            let ticket = pending.answer().await;
            cancel.disarm();
            ticket
        }
    }

    fn dequeue(&self, key: &str, ticket: u64) -> impl Future<Output = Result<()>> + Send {
        let sent = dequeue_op(key, ticket).and_then(|op| self.send(op));
        async move { sent?.answer().await }
    }

    fn wait_for_release(
        &self,
        key: &str,
        ticket: Option<u64>,
        timeout: Duration,
    ) -> impl Future<Output = ()> + Send {
        let key = key.to_owned();
        async move {
            let deadline = Instant::now().checked_add(timeout);
            let signal = self.store().commit_signal();
            loop {
                // The count first, so a release committed meanwhile by this
                // handle is not missed.
                let seen = signal.seen();
                if !matches!(self.ready(&key, ticket), Ok(false)) {
                    return;
                }
                let poll = self.store().poll_interval();
                let left = deadline.map_or(poll, |d| d.saturating_duration_since(Instant::now()));
                if left.is_zero() {
                    return;
                }
                let slice = left.min(poll);
                let _ = tokio::time::timeout(slice, signal.after(seen)).await;
            }
        }
    }

    fn now(&self) -> SystemTime {
        self.clock_now()
    }

    fn release_in_background(&self, key: &str, token: &str) {
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
