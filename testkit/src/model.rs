//! The model of `docs/semantics.md`: what every locker must answer.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use hostlock::{Error, LockInfo, LockState, LockValue, Result, latest_expiry};

use crate::ops::{Op, TOKENS, counted, lock_of};

/// What `holder.alive` says of a lock not bound to a session, for each
/// locker of [`ops_model`]: unknown in a file (row H2); this very process in a
/// `MemoryLocker`.
pub(crate) const UNBOUND_ALIVE: [Option<bool>; 2] = [None, Some(true)];

/// A result, as the model and the lockers report it.
pub(crate) type Reply = std::result::Result<Outcome, Failure>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    Bool(bool),
    Count(usize),
    Lock(Option<LockValue<String>>),
    Info(Option<Seen>),
    List(Vec<Seen>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    InvalidArgument,
    /// Any other error: the model never expects one.
    Other(String),
}

pub(crate) fn reply<R>(result: Result<R>, outcome: impl FnOnce(R) -> Outcome) -> Reply {
    result.map(outcome).map_err(|e| match e {
        Error::InvalidArgument { .. } => Failure::InvalidArgument,
        other => Failure::Other(other.to_string()),
    })
}

/// What `info` and `list` report of a lock, with the key as an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) key: Option<usize>,
    pub(crate) value: String,
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) has_token: bool,
    pub(crate) fence: Option<u64>,
    pub(crate) acquired_at: SystemTime,
    pub(crate) pid: u32,
    pub(crate) alive: Option<bool>,
    pub(crate) state: LockState,
}

impl Seen {
    pub(crate) fn of(info: LockInfo<String>, keys: &[String; 3]) -> Seen {
        Seen {
            key: keys.iter().position(|k| *k == info.key),
            value: info.value,
            expires_at: info.expires_at,
            has_token: info.has_token,
            fence: Some(info.fence),
            acquired_at: info.acquired_at,
            pid: info.holder.pid,
            alive: info.holder.alive,
            state: info.state,
        }
    }
}

/// What the model says a step returns.
pub(crate) enum Expected {
    Reply(Reply),
    /// `info` or `list`, whose reply holds each locker's own fences: see
    /// [`Model::inspect`].
    Inspect,
}

impl Expected {
    /// The reply the locker `subject` must give for `op`, on the model as
    /// the step left it.
    pub(crate) fn reply(
        &self,
        model: &Model,
        op: &Op,
        reading: SystemTime,
        subject: usize,
    ) -> Reply {
        match self {
            Expected::Reply(reply) => reply.clone(),
            Expected::Inspect => model.inspect(op, reading, subject),
        }
    }
}

/// What is stored under a key, expired or not.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) lock: LockValue<String>,
    pub(crate) acquired: SystemTime,
    /// The fence each locker gave the lock, learnt after the step that took it.
    pub(crate) fences: [Option<u64>; 2],
}

/// The state of `docs/semantics.md`: the entry under each key (by index).
#[derive(Debug, Default, Clone)]
pub(crate) struct Model {
    pub(crate) entries: BTreeMap<usize, Entry>,
}

impl Model {
    /// The live entry under `key` when the clock reads `reading`.
    pub(crate) fn live(&self, key: usize, reading: SystemTime) -> Option<&Entry> {
        let now = counted(reading);
        self.entries
            .get(&key)
            .filter(|entry| !entry.lock.is_expired_at(now))
    }

