//! `RedisLocker`: the handle, what its clones share, and the operations,
//! each one script on the server.

use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use hostlock::{Clock, Error, Lease, LockInfo, LockValue, MAX_VALUE_LEN, Result};
use redis::{Script, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::builder::RedisLockerBuilder;
use crate::checks;
use crate::link::Link;
use crate::record::{self, Reply, State, Stored};
use crate::scripts::Scripts;
use crate::session::{Heartbeat, Session};

/// The first pause of a waiter between two looks at the key it waits for.
const FIRST_POLL: Duration = Duration::from_millis(2);
/// The longest pause: a waiter in another process notices a release within
/// about this long.
const LAST_POLL: Duration = Duration::from_millis(25);

/// Locks kept on one Redis server, shared by every process (on any host)
/// that uses the same server and prefix.
///
/// A cheap handle: clones share one connection, one session and its
/// heartbeat thread, which stops when the last clone (or guard) goes.
/// See the [crate documentation](crate) for what it stores, which clock
/// decides what, and its limits.
///
/// ```no_run
/// use hostlock::{LeaseLocker, Locker, LockValue};
/// use hostlock_redis::RedisLocker;
/// use std::time::Duration;
///
/// let locker: RedisLocker<String> = RedisLocker::open("redis://127.0.0.1:6379")?;
/// assert!(locker.acquire("nightly", LockValue::new("host-a".to_owned()))?);
/// locker.release("nightly")?;
///
/// let guard = locker.try_lock("report", "host-a".to_owned(), Some(Duration::from_secs(30)))?;
/// # Ok::<(), hostlock::Error>(())
/// ```
pub struct RedisLocker<T> {
    pub(crate) inner: Arc<Inner>,
    value: PhantomData<fn(T) -> T>,
}

impl<T> Clone for RedisLocker<T> {
    fn clone(&self) -> RedisLocker<T> {
        RedisLocker {
            inner: Arc::clone(&self.inner),
            value: PhantomData,
        }
    }
}

impl<T> fmt::Debug for RedisLocker<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLocker")
            .field("store", &self.inner.link.store())
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// What the clones of a locker share.
pub(crate) struct Inner {
    link: Link,
    scripts: Scripts,
    prefix: String,
    clock: Arc<dyn Clock>,
    session: Arc<Session>,
    heartbeat: Option<Heartbeat>,
    /// Counts the releases made through this locker, so that its waiting
    /// threads wake at once.
    released: (Mutex<u64>, Condvar),
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Stop renewing, then end the session: leases still bound to it
        // (none, unless a guard was leaked) count as free at once.
        self.heartbeat.take();
        self.session.end(&self.link);
    }
}

/// What `open` needs, from the builder.
pub(crate) struct Settings {
    pub(crate) client: redis::Client,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) prefix: String,
    pub(crate) session_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
}

impl<T> RedisLocker<T> {
    /// Connects to the server at `url` (`redis://127.0.0.1:6379`, say) with
    /// the default settings: the system clock, the prefix `hostlock:`, a
    /// session timeout of 5 s. See [`builder`](Self::builder) for others.
    ///
    /// ```no_run
    /// use hostlock_redis::RedisLocker;
    ///
    /// let locker: RedisLocker<String> = RedisLocker::open("redis://127.0.0.1:6379")?;
    /// # Ok::<(), hostlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a URL that does not parse;
    /// [`Error::Backend`], naming the server, if it cannot be reached.
    pub fn open(url: &str) -> Result<RedisLocker<T>> {
        RedisLocker::builder(url).open()
    }

    /// A builder for a locker with other settings.
    ///
    /// ```no_run
    /// use hostlock_redis::RedisLocker;
    /// use std::time::Duration;
    ///
    /// let locker: RedisLocker<u64> = RedisLocker::builder("redis://127.0.0.1:6379")
    ///     .prefix("billing:locks:")
    ///     .session_timeout(Duration::from_secs(2))
    ///     .open()?;
    /// # Ok::<(), hostlock::Error>(())
    /// ```
    pub fn builder(url: &str) -> RedisLockerBuilder<T> {
        RedisLockerBuilder::new(url)
    }

