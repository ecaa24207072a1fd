//! The answers of the scripts, decoded: nothing a server sends back is
//! trusted to have the expected shape.

use std::time::SystemTime;

use hostlock::{Error, Holder, LockInfo, LockState, LockValue, Result};
use redis::Value;
use serde::de::DeserializeOwned;

use crate::checks;
use crate::link::Link;

/// How a script went.
#[derive(Debug)]
pub(crate) enum Reply {
    /// It ran; what it answered.
    Ok(Vec<Value>),
    /// The caller's session had ended; nothing was changed.
    NoSession,
}

impl Reply {
    /// Decodes a script's answer: `ok` and the answer, `!` and a message,
    /// or `nosession`.
    ///
    /// # Errors
    /// The message of a `!`, or an answer of another shape, as a
    /// non-transient [`Error::Backend`].
    pub(crate) fn parse(link: &Link, value: Value) -> Result<Reply> {
        let Value::Array(mut items) = value else {
            return Err(link.backend(format!("unexpected answer {value:?}"), false));
        };
        let head = items.first().and_then(text);
        match head.as_deref() {
            Some("ok") => {
                items.remove(0);
                Ok(Reply::Ok(items))
            }
            Some("nosession") => Ok(Reply::NoSession),
            Some("!") => {
                let message = items.get(1).and_then(text).unwrap_or_default();
                Err(link.backend(message, false))
            }
            _ => Err(link.backend(format!("unexpected answer {items:?}"), false)),
        }
    }
}

/// A string of an answer.
pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A number of an answer (an integer, or a string of digits).
pub(crate) fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        _ => None,
    }
}

/// The number an answer of one number carries.
///
/// # Errors
/// An answer that is not one number.
pub(crate) fn single(link: &Link, items: &[Value]) -> Result<u64> {
    items
        .first()
        .and_then(number)
        .ok_or_else(|| link.backend(format!("expected a number, got {items:?}"), false))
}

/// Whether a stored lock counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Live,
    Expired,
    Gone,
}

/// One stored lock, as the server sent it.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) state: State,
    pub(crate) value: Vec<u8>,
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) token: Option<String>,
    pub(crate) fence: u64,
    pub(crate) acquired_at: SystemTime,
    pub(crate) pid: u32,
    /// `None` for a lock bound to no session.
    pub(crate) alive: Option<bool>,
}

impl Stored {
    /// Decodes the fields of a lock: state, value, expiry, token, fence,
    /// acquired at, pid, session open.
    ///
    /// # Errors
    /// A field that does not decode, naming the key.
    pub(crate) fn parse(link: &Link, key: &str, fields: &[Value]) -> Result<Stored> {
        let damaged = |what: &str| {
            link.backend(
                format!("the lock {key:?} is damaged: its {what} does not decode"),
                false,
            )
        };
        let [state, value, expires, token, fence, acquired, pid, alive] = fields else {
            return Err(damaged("record"));
        };
        let state = match text(state).as_deref() {
            Some("live") => State::Live,
            Some("expired") => State::Expired,
            Some("gone") => State::Gone,
            _ => return Err(damaged("state")),
        };
        let Value::BulkString(value) = value else {
            return Err(damaged("value"));
        };
        let expires = text(expires).ok_or_else(|| damaged("expiry"))?;
        let expires_at = match expires.as_str() {
            "" => None,
            at => Some(checks::time(at).ok_or_else(|| damaged("expiry"))?),
        };
        let token = text(token).ok_or_else(|| damaged("token"))?;
        let acquired = text(acquired).ok_or_else(|| damaged("acquisition time"))?;
        let alive = match text(alive).as_deref() {
            Some("") => None,
            Some("1") => Some(true),
            Some("0") => Some(false),
            _ => return Err(damaged("session")),
        };
        Ok(Stored {
            state,
            value: value.clone(),
            expires_at,
            token: (!token.is_empty()).then_some(token),
            fence: number(fence).ok_or_else(|| damaged("fence"))?,
            acquired_at: checks::time(&acquired).ok_or_else(|| damaged("acquisition time"))?,
            pid: number(pid)
                .and_then(|p| u32::try_from(p).ok())
                .ok_or_else(|| damaged("process id"))?,
            alive,
        })
    }

    /// The lock as acquired.
    ///
    /// # Errors
    /// A value that does not decode as a `T`.
    pub(crate) fn lock<T: DeserializeOwned>(self, link: &Link, key: &str) -> Result<LockValue<T>> {
        Ok(LockValue {
            value: decode(link, key, &self.value)?,
            expires_at: self.expires_at,
            token: self.token,
        })
    }

    /// What inspection shows of the lock.
    ///
    /// # Errors
    /// A value that does not decode as a `T`.
    pub(crate) fn info<T: DeserializeOwned>(self, link: &Link, key: &str) -> Result<LockInfo<T>> {
        let state = match self.state {
            State::Live => LockState::Live,
            State::Expired => LockState::Expired,
            State::Gone => LockState::HolderGone,
        };
        let mut info = LockInfo::new(key.to_owned(), decode(link, key, &self.value)?, state);
        info.expires_at = self.expires_at;
        info.has_token = self.token.is_some();
        info.fence = self.fence;
        info.acquired_at = self.acquired_at;
        info.holder = Holder::new(self.pid, self.alive);
        Ok(info)
    }
}

/// A stored value, decoded as a `T`.
///
/// # Errors
/// [`Error::ValueType`] naming the key and the type, with the server (`redis
/// 127.0.0.1:6379`) as its path, as hostlock's other lockers report a value
/// of another type.
fn decode<T: DeserializeOwned>(link: &Link, key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::ValueType {
        path: link.store().into(),
        key: key.to_owned(),
        expected: std::any::type_name::<T>(),
        detail: e.to_string(),
    })
}
