//! `LockValue` and the versioned bytes a lock is stored as.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// A lock as stored under a key: the user's value, an optional expiry and an
/// optional owner token.
///
/// ```
/// use hostlock::LockValue;
/// use std::time::{Duration, SystemTime};
///
/// let lock = LockValue::new("worker-7")
///     .with_ttl(Duration::from_secs(30))
///     .with_token("a-secret-only-the-holder-knows");
/// assert!(!lock.is_expired_at(SystemTime::now()));
/// assert_eq!(lock.token.as_deref(), Some("a-secret-only-the-holder-knows"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockValue<T> {
    /// What the holder wants to record with its lock (who it is, what it does).
    pub value: T,
    /// When the lock stops counting; `None` for a lock that never expires.
    pub expires_at: Option<SystemTime>,
    /// The owner token that [`RenewableLocker`](crate::RenewableLocker)
    /// operations check; `None` for a lock with no owner.
    pub token: Option<String>,
}

impl<T> LockValue<T> {
    /// A lock holding `value`, with no expiry and no owner token.
    pub fn new(value: T) -> LockValue<T> {
        LockValue {
            value,
            expires_at: None,
            token: None,
        }
    }

    /// Sets the expiry to `at`.
    pub fn expiring_at(mut self, at: SystemTime) -> LockValue<T> {
        self.expires_at = Some(at);
        self
    }

    /// Sets the expiry to `ttl` from now on the system clock.
    ///
    /// A TTL reaching past [`latest_expiry`] (in the year 2554) is capped
    /// there. Code that runs under an injected [`Clock`](crate::Clock) should
    /// use [`expiring_at`](Self::expiring_at) with that clock's time instead.
    pub fn with_ttl(self, ttl: Duration) -> LockValue<T> {
        self.expiring_at(expiry_after(SystemTime::now(), ttl))
    }

    /// Sets the owner token.
    pub fn with_token(mut self, token: impl Into<String>) -> LockValue<T> {
        self.token = Some(token.into());
        self
    }

    /// Whether the lock has expired at `now`: its expiry is strictly before
    /// `now`. A lock whose expiry equals `now` is still live.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        is_expired(self.expires_at, now)
    }
}

/// The latest expiry a lock file can store: `u64::MAX - 1` nanoseconds after
/// the Unix epoch, in the year 2554.
pub fn latest_expiry() -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::MAX - 1)
}

/// A clock reading as the lockers use it: one before the Unix epoch counts as
/// the epoch, one after [`latest_expiry`] as that, so that every time compared
/// with a stored expiry is one a lock file can store.
pub(crate) fn clamp_now(now: SystemTime) -> SystemTime {
    now.clamp(UNIX_EPOCH, latest_expiry())
}

/// `now + ttl`, capped at [`latest_expiry`].
pub(crate) fn expiry_after(now: SystemTime, ttl: Duration) -> SystemTime {
    now.checked_add(ttl)
        .map_or(latest_expiry(), |at| at.min(latest_expiry()))
}

pub(crate) fn is_expired(expires_at: Option<SystemTime>, now: SystemTime) -> bool {
    expires_at.is_some_and(|at| at < now)
}

/// Nanoseconds since the Unix epoch of a storable expiry, or `None`.
pub(crate) fn expiry_nanos(at: SystemTime) -> Option<u64> {
    let nanos = at.duration_since(UNIX_EPOCH).ok()?.as_nanos();
    u64::try_from(nanos).ok().filter(|&n| n < u64::MAX)
}

/// `now` as nanoseconds since the epoch, saturating at both ends, for range
/// scans of the expiry index.
pub(crate) fn now_nanos(now: SystemTime) -> u64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(since) => u64::try_from(since.as_nanos()).unwrap_or(u64::MAX),
        Err(_) => 0,
    }
}

pub(crate) fn time_from_nanos(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 4096;

/// The longest owner token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The largest value a [`FileLocker`](crate::FileLocker) stores, in bytes once
/// encoded as CBOR: 1 MiB. A lock records who holds what, not the data itself;
/// every write of the file copies the pages a value spans, so a value of many
/// megabytes slows every other key's writes. A larger one is refused with
/// [`Error::InvalidArgument`].
pub const MAX_VALUE_LEN: usize = 1 << 20;

pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("key", "a key must not be empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::invalid(
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
        return Err(Error::invalid("token", "an owner token must not be empty"));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(Error::invalid(
            "token",
            format!(
                "a token is at most {MAX_TOKEN_LEN} bytes, this one has {}",
                token.len()
            ),
        ));
    }
    Ok(())
}

