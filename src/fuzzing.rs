//! Entry points for the fuzz targets in `fuzz/`, which `tests/fuzz_corpus.rs`
//! replays on the stable toolchain; not part of the public API.
//!
//! Each function panics on a finding and only then, since a panic is what the
//! fuzzer reports. The caller passes a scratch directory for the files a
//! function creates, so that the library needs no temporary-file crate.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use crate::clock::{Clock, ManualClock};
use crate::error::{Error, Result};
use crate::faults::{Fault, Faults};
use crate::file::FileLocker;
use crate::info::{InspectableLocker, LockInfo, LockState};
use crate::locker::{CleanableLocker, Locker, RenewableLocker};
use crate::memory::MemoryLocker;
use crate::value::{LockValue, MAX_KEY_LEN, Record, decode_value, expiry_nanos, latest_expiry};

/// Decodes `bytes` as a stored record with a value of type `T`, and checks
/// that a record that decodes encodes back to the same bytes.
pub fn decode_record<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, String> {
    let record = Record::decode(bytes)?;
    assert_eq!(
        record.encode(),
        bytes,
        "a decoded record must re-encode exactly"
    );
    decode_value(record.value)
}

/// How long [`open_file`] lets a call wait for the file. No other process
/// uses it, so only a hang waits this long.
const OPEN_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// Writes `bytes` to a file in `dir` and opens it as a `FileLocker<String>`
/// without background cleanup; when it opens, runs each kind of operation on
/// it, then opens it again. Returns the error of a file that does not open.
///
/// Panics when anything panics; when a file that does not open fails with an
/// error that does not describe the file or does not name it; and when a file
/// that passes [`FileLocker::check`] misbehaves: an operation on a key of its
/// own returns what the contract does not allow, or the file does not open
/// again.
pub fn open_file(dir: &Path, bytes: &[u8]) -> Result<()> {
    let path = dir.join("input.redb");
    fs::write(&path, bytes).expect("write the input file");
    let open = || {
        FileLocker::<String>::builder(&path)
            .background_cleanup(false)
            .busy_timeout(OPEN_BUSY_TIMEOUT)
            .open()
    };
    let locker = match open() {
        Ok(locker) => locker,
        Err(e) => {
            assert_describes_file(&e, &path);
            return Err(e);
        }
    };
    let clean = exercise(&locker);
    drop(locker);
    match open() {
        Ok(locker) => {
            exercise(&locker);
        }
        Err(e) if clean => panic!("a file that passed its check does not open again: {e}"),
        Err(e) => assert_describes_file(&e, &path),
    }
    Ok(())
}

/// Panics unless `e` is an error about the contents of the file at `path`
/// that names the file.
fn assert_describes_file(e: &Error, path: &Path) {
    assert!(
        matches!(
            e,
            Error::NotLockFile { .. }
                | Error::Corrupted { .. }
                | Error::UnsupportedVersion { .. }
                | Error::Storage { .. }
                | Error::Busy { .. }
        ),
        "opening a damaged file fails with an error that does not describe it: {e:?}"
    );
    let message = e.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "the error does not name the file: {message}"
    );
}

/// The key [`exercise`] acquires and releases.
const OWN_KEY: &str = "fuzz/own-key";
const OWN_TOKEN: &str = "fuzz-token";

/// Runs each kind of operation on an opened input file. Returns whether the
/// file passed its check, in which case the operations on a key of its own
/// must behave as on any lock file.
fn exercise(locker: &FileLocker<String>) -> bool {
    let clean =
        matches!(locker.check(), Ok(report) if !report.repaired && report.problems.is_empty());
    let keys: Vec<String> = match locker.list(true) {
        Ok(all) => all
            .into_iter()
            .flatten()
            .take(4)
            .map(|info| info.key)
            .collect(),
        Err(_) => Vec::new(),
    };
    let _ = locker.list(false);
    for key in &keys {
        let _ = locker.get(key);
        let _ = locker.exists(key);
        let _ = locker.info(key);
    }
    let _ = locker.cleanup();
    let _ = own_key(locker, clean);
    for (i, key) in keys.iter().enumerate() {
        let _ = match i % 3 {
            0 => locker.release(key).map(drop),
            1 => locker.force_release(key),
            _ => locker.release_if_owner(key, OWN_TOKEN).map(drop),
        };
    }
    let _ = locker.check();
    let _ = locker.compact();
    clean
}

