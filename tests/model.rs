//! Random operation sequences, with clock moves forward and back and
//! reopening, checked after every step against the one model of
//! docs/semantics.md (`hostlock_testkit`), on a `FileLocker` and a
//! `MemoryLocker` side by side: results, `exists`, `get`, `list`, and fences.
//! The fuzz targets `ops_model` and `ops_faults` run the same model on
//! inputs a fuzzer finds; this test shrinks a failure to its shortest steps.

use std::time::Duration;

use hostlock_testkit::{Op, TOKENS, When, run_ops};
use proptest::prelude::*;

fn key() -> impl Strategy<Value = usize> {
    0..3usize
}

/// Mostly valid tokens; now and then the empty one (row V3).
fn token() -> impl Strategy<Value = usize> {
    prop_oneof![6 => 0..TOKENS.len() - 1, 1 => Just(TOKENS.len() - 1)]
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        6 => (0u64..32).prop_map(Duration::from_secs),
        1 => (0u64..1_000_000).prop_map(Duration::from_nanos),
        1 => (0u64..48).prop_map(|h| Duration::from_secs(h * 3600)),
        1 => Just(Duration::ZERO),
        1 => Just(Duration::MAX),
    ]
}

/// Mostly near now; now and then at the edges of what can be stored (V4).
fn when() -> impl Strategy<Value = When> {
    prop_oneof![
        8 => duration().prop_map(When::Later),
        4 => duration().prop_map(When::Earlier),
        2 => Just(When::Now),
        1 => Just(When::Start),
        1 => Just(When::Epoch),
        1 => Just(When::BeforeEpoch),
        1 => Just(When::Latest),
        1 => Just(When::AfterLatest),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (key(), any::<u8>(), proptest::option::weighted(0.75, when()),
              proptest::option::weighted(0.66, token()))
            .prop_map(|(key, value, expires, token)| Op::Acquire { key, value, expires, token }),
        2 => key().prop_map(Op::Release),
        2 => key().prop_map(Op::ForceRelease),
        4 => (key(), token(), when()).prop_map(|(key, token, at)| Op::Touch { key, token, at }),
        3 => (key(), token()).prop_map(|(key, token)| Op::ReleaseIfOwner { key, token }),
        1 => key().prop_map(Op::Get),
        1 => key().prop_map(Op::Exists),
        1 => key().prop_map(Op::Info),
        2 => any::<bool>().prop_map(|include_expired| Op::List { include_expired }),
        2 => Just(Op::Cleanup),
        3 => duration().prop_map(Op::Advance),
        2 => when().prop_map(Op::SetClock),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    // Each step of the file locker commits to disk: a modest number of cases.
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn lockers_match_the_model(ops in proptest::collection::vec(op(), 1..48)) {
        let dir = tempfile::tempdir().expect("temp dir");
        run_ops(dir.path(), &ops);
    }
}

/// The sequences an earlier version of this test shrank its failures to,
/// kept as cases of their own.
#[test]
fn past_findings_still_hold() {
    let secs = |s| When::Later(Duration::from_secs(s));
    let acquire = |key, expires, token| Op::Acquire {
        key,
        value: 0,
        expires,
        token,
    };
    let cases = [
        vec![
            acquire(0, Some(secs(1)), None),
            Op::Advance(Duration::from_secs(2)),
            acquire(0, Some(When::Now), None),
            Op::Cleanup,
        ],
        vec![
            acquire(1, Some(When::Now), Some(0)),
            Op::ReleaseIfOwner { key: 1, token: 0 },
        ],
        vec![
            acquire(2, Some(When::Now), None),
            acquire(0, None, None),
            acquire(0, None, None),
            Op::Advance(Duration::from_secs(1)),
            acquire(2, Some(When::Earlier(Duration::from_secs(1))), None),
            Op::Cleanup,
        ],
    ];
    for ops in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        run_ops(dir.path(), &ops);
    }
}
