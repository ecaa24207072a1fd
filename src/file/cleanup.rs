//! The background thread that removes expired locks.
//!
//! One thread per open [`FileLocker`](crate::FileLocker), woken by a
//! crossbeam-channel ticker and stopped through a second channel when the
//! last handle drops. Of all the processes (and handles) sharing a file, only
//! the one holding the file's sweeper lock (see `ranges.rs`) sweeps; when it
//! exits, the next tick of another elects itself. A sweeper that is alive but
//! does not sweep (stopped with SIGSTOP, or hung) keeps the lock, so every
//! other handle stands in for it: one that finds a lock expired for more
//! than two of its intervals sweeps itself.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Sender, select, tick};

use super::ranges::Held;
use super::store::Store;
use crate::clock::Clock;
use crate::error::{Error, Result};

/// Receives the errors of the background cleanup.
pub(crate) type ErrorCallback = Arc<dyn Fn(&Error) + Send + Sync>;

/// A running cleanup thread; dropping it stops and joins the thread.
#[derive(Debug)]
pub(crate) struct Sweeper {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sweeper {
    pub(crate) fn spawn(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        interval: Duration,
        on_error: ErrorCallback,
    ) -> Result<Sweeper> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let path = store.path().to_owned();
        let thread = thread::Builder::new()
            .name("hostlock-cleanup".into())
            .spawn(move || {
                let ticks = tick(interval);
                let mut elected: Option<Held> = None;
                loop {
                    select! {
                        recv(stopped) -> _ => return,
                        recv(ticks) -> _ => {
                            let sweep = sweep_once(&store, clock.as_ref(), interval, &mut elected);
                            if let Err(e) = sweep {
                                report(&on_error, &e);
                            }
                        }
                    }
                }
            })
            .map_err(|e| Error::io(path, "start the cleanup thread for", e))?;
        Ok(Sweeper {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

fn sweep_once(
    store: &Store,
    clock: &dyn Clock,
    interval: Duration,
    elected: &mut Option<Held>,
) -> Result<()> {
    if elected.is_none() {
        *elected = store.ranges().try_sweeper()?;
    }
    let now = clock.now();
    if elected.is_none() {
        // Stand in for a sweeper that has let expired locks pile up.
        let overdue = now
            .checked_sub(interval.saturating_mul(2))
            .is_some_and(|before| store.expired_before(before).unwrap_or(false));
        if !overdue {
            return Ok(());
        }
    }
    match store.cleanup(now) {
        // A busy file is swept at the next tick.
        Ok(_) | Err(Error::Busy { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn report(on_error: &ErrorCallback, e: &Error) {
    // The callback is the user's code; a panic in it must not end the thread.
    let _ = panic::catch_unwind(AssertUnwindSafe(|| on_error(e)));
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        // Dropping the sender disconnects the channel, which wakes the thread.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The default error callback: one line on standard error.
pub(crate) fn print_error(e: &Error) {
    eprintln!("hostlock: background cleanup failed: {e}");
}