/// Takes, renews and releases [`OWN_KEY`]; stops at the first error. When
/// `clean`, panics on a result that the contract does not allow.
fn own_key(locker: &FileLocker<String>, clean: bool) -> Result<()> {
    let expect = |what: &str, got: &dyn fmt::Debug, ok: bool| {
        assert!(!clean || ok, "{what} on a sound file returned {got:?}");
    };
    let now = SystemTime::now();
    let lock = LockValue::new("fuzz".to_owned())
        .expiring_at(now + Duration::from_secs(3600))
        .with_token(OWN_TOKEN);
    locker.force_release(OWN_KEY)?;
    let got = locker.acquire(OWN_KEY, lock.clone())?;
    expect("acquire of a free key", &got, got);
    let got = locker.get(OWN_KEY)?;
    expect(
        "get of a lock just taken",
        &got,
        got.as_ref() == Some(&lock),
    );
    let later = now + Duration::from_secs(7200);
    let got = locker.touch(OWN_KEY, OWN_TOKEN, later)?;
    expect("touch by the owner", &got, got);
    let got = locker.release_if_owner(OWN_KEY, OWN_TOKEN)?;
    expect("release_if_owner by the owner", &got, got);
    let got = locker.exists(OWN_KEY)?;
    expect("exists after a release", &got, !got);
    let got = locker.acquire(OWN_KEY, lock)?;
    expect("acquire of a released key", &got, got);
    let got = locker.release(OWN_KEY)?;
    expect("release of a held key", &got, got);
    Ok(())
}

/// The most operations [`ops_model`] decodes from one input.
const MAX_OPS: usize = 96;

/// What `holder.alive` says of a lock not bound to a session, for each
/// locker of [`ops_model`]: unknown in a file (row H2); this very process in a
/// `MemoryLocker`.
const UNBOUND_ALIVE: [Option<bool>; 2] = [None, Some(true)];

/// The owner tokens of [`ops_model`]; the empty one is invalid (row V3).
const TOKENS: [&str; 3] = ["t1", "t2", ""];

/// Where [`ops_model`]'s clock starts.
fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Decodes `bytes` into a sequence of operations on three keys (two short
/// ones and one of [`MAX_KEY_LEN`] bytes), with clock moves forward and back
/// and reopening of the file, and runs it on a `FileLocker` in `dir` (which
/// must not hold a file named `model.redb`), on a `MemoryLocker`, and on a
/// model of `docs/semantics.md`.
///
/// Panics, naming the step and both results, when a locker's result differs
/// from the model's, or when after a step a locker's `exists`, `get` and
/// `list` of every key differ from the model's state.
pub fn ops_model(dir: &Path, bytes: &[u8]) {
    let ops = decode_ops(bytes);
    let keys = ["a".to_owned(), "b".to_owned(), "k".repeat(MAX_KEY_LEN)];
    let clock = ManualClock::new(start());
    let mut subjects = [
        Subject::file(dir.join("model.redb"), &clock),
        Subject::memory(&clock),
    ];
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        let here = Step {
            index: step,
            op,
            ops: &ops,
        };
        let reading = clock.now();
        let expected = model.apply(op, reading);
        for (i, subject) in subjects.iter_mut().enumerate() {
            let want = expected.reply(&model, op, reading, i);
            let got = subject.perform(op, reading, &keys);
            if got != want {
                here.fail(subject.name, "result", &want, &got);
            }
        }
        move_clock(&clock, op, reading);
        if let Op::Reopen = op {
            for subject in &mut subjects {
                subject.reopen(&here);
            }
        }
        let reading = clock.now();
        for (i, subject) in subjects.iter_mut().enumerate() {
            subject.check_state(&mut model, i, reading, &keys, &here);
        }
    }
}

