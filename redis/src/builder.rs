//! The builder of a `RedisLocker`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use hostlock::{Clock, Error, Result, SystemClock};

use crate::locker::{RedisLocker, Settings};

/// The prefix of every Redis key a locker uses, unless set.
pub const DEFAULT_PREFIX: &str = "hostlock:";
/// How long a session outlives its last heartbeat, unless set.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest session timeout accepted.
const SHORTEST_SESSION_TIMEOUT: Duration = Duration::from_millis(30);

/// Settings for a [`RedisLocker`]; made by [`RedisLocker::builder`].
///
/// ```no_run
/// use hostlock::SystemClock;
/// use hostlock_redis::RedisLocker;
/// use std::time::Duration;
///
/// let locker: RedisLocker<String> = RedisLocker::builder("redis://127.0.0.1:6379")
///     .clock(SystemClock)
///     .prefix("myapp:locks:")
///     .session_timeout(Duration::from_secs(3))
///     .connect_timeout(Duration::from_millis(500))
///     .command_timeout(Duration::from_secs(2))
///     .open()?;
/// # Ok::<(), hostlock::Error>(())
/// ```
#[must_use = "a builder does nothing until `open` is called"]
pub struct RedisLockerBuilder<T> {
    url: String,
    clock: Arc<dyn Clock>,
    prefix: String,
    session_timeout: Duration,
    connect_timeout: Duration,
    command_timeout: Duration,
    value: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for RedisLockerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLockerBuilder")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("session_timeout", &self.session_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl<T> RedisLockerBuilder<T> {
    pub(crate) fn new(url: &str) -> RedisLockerBuilder<T> {
        RedisLockerBuilder {
            url: url.to_owned(),
            clock: Arc::new(SystemClock),
            prefix: DEFAULT_PREFIX.to_owned(),
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(10),
            value: PhantomData,
        }
    }

    /// The clock that judges the expiry of locks (default: the system's wall
    /// clock). Every process sharing the server must use clocks that agree.
    pub fn clock(mut self, clock: impl Clock + 'static) -> RedisLockerBuilder<T> {
        self.clock = Arc::new(clock);
        self
    }

    /// The prefix of every Redis key the locker uses (default `hostlock:`).
    /// Lockers with different prefixes share nothing, on the same server.
    pub fn prefix(mut self, prefix: impl Into<String>) -> RedisLockerBuilder<T> {
        self.prefix = prefix.into();
        self
    }

    /// How long the locker's session outlives its last heartbeat (default
    /// 5 s; the heartbeat runs every third of it). A lease taken through a
    /// guard is free at most this long after its holder's process died, or
    /// stopped, or lost the server.
    pub fn session_timeout(mut self, timeout: Duration) -> RedisLockerBuilder<T> {
        self.session_timeout = timeout;
        self
    }

    /// How long to wait for a connection to the server (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> RedisLockerBuilder<T> {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for the answer to one command (default 10 s).
    pub fn command_timeout(mut self, timeout: Duration) -> RedisLockerBuilder<T> {
        self.command_timeout = timeout;
        self
    }

    /// Connects, starts the session and its heartbeat thread.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a URL that does not parse, an empty
    /// prefix, a zero timeout or a session timeout under 30 ms;
    /// [`Error::Backend`], naming the server, if it cannot be reached;
    /// [`Error::Thread`] if the heartbeat thread cannot start.
    pub fn open(self) -> Result<RedisLocker<T>> {
        let invalid =
            |argument: &'static str, reason: String| Error::InvalidArgument { argument, reason };
        if self.prefix.is_empty() {
            return Err(invalid(
                "prefix",
                "an empty prefix would mix the locks with the server's other keys".to_owned(),
            ));
        }
        if self.session_timeout < SHORTEST_SESSION_TIMEOUT {
            return Err(invalid(
                "session_timeout",
                format!(
                    "{:?} is shorter than {SHORTEST_SESSION_TIMEOUT:?}: the heartbeat could not keep up",
                    self.session_timeout
                ),
            ));
        }
        if self.connect_timeout.is_zero() || self.command_timeout.is_zero() {
            return Err(invalid(
                "timeout",
                "connect and command timeouts must be positive".to_owned(),
            ));
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| invalid("url", format!("{:?} is not a Redis URL: {e}", self.url)))?;
        RedisLocker::start(Settings {
            client,
            clock: self.clock,
            prefix: self.prefix,
            session_timeout: self.session_timeout,
            connect_timeout: self.connect_timeout,
            command_timeout: self.command_timeout,
        })
    }
}