pub(crate) fn check_expiry(at: SystemTime) -> Result<u64> {
    expiry_nanos(at).ok_or_else(|| {
        Error::invalid(
            "expiry",
            format!(
                "{} is outside the storable range, from the Unix epoch to {}",
                describe_time(at),
                describe_time(latest_expiry())
            ),
        )
    })
}

/// A time as a reader wants it in a message: `2554-07-21 23:34:33 UTC`, or
/// how far it is from the Unix epoch when it is outside the years 1970-9999.
pub(crate) fn describe_time(at: SystemTime) -> String {
    let secs = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs(),
        Err(before) => return format!("{} s before the Unix epoch", before.duration().as_secs()),
    };
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days);
    if year > 9999 {
        return format!("{secs} s after the Unix epoch (beyond the year 9999)");
    }
    let rest = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// days-to-civil algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Checks everything about a lock that an `acquire` takes, the same way for
/// every locker.
pub(crate) fn check_lock<T>(key: &str, lock: &LockValue<T>) -> Result<()> {
    check_key(key)?;
    if let Some(token) = &lock.token {
        check_token(token)?;
    }
    if let Some(at) = lock.expires_at {
        check_expiry(at)?;
    }
    Ok(())
}

/// The stored form of a lock.
///
/// ```text
/// byte 0     record version (RECORD_VERSION)
/// byte 1     flags: bit 0 = has expiry, bit 1 = has token, bit 2 = has session,
///            bit 3 = has origin; other bits zero
/// 8 bytes    fence, big-endian
/// 8 bytes    acquired at, nanoseconds since the Unix epoch, big-endian
/// 4 bytes    process id of the holder, big-endian
/// 8 bytes    expiry, nanoseconds since the Unix epoch, big-endian   (if bit 0)
/// 8 bytes    session of the holder, big-endian                      (if bit 2)
/// 8 bytes    session of the handle that granted it, big-endian      (if bit 3)
/// 2 bytes    token length, big-endian, then the token's UTF-8 bytes (if bit 1)
/// the rest   the value, CBOR (RFC 8949)
/// ```
///
/// Everything but the value comes first, so that release, touch, cleanup and
/// liveness checks work on a lock without decoding a value of the caller's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub(crate) fence: u64,
    pub(crate) acquired: u64,
    pub(crate) pid: u32,
    pub(crate) expires: Option<u64>,
    pub(crate) session: Option<u64>,
    /// The session of the handle that stored the lock, bound or not: with
    /// the fence, it tells this grant from any other.
    pub(crate) origin: Option<u64>,
    pub(crate) token: Option<&'a str>,
    pub(crate) value: &'a [u8],
}

pub(crate) const RECORD_VERSION: u8 = 1;
const HAS_EXPIRY: u8 = 1;
const HAS_TOKEN: u8 = 2;
const HAS_SESSION: u8 = 4;
const HAS_ORIGIN: u8 = 8;

impl<'a> Record<'a> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let token_len = self.token.map_or(0, |t| 2 + t.len());
        let mut out = Vec::with_capacity(2 + 20 + 16 + token_len + self.value.len());
        let flags = if self.expires.is_some() {
            HAS_EXPIRY
        } else {
            0
        } | if self.token.is_some() { HAS_TOKEN } else { 0 }
            | if self.session.is_some() {
                HAS_SESSION
            } else {
                0
            }
            | if self.origin.is_some() { HAS_ORIGIN } else { 0 };
        out.push(RECORD_VERSION);
        out.push(flags);
        out.extend_from_slice(&self.fence.to_be_bytes());
        out.extend_from_slice(&self.acquired.to_be_bytes());
        out.extend_from_slice(&self.pid.to_be_bytes());
        if let Some(expires) = self.expires {
            out.extend_from_slice(&expires.to_be_bytes());
        }
        if let Some(session) = self.session {
            out.extend_from_slice(&session.to_be_bytes());
        }
        if let Some(origin) = self.origin {
            out.extend_from_slice(&origin.to_be_bytes());
        }
        if let Some(token) = self.token {
            put_token(&mut out, token);
        }
        out.extend_from_slice(self.value);
        out
    }

    /// Parses stored bytes; the error says what is wrong with them.
    pub(crate) fn decode(bytes: &'a [u8]) -> std::result::Result<Record<'a>, String> {
        let mut cursor = Cursor { rest: bytes };
        let [version, flags] = cursor.array("header")?;
        if version != RECORD_VERSION {
            return Err(format!("unknown record version {version}"));
        }
        if flags & !(HAS_EXPIRY | HAS_TOKEN | HAS_SESSION | HAS_ORIGIN) != 0 {
            return Err(format!("unknown record flags {flags:#04x}"));
        }
        let fence = u64::from_be_bytes(cursor.array("fence")?);
        let acquired = u64::from_be_bytes(cursor.array("acquisition time")?);
        let pid = u32::from_be_bytes(cursor.array("process id")?);
        let expires = (flags & HAS_EXPIRY != 0)
            .then(|| cursor.array("expiry").map(u64::from_be_bytes))
            .transpose()?;
        let session = (flags & HAS_SESSION != 0)
            .then(|| cursor.array("session").map(u64::from_be_bytes))
            .transpose()?;
        let origin = (flags & HAS_ORIGIN != 0)
            .then(|| cursor.array("origin").map(u64::from_be_bytes))
            .transpose()?;
        let token = if flags & HAS_TOKEN != 0 {
            Some(cursor.token()?)
        } else {
            None
        };
        Ok(Record {
            fence,
            acquired,
            pid,
            expires,
            session,
            origin,
            token,
            value: cursor.rest,
        })
    }

    pub(crate) fn expires_at(&self) -> Option<SystemTime> {
        self.expires.map(time_from_nanos)
    }

    pub(crate) fn is_expired_at(&self, now: SystemTime) -> bool {
        is_expired(self.expires_at(), now)
    }
}