/// Like [`ops_model`] on a `FileLocker` alone, whose storage fails before
/// some steps: the first byte seeds the choice of steps, and of the write or
/// sync that fails (as a full disk or an I/O error). The storage works again
/// after each step.
///
/// A step whose storage failed must return an error, and leave the state the
/// model had before it (for an acquire, the expired entry it would replace
/// may be gone); a release, renewal or cleanup may instead have taken effect
/// whole (`docs/design.md`, "Storage failures"). Reopening under a
/// failure may fail, and must then succeed once the storage works. Every
/// other step must agree with the model, as in [`ops_model`].
pub fn ops_faults(dir: &Path, bytes: &[u8]) {
    let Some((&seed, rest)) = bytes.split_first() else {
        return;
    };
    let ops = decode_ops(rest);
    let keys = ["a".to_owned(), "b".to_owned(), "k".repeat(MAX_KEY_LEN)];
    let clock = ManualClock::new(start());
    let faults = Faults::new();
    let mut subject = Subject::file_with(dir.join("faults.redb"), &clock, faults.clone());
    let mut model = Model::default();
    let mut dice = Dice(u64::from(seed) << 32 | 0x9e37_79b9);
    for (step, op) in ops.iter().enumerate() {
        let here = Step {
            index: step,
            op,
            ops: &ops,
        };
        let reading = clock.now();
        let before = model.clone();
        let expected = model.apply(op, reading);
        let injected = faults.injected();
        dice.arm(&faults);
        let got = subject.perform(op, reading, &keys);
        if let Op::Reopen = op {
            subject.reopen(&here);
        }
        faults.heal();
        let failed = faults.injected() > injected && !matches!(op, Op::Reopen);
        if failed && got.is_err() {
            let may_have_landed = !matches!(op, Op::Acquire { .. });
            // A failed acquire's lock is taken out again should it have
            // landed, and with it may go the expired entry it replaced: as
            // good as none.
            let mut expired_gone = before.clone();
            if let Op::Acquire { key, .. } = *op
                && before.live(key, reading).is_none()
            {
                expired_gone.entries.remove(&key);
            }
            if subject.agrees(&before, 0, reading, &keys) {
                model = before;
            } else if subject.agrees(&expired_gone, 0, reading, &keys) {
                model = expired_gone;
            } else if !may_have_landed || !subject.agrees(&model, 0, reading, &keys) {
                here.fail(
                    subject.name,
                    "state after a storage failure",
                    &"the state before the step, or (not for an acquire) after it",
                    &got,
                );
            }
        } else {
            let want = expected.reply(&model, op, reading, 0);
            if got != want {
                here.fail(subject.name, "result", &want, &got);
            }
        }
        move_clock(&clock, op, reading);
        let reading = clock.now();
        subject.check_state(&mut model, 0, reading, &keys, &here);
    }
}

/// Moves the clock as `op` says, if it is a clock move; the clock read
/// `reading` before the step.
fn move_clock(clock: &ManualClock, op: &Op, reading: SystemTime) {
    match op {
        Op::Advance(by) => clock.advance(*by),
        Op::SetClock(when) => clock.set(when.at(reading)),
        _ => {}
    }
}

/// The choice of failures in [`ops_faults`]: a small xorshift generator.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Before one step in three, arms the failure of one of the next writes
    /// or syncs.
    fn arm(&mut self, faults: &Faults) {
        let roll = self.next();
        if !roll.is_multiple_of(3) {
            return;
        }
        let fault = if roll & 8 == 0 {
            Fault::DiskFull
        } else {
            Fault::Io
        };
        let after = (roll >> 8) % 16;
        if roll & 16 == 0 {
            faults.fail_writes_after(after, fault);
        } else {
            faults.fail_syncs_after(after % 4, fault);
        }
    }
}

/// Where a run of [`ops_model`] is, for the message of a mismatch.
struct Step<'a> {
    index: usize,
    op: &'a Op,
    ops: &'a [Op],
}

impl Step<'_> {
    fn fail(&self, subject: &str, what: &str, want: &dyn fmt::Debug, got: &dyn fmt::Debug) -> ! {
        panic!(
            "step {} ({:?}), {subject} {what}: the model says {want:?}, the locker returned \
             {got:?}; the steps up to here: {:?}",
            self.index,
            self.op,
            &self.ops[..=self.index]
        )
    }
}