    pub(crate) fn start(settings: Settings) -> Result<RedisLocker<T>> {
        let link = Link::new(
            settings.client,
            settings.connect_timeout,
            settings.command_timeout,
        );
        let session = Arc::new(Session::start(
            &settings.prefix,
            settings.session_timeout,
            &link,
        )?);
        let heartbeat = Heartbeat::start(Arc::clone(&session), link.sibling())?;
        Ok(RedisLocker {
            inner: Arc::new(Inner {
                link,
                scripts: Scripts::new(),
                prefix: settings.prefix,
                clock: settings.clock,
                session,
                heartbeat: Some(heartbeat),
                released: (Mutex::new(0), Condvar::new()),
            }),
            value: PhantomData,
        })
    }

    /// The server, as errors name it: `redis 127.0.0.1:6379`.
    pub fn store(&self) -> &str {
        self.inner.link.store()
    }

    /// The prefix of every Redis key this locker uses.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Whether the locker has a connection open to the server right now. A
    /// dropped connection is made again by the next call.
    pub fn is_connected(&self) -> bool {
        self.inner.link.is_open()
    }
}

impl Inner {
    /// The locker's clock, as stored: read once per call, passed to the
    /// script.
    fn now(&self) -> Result<(SystemTime, String)> {
        let now = panic::catch_unwind(AssertUnwindSafe(|| self.clock.now())).map_err(|p| {
            let detail = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            Error::Panicked { detail }
        })?;
        Ok((now, checks::now(now)))
    }

    pub(crate) fn clock_now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Runs `script` with `args` after the prefix; an `idempotent` one (that
    /// may safely run twice) is sent again if its connection turns out to
    /// have been closed.
    fn run(&self, script: &Script, args: &[&[u8]], idempotent: bool) -> Result<Reply> {
        let mut call = script.prepare_invoke();
        call.arg(self.prefix.as_bytes());
        for arg in args {
            call.arg(*arg);
        }
        let value: Value = self.link.run(idempotent, |c| call.invoke(c))?;
        Reply::parse(&self.link, value)
    }

    fn call(&self, script: &Script, args: &[&[u8]], idempotent: bool) -> Result<Vec<Value>> {
        match self.run(script, args, idempotent)? {
            Reply::Ok(items) => Ok(items),
            Reply::NoSession => Err(self
                .link
                .backend("unexpected answer nosession".to_owned(), false)),
        }
    }

    fn flag(&self, script: &Script, args: &[&[u8]], idempotent: bool) -> Result<bool> {
        let items = self.call(script, args, idempotent)?;
        Ok(record::single(&self.link, &items)? == 1)
    }

    fn wake(&self) {
        let (count, changed) = &self.released;
        *lock(count) += 1;
        changed.notify_all();
    }

    fn read(&self, key: &str) -> Result<Option<Stored>> {
        checks::key(key)?;
        let (_, now) = self.now()?;
        let items = self.call(&self.scripts.read, &[key.as_bytes(), now.as_bytes()], true)?;
        match items.first() {
            None => Ok(None),
            Some(Value::Array(fields)) => Stored::parse(&self.link, key, fields).map(Some),
            Some(other) => Err(self
                .link
                .backend(format!("unexpected answer {other:?}"), false)),
        }
    }

    pub(crate) fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.read(key)?.is_some_and(|s| s.state == State::Live))
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<LockValue<T>>> {
        match self.read(key)? {
            Some(stored) if stored.state == State::Live => stored.lock(&self.link, key).map(Some),
            _ => Ok(None),
        }
    }

