//! Argument checks and the encoding of times, as the contract states them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hostlock::{Error, MAX_KEY_LEN, MAX_TOKEN_LEN, Result, latest_expiry};

fn invalid(argument: &'static str, reason: String) -> Error {
    Error::InvalidArgument { argument, reason }
}

/// Refuses an empty key or one over [`MAX_KEY_LEN`] bytes.
pub(crate) fn key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(invalid("key", "a key must not be empty".to_owned()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(invalid(
            "key",
            format!(
                "a key is at most {MAX_KEY_LEN} bytes, this one has {}",
                key.len()
            ),
        ));
    }
    Ok(())
}

/// Refuses an empty token or one over [`MAX_TOKEN_LEN`] bytes.
pub(crate) fn token(token: &str) -> Result<()> {
    if token.is_empty() {
        return Err(invalid(
            "token",
            "an owner token must not be empty".to_owned(),
        ));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(invalid(
            "token",
            format!(
                "a token is at most {MAX_TOKEN_LEN} bytes, this one has {}",
                token.len()
            ),
        ));
    }
    Ok(())
}

/// An expiry as stored: 20 decimal digits of nanoseconds since the Unix
/// epoch; one before the epoch or after [`latest_expiry`] is refused.
pub(crate) fn expiry(at: SystemTime) -> Result<String> {
    at.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|since| u64::try_from(since.as_nanos()).ok())
        .filter(|&nanos| nanos < u64::MAX)
        .map(digits)
        .ok_or_else(|| {
            invalid(
                "expiry",
                format!(
                    "{at:?} is outside the storable range, from the Unix epoch to \
                     {:?} (latest_expiry)",
                    latest_expiry()
                ),
            )
        })
}

/// A reading of the clock as stored: out of range, it counts as the epoch
/// or as [`latest_expiry`].
pub(crate) fn now(at: SystemTime) -> String {
    let at = at.clamp(UNIX_EPOCH, latest_expiry());
    digits(nanos_since_epoch(at))
}

/// `now + ttl`, capped at [`latest_expiry`].
pub(crate) fn after(now: SystemTime, ttl: Duration) -> SystemTime {
    let now = now.clamp(UNIX_EPOCH, latest_expiry());
    now.checked_add(ttl)
        .map_or(latest_expiry(), |at| at.min(latest_expiry()))
}

fn nanos_since_epoch(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|since| u64::try_from(since.as_nanos()).ok())
        .unwrap_or(0)
}

fn digits(nanos: u64) -> String {
    format!("{nanos:020}")
}

/// A stored time back: `None` if it is not a number of nanoseconds.
pub(crate) fn time(stored: &str) -> Option<SystemTime> {
    let nanos: u64 = stored.parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}
