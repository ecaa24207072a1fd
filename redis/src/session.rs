//! A locker's session: a key on the server whose TTL a heartbeat thread
//! renews. Leases are bound to it; once it is gone (the locker dropped, its
//! process died or stopped renewing), they count as free.
//!
//! The server judges the TTL on its own clock, so the locker's clock (which
//! may be a test's `ManualClock`) never ends a session.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hostlock::{Error, Result};

use crate::link::Link;

/// The session of one locker (and its clones).
#[derive(Debug)]
pub(crate) struct Session {
    prefix: String,
    timeout: Duration,
    id: Mutex<String>,
}

impl Session {
    /// Starts a session on the server.
    ///
    /// # Errors
    /// The server could not be reached.
    pub(crate) fn start(prefix: &str, timeout: Duration, link: &Link) -> Result<Session> {
        let session = Session {
            prefix: prefix.to_owned(),
            timeout,
            id: Mutex::new(String::new()),
        };
        session.renew(link, "")?;
        Ok(session)
    }

    fn lock(&self) -> MutexGuard<'_, String> {
        self.id.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current session id.
    pub(crate) fn id(&self) -> String {
        self.lock().clone()
    }

    fn key(&self, id: &str) -> String {
        format!("{}session:{id}", self.prefix)
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Replaces the session `stale`, found gone, with a new one (unless that
    /// happened already), and returns the id now in use. A session that
    /// ended never comes back: the leases bound to it stay free.
    ///
    /// # Errors
    /// The server could not be reached.
    pub(crate) fn renew(&self, link: &Link, stale: &str) -> Result<String> {
        let mut id = self.lock();
        if *id != stale {
            return Ok(id.clone());
        }
        let fresh = new_id();
        let key = self.key(&fresh);
        let millis = self.millis();
        link.run(true, |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(std::process::id())
                .arg("PX")
                .arg(millis)
                .query::<()>(c)
        })?;
        id.clone_from(&fresh);
        Ok(fresh)
    }

    /// Extends the session's TTL, or starts a new session if it had ended.
    ///
    /// # Errors
    /// The server could not be reached.
    fn beat(&self, link: &Link) -> Result<()> {
        let id = self.id();
        let key = self.key(&id);
        let millis = self.millis();
        let kept: i64 = link.run(true, |c| {
            redis::cmd("PEXPIRE").arg(&key).arg(millis).query(c)
        })?;
        if kept == 0 {
            self.renew(link, &id)?;
        }
        Ok(())
    }

    /// Ends the session: the leases bound to it count as free at once.
    pub(crate) fn end(&self, link: &Link) {
        let key = self.key(&self.id());
        let _ = link.run(true, |c| redis::cmd("DEL").arg(&key).query::<i64>(c));
    }
}

/// The thread that keeps a session alive, renewing its TTL every third of
/// it; stopped and joined when dropped.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts renewing `session` over a connection of its own (`link`), so
    /// that a slow call of the locker does not hold it up.
    ///
    /// # Errors
    /// [`Error::Thread`] if the thread cannot be started.
    pub(crate) fn start(session: Arc<Session>, link: Link) -> Result<Heartbeat> {
        let interval = session.timeout / 3;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("hostlock-redis-heartbeat".to_owned())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    // A failure (the server down) is retried at the next beat;
                    // the session ends if it lasts past the timeout.
                    let _ = session.beat(&link);
                }
            })
            .map_err(|source| Error::Thread {
                name: "hostlock-redis heartbeat",
                source,
            })?;
        Ok(Heartbeat {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A fresh random session id: 128 bits, in hex.
fn new_id() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let half = || {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
        hasher.write_u32(std::process::id());
        hasher.write_u128(nanos);
        hasher.finish()
    };
    format!("{:016x}{:016x}", half(), half())
}
