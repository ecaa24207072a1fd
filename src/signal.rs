//! A notification that async code can await: a count of events, and the
//! wakers of the tasks waiting for the next one. Releases (in a
//! `MemoryLocker`) and commits (in a `FileLocker` handle) are signalled, as
//! condition variables signal them to waiting threads.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub(crate) struct Signal {
    count: AtomicU64,
    wakers: Mutex<Vec<Waker>>,
}

impl Signal {
    /// How many events there have been.
    pub(crate) fn seen(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Counts an event and wakes every task waiting for one.
    pub(crate) fn notify(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        let wakers =
            std::mem::take(&mut *self.wakers.lock().unwrap_or_else(PoisonError::into_inner));
        for waker in wakers {
            waker.wake();
        }
    }

    /// Resolves once there has been an event since `seen` events.
    pub(crate) fn after(&self, seen: u64) -> After<'_> {
        After { signal: self, seen }
    }

    /// Resolves once `ready` holds or `deadline` (if any) has passed. `ready`
    /// is asked again after each event, and after `poll()` at most without
    /// one, for a change that is no event here (an expiry, another process's
    /// commit).
    pub(crate) async fn wait_until(
        &self,
        deadline: Option<Instant>,
        poll: impl Fn() -> Duration,
        mut ready: impl FnMut() -> bool,
    ) {
        loop {
            // The count first, so that an event between the look and the
            // wait is not missed.
            let seen = self.seen();
            if ready() {
                return;
            }
            let poll = poll();
            let left = deadline.map_or(poll, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return;
            }
            let _ = tokio::time::timeout(left.min(poll), self.after(seen)).await;
        }
    }
}

/// The future of [`Signal::after`].
#[derive(Debug)]
pub(crate) struct After<'a> {
    signal: &'a Signal,
    seen: u64,
}

impl Future for After<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut wakers = self
            .signal
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Looked at under the lock that `notify` takes after counting: an
        // event either shows here or finds this task's waker.
        if self.signal.seen() != self.seen {
            return Poll::Ready(());
        }
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::Signal;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_notification_wakes_a_waiting_task() {
        let signal = Arc::new(Signal::default());
        let seen = signal.seen();
        let waiter = tokio::spawn({
            let signal = Arc::clone(&signal);
            async move { signal.after(seen).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        signal.notify();
        tokio::time::timeout(Duration::from_secs(30), waiter)
            .await
            .expect("woken")
            .expect("no panic");
        // An event already counted resolves at once.
        signal.after(seen).await;
    }
}