/// One operation of [`ops_model`]. Keys and tokens are indexes into its
/// keys and [`TOKENS`].
#[derive(Debug, Clone)]
enum Op {
    Acquire {
        key: usize,
        value: u8,
        expires: Option<When>,
        token: Option<usize>,
    },
    Release(usize),
    ForceRelease(usize),
    Touch {
        key: usize,
        token: usize,
        at: When,
    },
    ReleaseIfOwner {
        key: usize,
        token: usize,
    },
    Get(usize),
    Exists(usize),
    Info(usize),
    List {
        include_expired: bool,
    },
    Cleanup,
    Advance(Duration),
    SetClock(When),
    Reopen,
}

/// A time relative to the clock's now, or one of the edges of what a lock
/// file stores (row V4).
#[derive(Debug, Clone, Copy)]
enum When {
    Later(Duration),
    Earlier(Duration),
    Now,
    Start,
    Epoch,
    BeforeEpoch,
    Latest,
    AfterLatest,
}

impl When {
    fn at(self, now: SystemTime) -> SystemTime {
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
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }

    fn key(&mut self) -> Option<usize> {
        Some(usize::from(self.byte()? % 3))
    }

    /// Mostly the first token, often the second, rarely the invalid one.
    fn token(&mut self) -> Option<usize> {
        Some(match self.byte()? % 8 {
            0..=3 => 0,
            4..=6 => 1,
            _ => 2,
        })
    }

    fn duration(&mut self) -> Option<Duration> {
        Some(match self.byte()? % 8 {
            0..=2 => Duration::from_secs(u64::from(self.byte()? % 32)),
            3 => Duration::from_nanos(u64::from(self.u16()?)),
            4 => Duration::from_millis(u64::from(self.u16()?)),
            5 => Duration::from_secs(u64::from(self.u16()?) * 3600),
            6 => Duration::ZERO,
            _ => Duration::MAX,
        })
    }

