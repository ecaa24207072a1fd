//! Random operation sequences, with clock moves and reopen, checked after
//! every step against a `HashMap` model of docs/semantics.md, for every locker.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hostlock::{
    CleanableLocker, Clock, FileLocker, LockValue, ManualClock, MemoryLocker, RenewableLocker,
};
use proptest::prelude::*;

const KEYS: [&str; 3] = ["a", "b", "c"];
const TOKENS: [&str; 2] = ["t1", "t2"];

#[derive(Debug, Clone)]
enum Op {
    Acquire {
        key: usize,
        value: u8,
        /// Seconds from now; negative is already expired.
        expires_in: Option<i64>,
        token: Option<usize>,
    },
    Release(usize),
    ForceRelease(usize),
    Touch {
        key: usize,
        token: usize,
        expires_in: i64,
    },
    ReleaseIfOwner {
        key: usize,
        token: usize,
    },
    Cleanup,
    Advance(u64),
    /// Moves the clock back by this many seconds.
    Rewind(u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    let token = 0..TOKENS.len();
    prop_oneof![
        4 => (key.clone(), any::<u8>(), proptest::option::weighted(0.8, -3i64..20), proptest::option::of(token.clone()))
            .prop_map(|(key, value, expires_in, token)| Op::Acquire { key, value, expires_in, token }),
        1 => key.clone().prop_map(Op::Release),
        1 => key.clone().prop_map(Op::ForceRelease),
        2 => (key.clone(), token.clone(), -2i64..30)
            .prop_map(|(key, token, expires_in)| Op::Touch { key, token, expires_in }),
        2 => (key.clone(), token).prop_map(|(key, token)| Op::ReleaseIfOwner { key, token }),
        1 => Just(Op::Cleanup),
        3 => (0u64..8).prop_map(Op::Advance),
        1 => (0u64..5).prop_map(Op::Rewind),
        1 => Just(Op::Reopen),
    ]
}

/// The model: what is stored under each key, expired or not.
#[derive(Debug, Default)]
struct Model {
    entries: HashMap<String, LockValue<String>>,
}

impl Model {
    fn live(&self, key: &str, now: SystemTime) -> Option<&LockValue<String>> {
        self.entries.get(key).filter(|l| !l.is_expired_at(now))
    }
}

trait Subject: CleanableLocker<String> + RenewableLocker<String> {}
impl<L: CleanableLocker<String> + RenewableLocker<String>> Subject for L {}

/// A locker under test that can be closed and opened again.
trait Harness {
    fn locker(&self) -> &dyn Subject;
    fn reopen(&mut self);
}

struct Memory(MemoryLocker<String>);

impl Harness for Memory {
    fn locker(&self) -> &dyn Subject {
        &self.0
    }
    // A memory locker does not outlive its process: nothing to reopen.
    fn reopen(&mut self) {}
}

struct File {
    locker: Option<FileLocker<String>>,
    path: PathBuf,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

impl File {
    fn open(path: &PathBuf, clock: &ManualClock) -> FileLocker<String> {
        FileLocker::builder(path)
            .clock(clock.clone())
            .background_cleanup(false)
            .open()
            .expect("open the lock file")
    }
}

impl Harness for File {
    fn locker(&self) -> &dyn Subject {
        self.locker.as_ref().expect("open")
    }
    fn reopen(&mut self) {
        drop(self.locker.take());
        self.locker = Some(File::open(&self.path, &self.clock));
    }
}

fn offset(now: SystemTime, secs: i64) -> SystemTime {
    if secs >= 0 {
        now + Duration::from_secs(secs.unsigned_abs())
    } else {
        now - Duration::from_secs(secs.unsigned_abs())
    }
}

fn run(harness: &mut dyn Harness, clock: &ManualClock, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        let now = clock.now();
        match op {
            Op::Acquire {
                key,
                value,
                expires_in,
                token,
            } => {
                let mut lock = LockValue::new(value.to_string());
                if let Some(secs) = expires_in {
                    lock = lock.expiring_at(offset(now, *secs));
                }
                if let Some(t) = token {
                    lock = lock.with_token(TOKENS[*t]);
                }
                let expected = if model.live(KEYS[*key], now).is_some() {
                    false
                } else {
                    if lock.is_expired_at(now) {
                        model.entries.remove(KEYS[*key]);
                    } else {
                        model.entries.insert(KEYS[*key].to_owned(), lock.clone());
                    }
                    true
                };
                let got = harness.locker().acquire(KEYS[*key], lock).unwrap();
                prop_assert_eq!(got, expected, "step {}: {:?}", step, op);
            }
            Op::Release(key) => {
                let expected = model
                    .entries
                    .remove(KEYS[*key])
                    .is_some_and(|l| !l.is_expired_at(now));
                let got = harness.locker().release(KEYS[*key]).unwrap();
                prop_assert_eq!(got, expected, "step {}: {:?}", step, op);
            }
            Op::ForceRelease(key) => {
                model.entries.remove(KEYS[*key]);
                harness.locker().force_release(KEYS[*key]).unwrap();
            }
            Op::Touch {
                key,
                token,
                expires_in,
            } => {
                let at = offset(now, *expires_in);
                let expected = match model.entries.get_mut(KEYS[*key]) {
                    Some(l)
                        if !l.is_expired_at(now)
                            && l.token.as_deref() == Some(TOKENS[*token])
                            && at > now =>
                    {
                        l.expires_at = Some(at);
                        true
                    }
                    _ => false,
                };
                let got = harness
                    .locker()
                    .touch(KEYS[*key], TOKENS[*token], at)
                    .unwrap();
                prop_assert_eq!(got, expected, "step {}: {:?}", step, op);
            }
            Op::ReleaseIfOwner { key, token } => {
                let expected = match model.entries.get(KEYS[*key]) {
                    Some(l) if l.token.as_deref() == Some(TOKENS[*token]) => {
                        let live = !l.is_expired_at(now);
                        model.entries.remove(KEYS[*key]);
                        live
                    }
                    _ => false,
                };
                let got = harness
                    .locker()
                    .release_if_owner(KEYS[*key], TOKENS[*token])
                    .unwrap();
                prop_assert_eq!(got, expected, "step {}: {:?}", step, op);
            }
            Op::Cleanup => {
                let before = model.entries.len();
                model.entries.retain(|_, l| !l.is_expired_at(now));
                let got = harness.locker().cleanup().unwrap();
                prop_assert_eq!(got, before - model.entries.len(), "step {}", step);
            }
            Op::Advance(secs) => clock.advance(Duration::from_secs(*secs)),
            Op::Rewind(secs) => clock.set(now - Duration::from_secs(*secs)),
            Op::Reopen => harness.reopen(),
        }
        let now = clock.now();
        for key in KEYS {
            let expected = model.live(key, now).cloned();
            prop_assert_eq!(
                harness.locker().exists(key).unwrap(),
                expected.is_some(),
                "step {}: exists({})",
                step,
                key
            );
            prop_assert_eq!(
                harness.locker().get(key).unwrap(),
                expected,
                "step {}: get({})",
                step,
                key
            );
        }
    }
    Ok(())
}

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn memory_locker_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let clock = ManualClock::new(start());
        let mut harness = Memory(MemoryLocker::with_clock(clock.clone()));
        run(&mut harness, &clock, &ops)?;
    }
}

proptest! {
    // Each step of a file locker commits to disk: fewer, shorter cases.
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn file_locker_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let clock = ManualClock::new(start());
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("model.redb");
        let mut harness = File {
            locker: Some(File::open(&path, &clock)),
            path,
            clock: clock.clone(),
            _dir: dir,
        };
        run(&mut harness, &clock, &ops)?;
    }
}