/// What a queued waiter asks for, stored with its place in the queue so that
/// a release can hand it the key in the release's own transaction.
///
/// ```text
/// byte 0     request version (REQUEST_VERSION)
/// byte 1     flags: bit 0 = has a TTL; other bits zero
/// 4 bytes    process id of the waiter, big-endian
/// 8 bytes    TTL in nanoseconds, big-endian                         (if bit 0)
/// 2 bytes    token length, big-endian, then the token's UTF-8 bytes
/// the rest   the value, CBOR (RFC 8949)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Request<'a> {
    pub(crate) pid: u32,
    /// The lease's length in nanoseconds, counted from the hand-off.
    pub(crate) ttl: Option<u64>,
    pub(crate) token: &'a str,
    pub(crate) value: &'a [u8],
}

pub(crate) const REQUEST_VERSION: u8 = 1;

impl<'a> Request<'a> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.token.len() + self.value.len());
        out.push(REQUEST_VERSION);
        out.push(if self.ttl.is_some() { HAS_EXPIRY } else { 0 });
        out.extend_from_slice(&self.pid.to_be_bytes());
        if let Some(ttl) = self.ttl {
            out.extend_from_slice(&ttl.to_be_bytes());
        }
        put_token(&mut out, self.token);
        out.extend_from_slice(self.value);
        out
    }

    /// Parses stored bytes; the error says what is wrong with them.
    pub(crate) fn decode(bytes: &'a [u8]) -> std::result::Result<Request<'a>, String> {
        let mut cursor = Cursor { rest: bytes };
        let [version, flags] = cursor.array("header")?;
        if version != REQUEST_VERSION {
            return Err(format!("unknown request version {version}"));
        }
        if flags & !HAS_EXPIRY != 0 {
            return Err(format!("unknown request flags {flags:#04x}"));
        }
        let pid = u32::from_be_bytes(cursor.array("process id")?);
        let ttl = (flags & HAS_EXPIRY != 0)
            .then(|| cursor.array("TTL").map(u64::from_be_bytes))
            .transpose()?;
        let token = cursor.token()?;
        Ok(Request {
            pid,
            ttl,
            token,
            value: cursor.rest,
        })
    }
}

struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!(
                "record ends inside its {what} ({} of {n} bytes)",
                self.rest.len()
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> std::result::Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// A token: its length (2 bytes, big-endian), then its UTF-8 bytes.
    fn token(&mut self) -> std::result::Result<&'a str, String> {
        let len = usize::from(u16::from_be_bytes(self.array("token length")?));
        let raw = self.take(len, "token")?;
        let token = std::str::from_utf8(raw).map_err(|e| format!("token is not UTF-8: {e}"))?;
        if token.is_empty() {
            return Err("stored token is empty".to_owned());
        }
        Ok(token)
    }
}

/// Appends `token` as [`Cursor::token`] reads it.
fn put_token(out: &mut Vec<u8>, token: &str) {
    // check_token bounds tokens at MAX_TOKEN_LEN, far below u16::MAX.
    let len = u16::try_from(token.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&token.as_bytes()[..usize::from(len)]);
}

