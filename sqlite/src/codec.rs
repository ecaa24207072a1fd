//! Argument checks, and how times and values are stored in SQLite columns.
//!
//! SQLite's integers are signed 64-bit, while a lock's times run to
//! [`latest_expiry`] (`u64::MAX - 1` nanoseconds after the Unix epoch, in
//! the year 2554). A lock time is therefore stored *biased*: its nanoseconds
//! since the epoch minus 2^63, which keeps the order of times as the order of
//! the stored integers (so `expires_at < ?` works in SQL and in its index).
//! Values are JSON text.

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hostlock::{Error, MAX_KEY_LEN, MAX_TOKEN_LEN, MAX_VALUE_LEN, Result, latest_expiry};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The bit that [`to_db`] flips: the sign bit of the stored integer.
const BIAS: u64 = 1 << 63;

/// A lock time (nanoseconds since the epoch) as a stored integer.
pub(crate) fn to_db(nanos: u64) -> i64 {
    i64::from_be_bytes((nanos ^ BIAS).to_be_bytes())
}

/// A stored integer back as a lock time (nanoseconds since the epoch).
pub(crate) fn from_db(stored: i64) -> u64 {
    u64::from_be_bytes(stored.to_be_bytes()) ^ BIAS
}

/// Nanoseconds since the epoch of a storable time, or `None`.
fn nanos_of(at: SystemTime) -> Option<u64> {
    let nanos = at.duration_since(UNIX_EPOCH).ok()?.as_nanos();
    u64::try_from(nanos).ok().filter(|&n| n < u64::MAX)
}

/// A time read back from its nanoseconds since the epoch.
pub(crate) fn time_of(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

/// A clock reading as the locker uses it: before the epoch counts as the
/// epoch, after [`latest_expiry`] as that, so that every time compared with a
/// stored one is itself storable.
pub(crate) fn clamp(now: SystemTime) -> u64 {
    nanos_of(now.clamp(UNIX_EPOCH, latest_expiry())).unwrap_or(u64::MAX - 1)
}

/// `now + ttl` in nanoseconds, capped at [`latest_expiry`].
pub(crate) fn after(now: u64, ttl: Duration) -> u64 {
    let ttl = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
    now.saturating_add(ttl).min(u64::MAX - 1)
}

fn invalid(argument: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        argument,
        reason: reason.into(),
    }
}

pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(invalid("key", "a key must not be empty"));
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

pub(crate) fn check_token(token: &str) -> Result<()> {
    if token.is_empty() {
        return Err(invalid("token", "an owner token must not be empty"));
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

/// The nanoseconds of an expiry, if it is storable.
pub(crate) fn check_expiry(at: SystemTime) -> Result<u64> {
    nanos_of(at)
        .filter(|_| at <= latest_expiry())
        .ok_or_else(|| {
            let place = match at.duration_since(UNIX_EPOCH) {
                Ok(after) => format!("{} s after the Unix epoch", after.as_secs()),
                Err(before) => format!("{} s before the Unix epoch", before.duration().as_secs()),
            };
            invalid(
                "expiry",
                format!(
                    "{place} is outside the storable range, from the Unix epoch to {} s after it \
                 (hostlock::latest_expiry())",
                    latest_expiry()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs())
                ),
            )
        })
}

/// A value as the JSON text stored for it; one over [`MAX_VALUE_LEN`] bytes
/// is refused before it is held in memory whole.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<String> {
    let mut out = Limited(Vec::new());
    serde_json::to_writer(&mut out, value).map_err(|e| {
        if e.io_error_kind() == Some(io::ErrorKind::FileTooLarge) {
            invalid(
                "value",
                format!(
                    "a lock's value is at most {MAX_VALUE_LEN} bytes once encoded (JSON); keep \
                     large data elsewhere and store a reference to it"
                ),
            )
        } else {
            Error::Encode {
                detail: e.to_string(),
            }
        }
    })?;
    // serde_json writes UTF-8 only; a failure here would be its bug, and is
    // reported rather than trusted.
    String::from_utf8(out.0).map_err(|e| Error::Encode {
        detail: e.to_string(),
    })
}

/// The encoder's output, refused once it passes [`MAX_VALUE_LEN`].
struct Limited(Vec<u8>);

impl io::Write for Limited {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.0.len() + data.len() > MAX_VALUE_LEN {
            return Err(io::ErrorKind::FileTooLarge.into());
        }
        self.0.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decodes a stored value; the error is the decoder's description.
pub(crate) fn decode<T: DeserializeOwned>(text: &[u8]) -> std::result::Result<T, String> {
    serde_json::from_slice(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn biased_times_keep_their_order() {
        let times = [0, 1, 1 << 62, (1 << 63) - 1, 1 << 63, u64::MAX - 1];
        for pair in times.windows(2) {
            assert!(to_db(pair[0]) < to_db(pair[1]), "{pair:?}");
        }
        for t in times {
            assert_eq!(from_db(to_db(t)), t);
        }
    }

    #[test]
    fn expiries_outside_the_range_are_refused() {
        assert!(check_expiry(UNIX_EPOCH - Duration::from_secs(1)).is_err());
        assert!(check_expiry(latest_expiry() + Duration::from_nanos(1)).is_err());
        assert_eq!(check_expiry(latest_expiry()).ok(), Some(u64::MAX - 1));
        assert_eq!(after(u64::MAX - 5, Duration::MAX), u64::MAX - 1);
    }

    #[test]
    fn values_round_trip_and_big_ones_are_refused() {
        let text = encode(&("job", 7u32)).ok();
        assert_eq!(text.as_deref(), Some(r#"["job",7]"#));
        let back: std::result::Result<(String, u32), String> = decode(br#"["job",7]"#);
        assert_eq!(back, Ok(("job".to_owned(), 7)));
        let big = "x".repeat(MAX_VALUE_LEN);
        assert!(matches!(
            encode(&big),
            Err(Error::InvalidArgument {
                argument: "value",
                ..
            })
        ));
    }
}
