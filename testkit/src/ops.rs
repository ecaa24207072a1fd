//! The operations of a run, and how they are decoded from fuzz input.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hostlock::{LockValue, latest_expiry};

/// The most operations [`decode_ops`] decodes from one input.
pub const MAX_OPS: usize = 96;

/// The owner tokens of a run; the empty one is invalid (row V3).
pub const TOKENS: [&str; 3] = ["t1", "t2", ""];

/// Where the clock of a run starts.
pub fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// One step of a run. Keys are indexes into the run's three keys, tokens
/// into [`TOKENS`].
#[derive(Debug, Clone)]
pub enum Op {
    /// `acquire` of a lock with value `v{value}`.
    Acquire {
        /// Which key.
        key: usize,
        /// The value, as a number.
        value: u8,
        /// When the lock expires; `None`: never.
        expires: Option<When>,
        /// Its owner token, if any.
        token: Option<usize>,
    },
    /// `release` of a key.
    Release(usize),
    /// `force_release` of a key.
    ForceRelease(usize),
    /// `touch` of a key with a token, to a time.
    Touch {
        /// Which key.
        key: usize,
        /// Which token.
        token: usize,
        /// The new expiry.
        at: When,
    },
    /// `release_if_owner` of a key with a token.
    ReleaseIfOwner {
        /// Which key.
        key: usize,
        /// Which token.
        token: usize,
    },
    /// `get` of a key.
    Get(usize),
    /// `exists` of a key.
    Exists(usize),
    /// `info` of a key.
    Info(usize),
    /// `list`.
    List {
        /// With the expired entries not yet removed.
        include_expired: bool,
    },
    /// `cleanup`.
    Cleanup,
    /// Moves the clock forward.
    Advance(Duration),
    /// Sets the clock, forward or back.
    SetClock(When),
    /// Closes the lock file and opens it again.
    Reopen,
}

/// A time relative to the clock's now, or one of the edges of what a lock
/// file stores (row V4).
#[derive(Debug, Clone, Copy)]
pub enum When {
    /// This long after now.
    Later(Duration),
    /// This long before now.
    Earlier(Duration),
    /// Now.
    Now,
    /// Where the clock started: [`start`].
    Start,
    /// The Unix epoch.
    Epoch,
    /// A nanosecond before the Unix epoch: not storable.
    BeforeEpoch,
    /// [`latest_expiry`].
    Latest,
    /// A nanosecond after [`latest_expiry`]: not storable.
    AfterLatest,
}

impl When {
    pub(crate) fn at(self, now: SystemTime) -> SystemTime {
        let nanosecond = Duration::from_nanos(1);
        match self {
            When::Later(by) => now.checked_add(by).unwrap_or(now),
            When::Earlier(by) => now.checked_sub(by).unwrap_or(now),
            When::Now => now,
            When::Start => start(),
            When::Epoch => UNIX_EPOCH,
            When::BeforeEpoch => UNIX_EPOCH.checked_sub(nanosecond).unwrap_or(UNIX_EPOCH),
            When::Latest => latest_expiry(),
            When::AfterLatest => latest_expiry() + nanosecond,
        }
    }
}

/// The input bytes, read from the front; every read is `None` at the end.
pub(crate) struct Input<'a>(&'a [u8]);

impl Input<'_> {
    pub(crate) fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }

    pub(crate) fn key(&mut self) -> Option<usize> {
        Some(usize::from(self.byte()? % 3))
    }

    /// Mostly the first token, often the second, rarely the invalid one.
    pub(crate) fn token(&mut self) -> Option<usize> {
        Some(match self.byte()? % 8 {
            0..=3 => 0,
            4..=6 => 1,
            _ => 2,
        })
    }

    pub(crate) fn duration(&mut self) -> Option<Duration> {
        Some(match self.byte()? % 8 {
            0..=2 => Duration::from_secs(u64::from(self.byte()? % 32)),
            3 => Duration::from_nanos(u64::from(self.u16()?)),
            4 => Duration::from_millis(u64::from(self.u16()?)),
            5 => Duration::from_secs(u64::from(self.u16()?) * 3600),
            6 => Duration::ZERO,
            _ => Duration::MAX,
        })
    }

    pub(crate) fn when(&mut self) -> Option<When> {
        Some(match self.byte()? % 16 {
            0..=6 => When::Later(self.duration()?),
            7..=9 => When::Earlier(self.duration()?),
            10 => When::Now,
            11 => When::Start,
            12 => When::Epoch,
            13 => When::BeforeEpoch,
            14 => When::Latest,
            _ => When::AfterLatest,
        })
    }

    pub(crate) fn op(&mut self) -> Option<Op> {
        Some(match self.byte()? % 32 {
            0..=7 => Op::Acquire {
                key: self.key()?,
                value: self.byte()?,
                expires: match self.byte()? % 4 {
                    0 => None,
                    _ => Some(self.when()?),
                },
                token: match self.byte()? % 3 {
                    0 => None,
                    _ => Some(self.token()?),
                },
            },
            8 | 9 => Op::Release(self.key()?),
            10 | 11 => Op::ForceRelease(self.key()?),
            12..=15 => Op::Touch {
                key: self.key()?,
                token: self.token()?,
                at: self.when()?,
            },
            16..=18 => Op::ReleaseIfOwner {
                key: self.key()?,
                token: self.token()?,
            },
            19 => Op::Get(self.key()?),
            20 => Op::Exists(self.key()?),
            21 => Op::Info(self.key()?),
            22 => Op::List {
                include_expired: false,
            },
            23 => Op::List {
                include_expired: true,
            },
            24 | 25 => Op::Cleanup,
            26..=28 => Op::Advance(self.duration()?),
            29 | 30 => Op::SetClock(self.when()?),
            // Reopening costs as much as the rest of a run: kept rare.
            _ => Op::Reopen,
        })
    }
}

/// Decodes `bytes` into at most [`MAX_OPS`] operations: the fuzz targets'
/// input format.
pub fn decode_ops(bytes: &[u8]) -> Vec<Op> {
    let mut input = Input(bytes);
    std::iter::from_fn(|| input.op()).take(MAX_OPS).collect()
}

/// What the lockers count as now when the clock reads `reading`: a reading
/// before the Unix epoch counts as the epoch, one after `latest_expiry()` as
/// that (`docs/semantics.md`, "Clock jumps").
pub(crate) fn counted(reading: SystemTime) -> SystemTime {
    reading.clamp(UNIX_EPOCH, latest_expiry())
}

/// The lock an [`Op::Acquire`] takes when the clock reads `now`.
pub(crate) fn lock_of(
    value: u8,
    expires: Option<When>,
    token: Option<usize>,
    now: SystemTime,
) -> LockValue<String> {
    LockValue {
        value: format!("v{value}"),
        expires_at: expires.map(|when| when.at(now)),
        token: token.map(|t| TOKENS[t].to_owned()),
    }
}
