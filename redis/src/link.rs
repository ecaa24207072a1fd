//! One connection to the server, behind a mutex: made on first use, dropped
//! after an error that leaves it unusable, and made again by the next call.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hostlock::{Error, Result};
use redis::{Client, Connection, RedisError, RedisResult};

/// After this long unused, a connection is checked with a `PING` before a
/// script is sent on it: a server restarted meanwhile closed it, and the
/// `PING` (which can safely be sent again) finds that out, rather than a
/// script whose fate the error would leave unknown.
const IDLE_CHECK: Duration = Duration::from_millis(200);

/// A connection to one server, shared by the threads of a locker.
#[derive(Debug)]
pub(crate) struct Link {
    client: Client,
    store: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    open: Mutex<Option<Open>>,
}

struct Open {
    connection: Connection,
    used: Instant,
}

impl std::fmt::Debug for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Open")
            .field("used", &self.used)
            .finish_non_exhaustive()
    }
}

impl Link {
    pub(crate) fn new(
        client: Client,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Link {
        let store = format!("redis {}", client.get_connection_info().addr());
        Link {
            client,
            store,
            connect_timeout,
            command_timeout,
            open: Mutex::new(None),
        }
    }

    /// Another link to the same server, with a connection of its own.
    pub(crate) fn sibling(&self) -> Link {
        Link::new(
            self.client.clone(),
            self.connect_timeout,
            self.command_timeout,
        )
    }

    /// The server, as errors name it: `redis 127.0.0.1:6379`.
    pub(crate) fn store(&self) -> &str {
        &self.store
    }

    /// Runs `f` on the connection, connecting first if need be. An
    /// `idempotent` call (one that may safely run twice) whose connection,
    /// made earlier, turns out to have been closed (the server restarted) is
    /// run again once on a new connection.
    ///
    /// # Errors
    /// [`Error::Backend`] naming the server: transient when the server could
    /// not be reached or the connection failed.
    pub(crate) fn run<R>(
        &self,
        idempotent: bool,
        f: impl Fn(&mut Connection) -> RedisResult<R>,
    ) -> Result<R> {
        let mut open = self.lock();
        let (connection, fresh) = self.connection(&mut open)?;
        let mut outcome = f(connection);
        if let Err(e) = &outcome
            && idempotent
            && !fresh
            && (e.is_io_error() || e.is_connection_dropped())
        {
            *open = None;
            let (connection, _) = self.connection(&mut open)?;
            outcome = f(connection);
        }
        self.settle(&mut open, outcome)
    }

    /// Whether a connection is open now (it may still turn out broken).
    pub(crate) fn is_open(&self) -> bool {
        self.lock().is_some()
    }

    fn lock(&self) -> MutexGuard<'_, Option<Open>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The open connection, and whether it was made by this call.
    fn connection<'a>(&self, open: &'a mut Option<Open>) -> Result<(&'a mut Connection, bool)> {
        if open.as_ref().is_some_and(|o| o.used.elapsed() > IDLE_CHECK) {
            let pinged = open
                .as_mut()
                .map(|o| redis::cmd("PING").query::<String>(&mut o.connection));
            if !matches!(pinged, Some(Ok(_))) {
                *open = None;
            }
        }
        let fresh = open.is_none();
        if fresh {
            *open = Some(Open {
                connection: self.connect().map_err(|e| self.error(&e))?,
                used: Instant::now(),
            });
        }
        match open.as_mut() {
            Some(o) => Ok((&mut o.connection, fresh)),
            None => Err(self.backend("no connection".to_owned(), true)),
        }
    }

    fn connect(&self) -> RedisResult<Connection> {
        let connection = self
            .client
            .get_connection_with_timeout(self.connect_timeout)?;
        connection.set_read_timeout(Some(self.command_timeout))?;
        connection.set_write_timeout(Some(self.command_timeout))?;
        Ok(connection)
    }

    fn settle<R>(&self, open: &mut Option<Open>, outcome: RedisResult<R>) -> Result<R> {
        match outcome {
            Ok(value) => {
                if let Some(o) = open.as_mut() {
                    o.used = Instant::now();
                }
                Ok(value)
            }
            Err(e) => {
                // A connection that failed, or timed out with a reply perhaps
                // still on its way, cannot be trusted with another command.
                if e.is_unrecoverable_error() || e.is_io_error() || e.is_timeout() {
                    *open = None;
                }
                Err(self.error(&e))
            }
        }
    }

    /// An error of the server or of the connection to it.
    pub(crate) fn error(&self, e: &RedisError) -> Error {
        let transient = e.is_io_error()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_connection_dropped()
            || matches!(
                e.retry_method(),
                redis::RetryMethod::Reconnect
                    | redis::RetryMethod::WaitAndRetry
                    | redis::RetryMethod::RetryImmediately
            );
        let detail = if e.is_connection_refusal() {
            format!("cannot connect, is the server running? ({e})")
        } else if e.is_timeout() {
            format!(
                "no answer within {:?} (connect) / {:?} (command): {e}",
                self.connect_timeout, self.command_timeout
            )
        } else if e.is_io_error() || e.is_connection_dropped() {
            format!("the connection failed ({e}); the next call connects again")
        } else {
            e.to_string()
        };
        self.backend(detail, transient)
    }

    /// A failure of the server, named.
    pub(crate) fn backend(&self, detail: String, transient: bool) -> Error {
        Error::Backend {
            store: self.store.clone(),
            detail,
            transient,
        }
    }
}
