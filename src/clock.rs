//! Where lockers read the current time.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// A source of wall-clock time.
///
/// Lockers decide whether a lock has expired by comparing its expiry with
/// [`Clock::now`]. Production code uses [`SystemClock`]; tests inject a
/// [`ManualClock`] so that expiry happens when the test says, without sleeping.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's wall clock ([`SystemTime::now`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to; for tests.
///
/// Clones share one time, so a test keeps a clone and hands another to the
/// locker it is testing.
///
/// ```
/// use hostlock::{Clock, ManualClock};
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000));
/// let seen_by_locker = clock.clone();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(seen_by_locker.now(), UNIX_EPOCH + Duration::from_secs(1_005));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<Mutex<SystemTime>>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: SystemTime) -> ManualClock {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock to `time`, forwards or backwards.
    pub fn set(&self, time: SystemTime) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = time;
    }

    /// Moves the clock forward by `by`. A step past the end of what
    /// [`SystemTime`] can represent leaves the clock at its last representable
    /// instant instead of panicking.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now
            .checked_add(by)
            .unwrap_or_else(|| latest_time_after(*now));
    }
}

// The last instant representable after `from`, found by halving the step.
fn latest_time_after(from: SystemTime) -> SystemTime {
    let mut time = from;
    let mut step = Duration::from_secs(u64::MAX / 2);
    while !step.is_zero() {
        if let Some(later) = time.checked_add(step) {
            time = later;
        } else {
            step /= 2;
        }
    }
    time
}

impl Default for ManualClock {
    /// A clock stopped at the current system time.
    fn default() -> ManualClock {
        ManualClock::new(SystemTime::now())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .finish()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

/// Nanoseconds on the host's monotonic clock (`CLOCK_MONOTONIC`), which every
/// process of the host shares and no one sets: the measure of waits that
/// other processes judge, such as a waiter's limit in a lock file's queue.
pub(crate) fn monotonic_nanos() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_past_the_end_of_time_saturates() {
        let clock = ManualClock::default();
        clock.advance(Duration::MAX);
        let end = clock.now();
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now(), end);
        assert!(end > SystemTime::now());
    }
}
