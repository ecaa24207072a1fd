//! Any lease locker made awaitable, by running its calls on tokio's
//! blocking pool.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use super::AsyncRawLeaseLocker;
use crate::error::{Error, Result};
use crate::guard::{Lease, RawLeaseLocker};
use crate::info::LockInfo;

/// A blocking lease locker used from async code: each call runs on tokio's
/// blocking pool, so no runtime thread waits for it. Wrap a locker of your
/// own, or one of the sibling crates' (`hostlock-sqlite`,
/// `hostlock-redis`), in it and give it to
/// [`AsyncLocker`](super::AsyncLocker).
///
/// A call whose future is dropped runs to its end on the pool all the same,
/// and undoes itself there: a lease granted to no one is released, a ticket
/// handed to no one leaves the queue.
///
/// ```
/// use hostlock::{AsyncLocker, Blocking, MemoryLocker};
///
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// // Any RawLeaseLocker that is Clone + Send + Sync + 'static.
/// let locker = AsyncLocker::new(Blocking(MemoryLocker::new()));
/// let guard = locker.lock("k", 7, None).await?;
/// assert!(guard.unlock().await?);
/// # Ok::<(), hostlock::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct Blocking<L>(pub L);

/// How long one wait for a release holds a thread of the blocking pool
/// before the task looks again.
const WAIT_SLICE: Duration = Duration::from_millis(20);

/// Runs `call` on the blocking pool and awaits its result. `undo` runs there
/// too, on the result, if the caller has stopped waiting for it: also when
/// the caller goes after the result was sent and before it was read.
async fn on_pool<L, R>(
    locker: &L,
    call: impl FnOnce(&L) -> Result<R> + Send + 'static,
    undo: impl FnOnce(&L, &R) + Send + 'static,
) -> Result<R>
where
    L: Clone + Send + 'static,
    R: Send + 'static,
{
    let locker = locker.clone();
    let (answer, answered) = oneshot::channel();
    let runtime = tokio::runtime::Handle::try_current().map_err(no_runtime)?;
    runtime.spawn_blocking(move || {
        let result = call(&locker);
        // A delivery that no one reads undoes itself where it is dropped:
        // here, if the caller has gone already, or with the channel.
        drop(answer.send(Delivery {
            result: Some(result),
            undo: Some((locker, Box::new(undo))),
        }));
    });
    let mut delivery = answered.await.map_err(|_| Error::Thread {
        name: "blocking pool",
        source: std::io::Error::other("the runtime shut down during the call"),
    })?;
    delivery.undo = None;
    delivery.result.take().unwrap_or_else(|| {
        Err(Error::Thread {
            name: "blocking pool",
            source: std::io::Error::other("the call's result was taken twice"),
        })
    })
}

/// The undo of a call run on the pool, on its result.
type Undo<L, R> = Box<dyn FnOnce(&L, &R) + Send>;

/// A call's result on its way to its caller. Dropped unread (the caller
/// went before reading it), it undoes the call on the pool.
struct Delivery<L: Clone + Send + 'static, R: Send + 'static> {
    result: Option<Result<R>>,
    undo: Option<(L, Undo<L, R>)>,
}

impl<L: Clone + Send + 'static, R: Send + 'static> Drop for Delivery<L, R> {
    fn drop(&mut self) {
        if let (Some(Ok(result)), Some((locker, undo))) = (self.result.take(), self.undo.take()) {
            in_background(locker, move |l| undo(l, &result));
        }
    }
}

fn no_runtime(e: tokio::runtime::TryCurrentError) -> Error {
    Error::Thread {
        name: "blocking pool",
        source: std::io::Error::other(e),
    }
}

/// Runs `call` on the blocking pool without waiting for it (outside a
/// runtime: on this thread).
fn in_background<L: Send + 'static>(locker: L, call: impl FnOnce(&L) + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || call(&locker))),
        Err(_) => call(&locker),
    }
}