    pub(crate) fn info<T: DeserializeOwned>(&self, key: &str) -> Result<Option<LockInfo<T>>> {
        match self.read(key)? {
            Some(stored) => stored.info(&self.link, key).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn acquire<T: Serialize>(&self, key: &str, lock: &LockValue<T>) -> Result<bool> {
        checks::key(key)?;
        if let Some(token) = &lock.token {
            checks::token(token)?;
        }
        let expiry = lock.expires_at.map(checks::expiry).transpose()?;
        let value = encode(&lock.value)?;
        let (_, now) = self.now()?;
        let pid = std::process::id().to_string();
        self.flag(
            &self.scripts.acquire,
            &[
                key.as_bytes(),
                now.as_bytes(),
                &value,
                expiry.as_deref().unwrap_or("").as_bytes(),
                lock.token.as_deref().unwrap_or("").as_bytes(),
                pid.as_bytes(),
            ],
            false,
        )
    }

    pub(crate) fn release(&self, key: &str) -> Result<bool> {
        checks::key(key)?;
        let (_, now) = self.now()?;
        let released = self.flag(
            &self.scripts.release,
            &[key.as_bytes(), now.as_bytes()],
            false,
        );
        self.wake();
        released
    }

    pub(crate) fn force_release(&self, key: &str) -> Result<()> {
        checks::key(key)?;
        let done = self.call(&self.scripts.force_release, &[key.as_bytes()], true);
        self.wake();
        done.map(drop)
    }

    pub(crate) fn cleanup(&self) -> Result<usize> {
        let (_, now) = self.now()?;
        let items = self.call(&self.scripts.cleanup, &[now.as_bytes()], false);
        self.wake();
        let removed = record::single(&self.link, &items?)?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }

    pub(crate) fn touch(&self, key: &str, token: &str, expires_at: SystemTime) -> Result<bool> {
        checks::key(key)?;
        checks::token(token)?;
        let expiry = checks::expiry(expires_at)?;
        let (_, now) = self.now()?;
        self.flag(
            &self.scripts.touch,
            &[
                key.as_bytes(),
                now.as_bytes(),
                token.as_bytes(),
                expiry.as_bytes(),
            ],
            true,
        )
    }

    pub(crate) fn release_if_owner(&self, key: &str, token: &str) -> Result<bool> {
        checks::key(key)?;
        checks::token(token)?;
        let (_, now) = self.now()?;
        let released = self.flag(
            &self.scripts.release_if_owner,
            &[key.as_bytes(), now.as_bytes(), token.as_bytes()],
            false,
        );
        self.wake();
        released
    }

    pub(crate) fn list<T: DeserializeOwned>(
        &self,
        include_expired: bool,
    ) -> Result<Vec<Result<LockInfo<T>>>> {
        let (_, now) = self.now()?;
        let all: &[u8] = if include_expired { b"1" } else { b"0" };
        let items = self.call(&self.scripts.list, &[now.as_bytes(), all], true)?;
        Ok(items.iter().map(|item| self.listed(item)).collect())
    }

    fn listed<T: DeserializeOwned>(&self, item: &Value) -> Result<LockInfo<T>> {
        let unexpected = || {
            self.link
                .backend(format!("unexpected answer {item:?}"), false)
        };
        let Value::Array(fields) = item else {
            return Err(unexpected());
        };
        let Some((key, fields)) = fields.split_first() else {
            return Err(unexpected());
        };
        let key = record::text(key).ok_or_else(unexpected)?;
        if let [marker, message] = fields
            && record::text(marker).as_deref() == Some("!")
        {
            let message = record::text(message).unwrap_or_default();
            return Err(self.link.backend(message, false));
        }
        Stored::parse(&self.link, &key, fields)?.info(&self.link, &key)
    }

    pub(crate) fn acquire_lease<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
        token: &str,
        ticket: Option<u64>,
    ) -> Result<Option<Lease>> {
        checks::key(key)?;
        checks::token(token)?;
        let value = encode(value)?;
        let (now_time, now) = self.now()?;
        let expires_at = ttl.map(|ttl| checks::after(now_time, ttl));
        let expiry = expires_at.map(checks::expiry).transpose()?;
        let ticket = ticket.map(|t| t.to_string());
        let pid = std::process::id().to_string();
        let mut session = self.session.id();
        for _ in 0..2 {
            let reply = self.run(
                &self.scripts.lease,
                &[
                    key.as_bytes(),
                    now.as_bytes(),
                    &value,
                    expiry.as_deref().unwrap_or("").as_bytes(),
                    token.as_bytes(),
                    pid.as_bytes(),
                    session.as_bytes(),
                    ticket.as_deref().unwrap_or("").as_bytes(),
                ],
                false,
            )?;
            match reply {
                Reply::Ok(items) if items.is_empty() => return Ok(None),
                Reply::Ok(items) => {
                    let fence = record::single(&self.link, &items)?;
                    return Ok(Some(Lease::new(fence, expires_at)));
                }
                Reply::NoSession => session = self.session.renew(&self.link, &session)?,
            }
        }
        Err(self.session_lost())
    }

    fn session_lost(&self) -> Error {
        self.link.backend(
            "this locker's session ended on the server as soon as it was started; is the \
             session timeout shorter than a round trip?"
                .to_owned(),
            true,
        )
    }

    pub(crate) fn detach(
        &self,
        key: &str,
        token: &str,
        expires_at: Option<SystemTime>,
    ) -> Result<bool> {
        checks::key(key)?;
        checks::token(token)?;
        let expiry = expires_at.map(checks::expiry).transpose()?;
        let (_, now) = self.now()?;
        self.flag(
            &self.scripts.detach,
            &[
                key.as_bytes(),
                now.as_bytes(),
                token.as_bytes(),
                expiry.as_deref().unwrap_or("").as_bytes(),
            ],
            true,
        )
    }

    pub(crate) fn enqueue(&self, key: &str, max_wait: Option<Duration>) -> Result<u64> {
        checks::key(key)?;
        // A wait limit beyond a century is no limit.
        let limit = max_wait
            .filter(|wait| *wait < Duration::from_secs(100 * 365 * 86_400))
            .map(|wait| wait.as_millis().max(1).to_string());
        let mut session = self.session.id();
        for _ in 0..2 {
            let reply = self.run(
                &self.scripts.enqueue,
                &[
                    key.as_bytes(),
                    session.as_bytes(),
                    limit.as_deref().unwrap_or("").as_bytes(),
                ],
                false,
            )?;
            match reply {
                Reply::Ok(items) => return record::single(&self.link, &items),
                Reply::NoSession => session = self.session.renew(&self.link, &session)?,
            }
        }
        Err(self.session_lost())
    }

    pub(crate) fn dequeue(&self, key: &str, ticket: u64) -> Result<()> {
        checks::key(key)?;
        let ticket = ticket.to_string();
        let done = self.call(
            &self.scripts.dequeue,
            &[key.as_bytes(), ticket.as_bytes()],
            true,
        );
        self.wake();
        done.map(drop)
    }

    pub(crate) fn waiters(&self, key: &str) -> Result<usize> {
        checks::key(key)?;
        let items = self.call(&self.scripts.waiters, &[key.as_bytes()], true)?;
        let count = record::single(&self.link, &items)?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    /// Whether `key` is free for the holder of `ticket` (for anyone,
    /// without one), and how many waiters are queued ahead of it (without
    /// a ticket: how many are queued).
    fn ready(&self, key: &str, ticket: Option<u64>) -> Result<(bool, u64)> {
        checks::key(key)?;
        let (_, now) = self.now()?;
        let ticket = ticket.map(|t| t.to_string());
        let items = self.call(
            &self.scripts.ready,
            &[
                key.as_bytes(),
                now.as_bytes(),
                ticket.as_deref().unwrap_or("").as_bytes(),
            ],
            true,
        )?;
        let answer = match &items[..] {
            [ready, ahead] => record::number(ready).zip(record::number(ahead)),
            _ => None,
        };
        answer
            .map(|(ready, ahead)| (ready == 1, ahead))
            .ok_or_else(|| {
                self.link
                    .backend(format!("expected two numbers, got {items:?}"), false)
            })
    }

    /// Looks whether the key is free for `ticket`, then again after pauses
    /// (see [`Backoff`]), until it is or `timeout` passed. A release through
    /// this locker (or a clone) ends a pause at once. An error ends the
    /// wait, so that the caller's next call reports it.
    pub(crate) fn wait_for_release(&self, key: &str, ticket: Option<u64>, timeout: Duration) {
        let deadline = Instant::now().checked_add(timeout);
        let mut backoff = Backoff::new();
        loop {
            let seen = *lock(&self.released.0);
            let ahead = match self.ready(key, ticket) {
                Ok((false, ahead)) => ahead,
                _ => return,
            };
            let pause = backoff.next(ahead);
            let left = deadline.map_or(pause, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return;
            }
            let (count, changed) = &self.released;
            let count = lock(count);
            if *count == seen {
                let _ = changed
                    .wait_timeout(count, pause.min(left))
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }
}

/// The pauses of a waiter between two looks at the server: from
/// [`FIRST_POLL`], doubling up to [`LAST_POLL`] while the queue stands
/// still, and from [`FIRST_POLL`] again each time the waiter moves up.
///
/// A waiter behind others sees the key change hands before its turn comes.
/// Were its pauses to grow over the whole wait, it would be pausing 25 ms
/// by the time the waiter ahead of it is served, and every handover of a
/// busy key would wait out most of a long pause: four processes taking turns
/// on one key made a tenth of the turns that two made. Starting again when
/// the queue moves keeps the next in line looking often, while a waiter
/// behind a long hold still backs off.
#[derive(Debug)]
struct Backoff {
    pause: Duration,
    ahead: Option<u64>,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            pause: FIRST_POLL,
            ahead: None,
        }
    }

    /// The pause before the next look, for a waiter that found `ahead`
    /// waiters in front of it.
    fn next(&mut self, ahead: u64) -> Duration {
        match self.ahead {
            Some(before) if ahead >= before => self.pause = (self.pause * 2).min(LAST_POLL),
            _ => self.pause = FIRST_POLL,
        }
        self.ahead = Some(ahead);
        self.pause
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A value as stored: JSON, at most [`MAX_VALUE_LEN`] bytes.
fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::Encode {
        detail: e.to_string(),
    })?;
    if bytes.len() > MAX_VALUE_LEN {
        return Err(Error::InvalidArgument {
            argument: "value",
            reason: format!(
                "a lock's value is at most {MAX_VALUE_LEN} bytes once encoded (JSON), this one \
                 has {}",
                bytes.len()
            ),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    //! Guards the back-off of a waiter that moves up the queue: it must
    //! start again, or a busy key's handovers slow down with every waiter.

    use super::*;

    #[test]
    fn pauses_grow_while_the_queue_stands_still() {
        let mut backoff = Backoff::new();
        let pauses: Vec<_> = (0..7).map(|_| backoff.next(2)).collect();
        let ms = Duration::from_millis;
        assert_eq!(
            pauses,
            [ms(2), ms(4), ms(8), ms(16), ms(25), ms(25), ms(25)]
        );
    }

    #[test]
    fn pauses_start_again_when_the_waiter_moves_up() {
        let mut backoff = Backoff::new();
        for _ in 0..6 {
            backoff.next(2);
        }
        assert_eq!(backoff.next(1), FIRST_POLL);
        assert_eq!(backoff.next(1), FIRST_POLL * 2);
        assert_eq!(backoff.next(0), FIRST_POLL);
        // First in line behind a holder that keeps the key: it backs off.
        assert_eq!(backoff.next(0), FIRST_POLL * 2);
    }
}