    /// Applies `op` when the clock reads `reading`, and returns its result.
    pub(crate) fn apply(&mut self, op: &Op, reading: SystemTime) -> Expected {
        let now = counted(reading);
        // What a lock file can store (row V4).
        let storable = |at: SystemTime| (UNIX_EPOCH..=latest_expiry()).contains(&at);
        let reply = match *op {
            Op::Acquire {
                key,
                value,
                expires,
                token,
            } => {
                let lock = lock_of(value, expires, token, reading);
                if lock.token.as_deref() == Some("") || !lock.expires_at.is_none_or(storable) {
                    // V3, V4.
                    Err(Failure::InvalidArgument)
                } else if self.live(key, reading).is_some() {
                    // A2, A5.
                    Ok(Outcome::Bool(false))
                } else if lock.is_expired_at(now) {
                    // A4.
                    self.entries.remove(&key);
                    Ok(Outcome::Bool(true))
                } else {
                    // A1, A3, A6.
                    let entry = Entry {
                        lock,
                        acquired: now,
                        fences: [None; 2],
                    };
                    self.entries.insert(key, entry);
                    Ok(Outcome::Bool(true))
                }
            }
            // R1, R2, R3.
            Op::Release(key) => Ok(Outcome::Bool(
                self.entries
                    .remove(&key)
                    .is_some_and(|entry| !entry.lock.is_expired_at(now)),
            )),
            // F1, F2, F3.
            Op::ForceRelease(key) => {
                self.entries.remove(&key);
                Ok(Outcome::Done)
            }
            Op::Touch { key, token, at } => {
                let token = TOKENS[token];
                let at = at.at(reading);
                if token.is_empty() || !storable(at) {
                    Err(Failure::InvalidArgument)
                } else {
                    // T1 to T6.
                    match self.entries.get_mut(&key) {
                        Some(entry)
                            if !entry.lock.is_expired_at(now)
                                && entry.lock.token.as_deref() == Some(token)
                                && at > now =>
                        {
                            entry.lock.expires_at = Some(at);
                            Ok(Outcome::Bool(true))
                        }
                        _ => Ok(Outcome::Bool(false)),
                    }
                }
            }
            Op::ReleaseIfOwner { key, token } => {
                let token = TOKENS[token];
                if token.is_empty() {
                    Err(Failure::InvalidArgument)
                } else {
                    // O1 to O6.
                    match self.entries.get(&key) {
                        Some(entry) if entry.lock.token.as_deref() == Some(token) => {
                            let live = !entry.lock.is_expired_at(now);
                            self.entries.remove(&key);
                            Ok(Outcome::Bool(live))
                        }
                        _ => Ok(Outcome::Bool(false)),
                    }
                }
            }
            // G1, G2, G3.
            Op::Get(key) => Ok(Outcome::Lock(
                self.live(key, reading).map(|entry| entry.lock.clone()),
            )),
            // X1, X2, X3.
            Op::Exists(key) => Ok(Outcome::Bool(self.live(key, reading).is_some())),
            Op::Info(_) | Op::List { .. } => return Expected::Inspect,
            // C1, C2.
            Op::Cleanup => {
                let before = self.entries.len();
                self.entries
                    .retain(|_, entry| !entry.lock.is_expired_at(now));
                Ok(Outcome::Count(before - self.entries.len()))
            }
            Op::Advance(_) | Op::SetClock(_) | Op::Reopen => Ok(Outcome::Done),
        };
        Expected::Reply(reply)
    }

    /// The result of `info` or `list` (rows I1, I2) for the locker `subject`
    /// when the clock reads `reading`.
    pub(crate) fn inspect(&self, op: &Op, reading: SystemTime, subject: usize) -> Reply {
        let now = counted(reading);
        let seen = |key: usize, entry: &Entry| Seen {
            key: Some(key),
            value: entry.lock.value.clone(),
            expires_at: entry.lock.expires_at,
            has_token: entry.lock.token.is_some(),
            fence: entry.fences[subject],
            acquired_at: entry.acquired,
            pid: std::process::id(),
            alive: UNBOUND_ALIVE[subject],
            state: if entry.lock.is_expired_at(now) {
                LockState::Expired
            } else {
                LockState::Live
            },
        };
        match *op {
            Op::Info(key) => Ok(Outcome::Info(
                self.entries.get(&key).map(|entry| seen(key, entry)),
            )),
            Op::List { include_expired } => Ok(Outcome::List(
                self.entries
                    .iter()
                    .filter(|(_, entry)| include_expired || !entry.lock.is_expired_at(now))
                    .map(|(&key, entry)| seen(key, entry))
                    .collect(),
            )),
            _ => unreachable!("only info and list are inspections"),
        }
    }
}