impl<T, L> AsyncRawLeaseLocker<T> for Blocking<L>
where
    L: RawLeaseLocker<T> + Clone + Send + Sync + 'static,
    T: Send + 'static,
{
    fn acquire_lease(
        &self,
        key: &str,
        value: T,
        ttl: Option<Duration>,
        token: &str,
        ticket: Option<u64>,
    ) -> impl Future<Output = Result<Option<Lease>>> + Send {
        let (key, token) = (key.to_owned(), token.to_owned());
        let (undo_key, undo_token) = (key.clone(), token.clone());
        on_pool(
            &self.0,
            move |l| l.acquire_lease(&key, value, ttl, &token, ticket),
            move |l, granted: &Option<Lease>| {
                if granted.is_some() {
                    let _ = l.release_if_owner(&undo_key, &undo_token);
                }
            },
        )
    }

    fn touch(
        &self,
        key: &str,
        token: &str,
        expires_at: SystemTime,
    ) -> impl Future<Output = Result<bool>> + Send {
        let (key, token) = (key.to_owned(), token.to_owned());
        on_pool(
            &self.0,
            move |l| l.touch(&key, &token, expires_at),
            |_, _| {},
        )
    }

    fn release_if_owner(
        &self,
        key: &str,
        token: &str,
    ) -> impl Future<Output = Result<bool>> + Send {
        let (key, token) = (key.to_owned(), token.to_owned());
        on_pool(
            &self.0,
            move |l| l.release_if_owner(&key, &token),
            |_, _| {},
        )
    }

    fn detach(
        &self,
        key: &str,
        token: &str,
        expires_at: Option<SystemTime>,
    ) -> impl Future<Output = Result<bool>> + Send {
        let (key, token) = (key.to_owned(), token.to_owned());
        on_pool(
            &self.0,
            move |l| l.detach(&key, &token, expires_at),
            |_, _| {},
        )
    }

    fn info(&self, key: &str) -> impl Future<Output = Result<Option<LockInfo<T>>>> + Send {
        let key = key.to_owned();
        on_pool(&self.0, move |l| l.info(&key), |_, _| {})
    }

    fn enqueue(
        &self,
        key: &str,
        max_wait: Option<Duration>,
    ) -> impl Future<Output = Result<u64>> + Send {
        let key = key.to_owned();
        let undo_key = key.clone();
        on_pool(
            &self.0,
            move |l| l.enqueue(&key, max_wait),
            move |l, ticket: &u64| {
                let _ = l.dequeue(&undo_key, *ticket);
            },
        )
    }

    fn dequeue(&self, key: &str, ticket: u64) -> impl Future<Output = Result<()>> + Send {
        let key = key.to_owned();
        on_pool(&self.0, move |l| l.dequeue(&key, ticket), |_, _| {})
    }

    fn wait_for_release(
        &self,
        key: &str,
        ticket: Option<u64>,
        timeout: Duration,
    ) -> impl Future<Output = ()> + Send {
        // A slice at a time, so that a cancelled wait frees its pool thread
        // soon, and many waiting tasks do not hold many threads for long.
        let key = key.to_owned();
        let slice = timeout.min(WAIT_SLICE);
        let wait = on_pool(
            &self.0,
            move |l| {
                l.wait_for_release(&key, ticket, slice);
                Ok(())
            },
            |_, _| {},
        );
        async move {
            let _ = wait.await;
        }
    }

    fn now(&self) -> SystemTime {
        self.0.now()
    }

    fn release_in_background(&self, key: &str, token: &str) {
        let (key, token) = (key.to_owned(), token.to_owned());
        in_background(self.0.clone(), move |l| {
            let _ = l.release_if_owner(&key, &token);
        });
    }

    fn dequeue_in_background(&self, key: &str, ticket: u64) {
        let key = key.to_owned();
        in_background(self.0.clone(), move |l| {
            let _ = l.dequeue(&key, ticket);
        });
    }

    fn detach_in_background(&self, key: &str, token: &str, expires_at: Option<SystemTime>) {
        let (key, token) = (key.to_owned(), token.to_owned());
        in_background(self.0.clone(), move |l| {
            let _ = l.detach(&key, &token, expires_at);
        });
    }
}