pub(crate) fn encode_value<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut Limited(&mut out)).map_err(|e| match e {
        ciborium::ser::Error::Io(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
            Error::invalid(
                "value",
                format!(
                    "a lock's value is at most {MAX_VALUE_LEN} bytes once encoded (CBOR); keep \
                 large data elsewhere and store a reference to it"
                ),
            )
        }
        other => Error::Encode {
            detail: other.to_string(),
        },
    })?;
    Ok(out)
}

/// The encoder's output, refused once it passes [`MAX_VALUE_LEN`], so an
/// oversized value is never held in memory whole.
struct Limited<'a>(&'a mut Vec<u8>);

impl std::io::Write for Limited<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + data.len() > MAX_VALUE_LEN {
            return Err(std::io::ErrorKind::FileTooLarge.into());
        }
        self.0.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decodes a stored value; the error is the decoder's description.
pub(crate) fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, String> {
    let mut reader = bytes;
    let value = ciborium::from_reader(&mut reader).map_err(|e| e.to_string())?;
    if !reader.is_empty() {
        return Err(format!("{} unexpected bytes after the value", reader.len()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_messages_are_dates() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(describe_time(at), "2023-11-14 22:13:20 UTC");
        assert_eq!(describe_time(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        assert_eq!(describe_time(latest_expiry()), "2554-07-21 23:34:33 UTC");
        let far = UNIX_EPOCH + Duration::from_secs(1 << 40);
        assert!(describe_time(far).contains("beyond the year 9999"));
    }

    fn record<'a>(
        expires: Option<u64>,
        session: Option<u64>,
        token: Option<&'a str>,
        value: &'a [u8],
    ) -> Record<'a> {
        Record {
            fence: 42,
            acquired: 1_700_000_000_000_000_000,
            pid: 4321,
            expires,
            session,
            origin: session.map(|s| s ^ 1),
            token,
            value,
        }
    }

    #[test]
    fn record_round_trips() {
        let value = encode_value(&("job", 7u32)).unwrap();
        for expires in [None, Some(0), Some(u64::MAX - 1)] {
            for session in [None, Some(u64::MAX)] {
                for token in [None, Some("t"), Some("ünïcode")] {
                    let record = record(expires, session, token, &value);
                    let bytes = record.encode();
                    assert_eq!(Record::decode(&bytes).unwrap(), record);
                }
            }
        }
    }

    #[test]
    fn damaged_records_are_errors() {
        let good = record(Some(5), Some(6), Some("tok"), &[0x01]).encode();
        for cut in 0..good.len() - 1 {
            assert!(Record::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Record::decode(&[9, 0]).unwrap_err().contains("version 9"));
        assert!(Record::decode(&[1, 0x80]).unwrap_err().contains("flags"));
    }

    #[test]
    fn requests_round_trip_and_damaged_ones_are_errors() {
        let value = encode_value(&("job", 7u32)).unwrap();
        for ttl in [None, Some(1), Some(u64::MAX)] {
            for token in ["t", "ünïcode"] {
                let request = Request {
                    pid: 99,
                    ttl,
                    token,
                    value: &value,
                };
                let bytes = request.encode();
                assert_eq!(Request::decode(&bytes).unwrap(), request);
            }
        }
        let good = Request {
            pid: 1,
            ttl: Some(5),
            token: "tok",
            value: &[],
        }
        .encode();
        for cut in 0..good.len() {
            assert!(Request::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Request::decode(&[9, 0]).unwrap_err().contains("version 9"));
        assert!(Request::decode(&[1, 0x80]).unwrap_err().contains("flags"));
        let empty_token = [1, 0, 0, 0, 0, 1, 0, 0];
        assert!(Request::decode(&empty_token).unwrap_err().contains("empty"));
    }

    #[test]
    fn values_of_another_type_do_not_decode() {
        let bytes = encode_value(&"text").unwrap();
        assert!(decode_value::<u64>(&bytes).is_err());
        assert_eq!(decode_value::<String>(&bytes).unwrap(), "text");
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_value::<String>(&trailing).is_err());
    }

    #[test]
    fn expiry_outside_the_stored_range_is_rejected() {
        assert!(check_expiry(UNIX_EPOCH - Duration::from_secs(1)).is_err());
        assert!(check_expiry(latest_expiry() + Duration::from_nanos(1)).is_err());
        assert_eq!(check_expiry(latest_expiry()).unwrap(), u64::MAX - 1);
    }
}