    fn when(&mut self) -> Option<When> {
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

    fn op(&mut self) -> Option<Op> {
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

fn decode_ops(bytes: &[u8]) -> Vec<Op> {
    let mut input = Input(bytes);
    std::iter::from_fn(|| input.op()).take(MAX_OPS).collect()
}

/// What the lockers count as now when the clock reads `reading`: a reading
/// before the Unix epoch counts as the epoch, one after `latest_expiry()` as
/// that (`docs/semantics.md`, "Clock jumps").
fn counted(reading: SystemTime) -> SystemTime {
    reading.clamp(UNIX_EPOCH, latest_expiry())
}

/// The lock an [`Op::Acquire`] takes when the clock reads `now`.
fn lock_of(
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

/// A result, as the model and the lockers report it.
type Reply = std::result::Result<Outcome, Failure>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Done,
    Bool(bool),
    Count(usize),
    Lock(Option<LockValue<String>>),
    Info(Option<Seen>),
    List(Vec<Seen>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    InvalidArgument,
    /// Any other error: the model never expects one.
    Other(String),
}

fn reply<R>(result: Result<R>, outcome: impl FnOnce(R) -> Outcome) -> Reply {
    result.map(outcome).map_err(|e| match e {
        Error::InvalidArgument { .. } => Failure::InvalidArgument,
        other => Failure::Other(other.to_string()),
    })
}

/// What `info` and `list` report of a lock, with the key as an index.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    key: Option<usize>,
    value: String,
    expires_at: Option<SystemTime>,
    has_token: bool,
    fence: Option<u64>,
    acquired_at: SystemTime,
    pid: u32,
    alive: Option<bool>,
    state: LockState,
}

impl Seen {
    fn of(info: LockInfo<String>, keys: &[String; 3]) -> Seen {
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
enum Expected {
    Reply(Reply),
    /// `info` or `list`, whose reply holds each locker's own fences: see
    /// [`Model::inspect`].
    Inspect,
}

impl Expected {
    /// The reply the locker `subject` must give for `op`, on the model as
    /// the step left it.
    fn reply(&self, model: &Model, op: &Op, reading: SystemTime, subject: usize) -> Reply {
        match self {
            Expected::Reply(reply) => reply.clone(),
            Expected::Inspect => model.inspect(op, reading, subject),
        }
    }
}

/// What is stored under a key, expired or not.
#[derive(Debug, Clone)]
struct Entry {
    lock: LockValue<String>,
    acquired: SystemTime,
    /// The fence each locker gave the lock, learnt after the step that took it.
    fences: [Option<u64>; 2],
}

/// The state of `docs/semantics.md`: the entry under each key (by index).
#[derive(Debug, Default, Clone)]
struct Model {
    entries: BTreeMap<usize, Entry>,
}

impl Model {
    /// The live entry under `key` when the clock reads `reading`.
    fn live(&self, key: usize, reading: SystemTime) -> Option<&Entry> {
        let now = counted(reading);
        self.entries
            .get(&key)
            .filter(|entry| !entry.lock.is_expired_at(now))
    }

    /// Applies `op` when the clock reads `reading`, and returns its result.
    fn apply(&mut self, op: &Op, reading: SystemTime) -> Expected {
        let now = counted(reading);
        let storable = |at: SystemTime| expiry_nanos(at).is_some();
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
    fn inspect(&self, op: &Op, reading: SystemTime, subject: usize) -> Reply {
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

trait Checked: CleanableLocker<String> + RenewableLocker<String> + InspectableLocker<String> {}

impl<L: CleanableLocker<String> + RenewableLocker<String> + InspectableLocker<String>> Checked
    for L
{
}

/// A locker under test.
struct Subject {
    name: &'static str,
    kind: Kind,
    /// The greatest fence seen so far (row N1).
    last_fence: u64,
}

enum Kind {
    File {
        locker: Option<FileLocker<String>>,
        path: PathBuf,
        clock: ManualClock,
        faults: Faults,
    },
    Memory(MemoryLocker<String>),
}

impl Subject {
    fn file(path: PathBuf, clock: &ManualClock) -> Subject {
        Subject::file_with(path, clock, Faults::new())
    }

    /// A file locker whose storage fails as `faults` is armed.
    fn file_with(path: PathBuf, clock: &ManualClock, faults: Faults) -> Subject {
        let locker = open_model_file(&path, clock, &faults)
            .unwrap_or_else(|e| panic!("cannot open a new lock file: {e}"));
        Subject {
            name: "FileLocker",
            kind: Kind::File {
                locker: Some(locker),
                path,
                clock: clock.clone(),
                faults,
            },
            last_fence: 0,
        }
    }

    fn memory(clock: &ManualClock) -> Subject {
        Subject {
            name: "MemoryLocker",
            kind: Kind::Memory(MemoryLocker::with_clock(clock.clone())),
            last_fence: 0,
        }
    }

    fn locker(&self) -> &dyn Checked {
        match &self.kind {
            Kind::File { locker, .. } => locker.as_ref().expect("the file is open"),
            Kind::Memory(locker) => locker,
        }
    }

    /// Closes the file and opens it again; a memory locker has nothing to
    /// reopen.
    fn reopen(&mut self, here: &Step<'_>) {
        if let Kind::File {
            locker,
            path,
            clock,
            faults,
        } = &mut self.kind
        {
            drop(locker.take());
            let injected = faults.injected();
            let mut opened = open_model_file(path, clock, faults);
            // Opening may write (to recover the file) and fail as armed; once
            // the storage works again, the file must open.
            if opened.is_err() && faults.injected() > injected {
                faults.heal();
                opened = open_model_file(path, clock, faults);
            }
            match opened {
                Ok(opened) => *locker = Some(opened),
                Err(e) => here.fail(self.name, "reopen", &"Ok", &e),
            }
        }
    }

    /// Runs `op` when the clock reads `now`; clock moves and reopening are
    /// the caller's.
    fn perform(&self, op: &Op, now: SystemTime, keys: &[String; 3]) -> Reply {
        let locker = self.locker();
        match *op {
            Op::Acquire {
                key,
                value,
                expires,
                token,
            } => reply(
                locker.acquire(&keys[key], lock_of(value, expires, token, now)),
                Outcome::Bool,
            ),
            Op::Release(key) => reply(locker.release(&keys[key]), Outcome::Bool),
            Op::ForceRelease(key) => reply(locker.force_release(&keys[key]), |()| Outcome::Done),
            Op::Touch { key, token, at } => reply(
                locker.touch(&keys[key], TOKENS[token], at.at(now)),
                Outcome::Bool,
            ),
            Op::ReleaseIfOwner { key, token } => reply(
                locker.release_if_owner(&keys[key], TOKENS[token]),
                Outcome::Bool,
            ),
            Op::Get(key) => reply(locker.get(&keys[key]), Outcome::Lock),
            Op::Exists(key) => reply(locker.exists(&keys[key]), Outcome::Bool),
            Op::Info(key) => reply(locker.info(&keys[key]), |info| {
                Outcome::Info(info.map(|info| Seen::of(info, keys)))
            }),
            Op::List { include_expired } => {
                let all = locker
                    .list(include_expired)
                    .and_then(|all| all.into_iter().collect::<Result<Vec<_>>>());
                reply(all, |all| {
                    Outcome::List(all.into_iter().map(|info| Seen::of(info, keys)).collect())
                })
            }
            Op::Cleanup => reply(locker.cleanup(), Outcome::Count),
            Op::Advance(_) | Op::SetClock(_) | Op::Reopen => Ok(Outcome::Done),
        }
    }

    /// Whether `exists`, `get` and `list` of every key agree with `model`,
    /// whose entries all have this locker's fences.
    fn agrees(&self, model: &Model, subject: usize, now: SystemTime, keys: &[String; 3]) -> bool {
        let locker = self.locker();
        keys.iter().enumerate().all(|(key, name)| {
            let live = model.live(key, now).map(|entry| entry.lock.clone());
            reply(locker.exists(name), Outcome::Bool) == Ok(Outcome::Bool(live.is_some()))
                && reply(locker.get(name), Outcome::Lock) == Ok(Outcome::Lock(live))
        }) && [false, true].into_iter().all(|include_expired| {
            let op = Op::List { include_expired };
            self.perform(&op, now, keys) == model.inspect(&op, now, subject)
        })
    }

    /// Learns the fence of a lock the last step stored, checking that it is
    /// greater than every fence before (row N1); then compares `exists` and
    /// `get` of every key, and `list` with and without expired entries, with
    /// the model.
    fn check_state(
        &mut self,
        model: &mut Model,
        subject: usize,
        now: SystemTime,
        keys: &[String; 3],
        here: &Step<'_>,
    ) {
        let new: Vec<usize> = model
            .entries
            .iter()
            .filter(|(_, entry)| entry.fences[subject].is_none())
            .map(|(&key, _)| key)
            .collect();
        for key in new {
            let info = self.locker().info(&keys[key]);
            let fence = match &info {
                Ok(Some(info)) if info.fence > self.last_fence => info.fence,
                _ => {
                    let got = reply(info, |info| {
                        Outcome::Info(info.map(|info| Seen::of(info, keys)))
                    });
                    let want = format!("a lock with a fence over {}", self.last_fence);
                    here.fail(self.name, "info of the lock just taken", &want, &got)
                }
            };
            self.last_fence = fence;
            if let Some(entry) = model.entries.get_mut(&key) {
                entry.fences[subject] = Some(fence);
            }
        }
        let locker = self.locker();
        for (key, name) in keys.iter().enumerate() {
            let live = model.live(key, now).map(|entry| entry.lock.clone());
            let want = Ok(Outcome::Bool(live.is_some()));
            let got = reply(locker.exists(name), Outcome::Bool);
            if got != want {
                here.fail(
                    self.name,
                    &format!("exists(key {key}) after the step"),
                    &want,
                    &got,
                );
            }
            let want = Ok(Outcome::Lock(live));
            let got = reply(locker.get(name), Outcome::Lock);
            if got != want {
                here.fail(
                    self.name,
                    &format!("get(key {key}) after the step"),
                    &want,
                    &got,
                );
            }
        }
        for include_expired in [false, true] {
            let op = Op::List { include_expired };
            let want = model.inspect(&op, now, subject);
            let got = self.perform(&op, now, keys);
            if got != want {
                let what = format!("list({include_expired}) after the step");
                here.fail(self.name, &what, &want, &got);
            }
        }
    }
}

fn open_model_file(
    path: &Path,
    clock: &ManualClock,
    faults: &Faults,
) -> Result<FileLocker<String>> {
    FileLocker::builder(path)
        .clock(clock.clone())
        .background_cleanup(false)
        .faults(faults.clone())
        .open()
}
