//! Time per operation of each lock store, against baselines measured in the
//! same run (criterion). The stores are those of `benches/common/mod.rs`.
//!
//! The stores include the lockers of the sibling crates (`sqlite_locker`,
//! `redis_locker`); the bench starts its own `redis-server`.
//!
//! - `cycle_distinct_keys/<store>`: one thread, acquire then release, each
//!   cycle on another key. `fs2_lock_unlock` (an OS lock and unlock of one
//!   file) is the floor of any lock shared between processes;
//!   `hostlock_immediate_guard` is the cycle through a guard (`try_lock` +
//!   `unlock`: bound to the handle's session, checking the wait queue).
//! - `cycle_one_key/<store>`: the same, always on one key.
//! - `get_held/<store>`: `get` of a held key.
//! - `threads_own_keys/<store>/<n>`: `n` threads of one process, each cycling
//!   on keys of its own. A hostlock thread uses a clone of one `FileLocker`,
//!   a SQLite thread its own connection. The time is per completed cycle of
//!   all threads together, so its inverse is the aggregate throughput.
//! - `threads_shared_keys/<store>/<n>`: the same, all threads on four shared
//!   keys: a thread whose acquire is refused tries the next key at once, and
//!   only completed cycles count.
//!
//! After criterion's own report, prints a markdown table: for each benchmark
//! the median over criterion's samples of the time per operation, and its
//! throughput as a ratio to SQLite's in the same group.
//!
//! Run with `cargo bench --bench acquire_release`; criterion's filters work
//! as usual (`cargo bench --bench acquire_release -- threads_own`).

mod common;

use std::cell::RefCell;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use common::{Handle, Kind, RedisServer, Shared, format_duration, format_rate, median};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use hostlock::LeaseLocker;

/// Criterion samples per single-thread benchmark.
const SAMPLES: usize = 20;
/// Criterion samples per thread-count benchmark.
const THREAD_SAMPLES: usize = 10;
/// Thread counts of the `threads_*` groups.
const THREADS: [usize; 5] = [1, 2, 4, 8, 16];
/// Keys each thread (or the single thread) cycles through.
const RING: usize = 1024;
/// Keys the threads of `threads_shared_keys` contend for.
const SHARED_KEYS: usize = 4;

/// What one benchmark measured: nanoseconds per operation in each of
/// criterion's measurement samples.
struct Measured {
    group: &'static str,
    store: String,
    threads: Option<usize>,
    ns_per_op: Vec<f64>,
}

#[derive(Default)]
struct Recorder {
    measured: RefCell<Vec<Measured>>,
}

impl Recorder {
    /// Benchmarks `routine` (which runs `iters` operations and returns how
    /// long they took) as `store` or `store/threads` in `group`.
    fn bench(
        &self,
        group: &mut BenchmarkGroup<'_, WallTime>,
        (group_name, samples): (&'static str, usize),
        store: &str,
        threads: Option<usize>,
        routine: impl FnMut(u64) -> Duration,
    ) {
        let id = match threads {
            Some(n) => BenchmarkId::new(store, n),
            None => BenchmarkId::from_parameter(store),
        };
        let Some(ns_per_op) = common::per_call_samples(group, id, samples, routine) else {
            return; // filtered out
        };
        self.measured.borrow_mut().push(Measured {
            group: group_name,
            store: store.to_owned(),
            threads,
            ns_per_op,
        });
    }

    fn median_ns(&self, group: &str, store: &str, threads: Option<usize>) -> Option<f64> {
        self.measured
            .borrow()
            .iter()
            .find(|m| m.group == group && m.store == store && m.threads == threads)
            .map(|m| median(&mut m.ns_per_op.clone()))
    }

    fn print_table(&self) {
        println!();
        println!(
            "| Benchmark | Time per op (median) | Ops per second | vs SQLite FULL | vs SQLite NORMAL |"
        );
        println!(
            "|-----------|----------------------|----------------|----------------|------------------|"
        );
        for m in self.measured.borrow().iter() {
            let ns = median(&mut m.ns_per_op.clone());
            let name = match m.threads {
                Some(n) => format!("{}/{}/{n}", m.group, m.store),
                None => format!("{}/{}", m.group, m.store),
            };
            let ratio = |baseline: Kind| {
                self.median_ns(m.group, baseline.name(), m.threads)
                    .filter(|_| m.store != "memory" && m.store != "fs2_lock_unlock")
                    .map_or_else(|| "".to_owned(), |base| format!("{:.2}x", base / ns))
            };
            println!(
                "| `{name}` | {} | {} | {} | {} |",
                format_duration(Duration::from_secs_f64(ns / 1e9)),
                format_rate(1e9 / ns),
                ratio(Kind::SqliteFull),
                ratio(Kind::SqliteNormal),
            );
        }
        println!();
        println!(
            "Ratios are throughput (the baseline's time over this one's). Load average at the end: {}.",
            common::load_average()
        );
        let busy = common::busy_retries();
        if busy > 0 {
            println!("Calls retried after a busy timeout: {busy}.");
        }
    }
}

/// `count` distinct keys starting with `prefix`.
fn key_ring(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i}")).collect()
}

fn cycle(handle: &Handle, key: &str, value: u64) {
    assert!(handle.acquire(key, value), "{key} is free");
    assert!(handle.release(key), "{key} was held");
}

fn timed(iters: u64, mut op: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        op();
    }
    start.elapsed()
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>, samples: usize) {
    group
        .sample_size(samples)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
}

fn single_thread(c: &mut Criterion, recorder: &Recorder, stores: &[(Kind, Shared)]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let floor = std::fs::File::create(dir.path().join("floor.lock")).expect("lock file");
    let fs2_cycle = |iters| {
        timed(iters, || {
            fs2::FileExt::lock_exclusive(&floor).expect("lock");
            fs2::FileExt::unlock(&floor).expect("unlock");
        })
    };

    for (name, distinct) in [("cycle_distinct_keys", true), ("cycle_one_key", false)] {
        let mut group = c.benchmark_group(name);
        configure(&mut group, SAMPLES);
        let at = (name, SAMPLES);
        recorder.bench(&mut group, at, "fs2_lock_unlock", None, fs2_cycle);
        for (kind, shared) in stores {
            let handle = shared.handle();
            let keys = if distinct {
                key_ring("k", RING)
            } else {
                vec!["one".to_owned()]
            };
            let mut n = 0usize;
            recorder.bench(&mut group, at, kind.name(), None, |iters| {
                timed(iters, || {
                    n += 1;
                    cycle(&handle, &keys[n % keys.len()], n as u64);
                })
            });
            if let (true, Shared::File(locker)) = (distinct, shared)
                && *kind == Kind::HostlockImmediate
            {
                let guard_name = "hostlock_immediate_guard";
                recorder.bench(&mut group, at, guard_name, None, |iters| {
                    timed(iters, || {
                        n += 1;
                        let key = &keys[n % keys.len()];
                        let ttl = Some(common::TTL);
                        let guard = locker.try_lock(key, n as u64, ttl).expect("try_lock");
                        assert!(guard.expect("free").unlock().expect("unlock"));
                    })
                });
            }
        }
        group.finish();
    }

    let mut group = c.benchmark_group("get_held");
    configure(&mut group, SAMPLES);
    for (kind, shared) in stores {
        let handle = shared.handle();
        assert!(handle.acquire("held", 1), "held is free");
        recorder.bench(
            &mut group,
            ("get_held", SAMPLES),
            kind.name(),
            None,
            |iters| {
                timed(iters, || {
                    assert_eq!(handle.get("held"), Some(1));
                })
            },
        );
        assert!(handle.release("held"));
    }
    group.finish();
}

/// Runs `n` threads that complete `iters` cycles between them; returns the
/// time from their common start until the last one is done, scaled to
/// `iters` cycles.
fn threads(shared: &Shared, n: usize, shared_keys: bool, iters: u64) -> Duration {
    let per_thread = iters.div_ceil(n as u64).max(1);
    let barrier = Barrier::new(n + 1);
    let started = thread::scope(|s| {
        for t in 0..n {
            let barrier = &barrier;
            s.spawn(move || {
                let handle = shared.handle();
                let keys = if shared_keys {
                    key_ring("shared-", SHARED_KEYS)
                } else {
                    key_ring(&format!("t{t}-"), RING)
                };
                barrier.wait();
                let mut attempt = t;
                let mut done = 0u64;
                while done < per_thread {
                    let key = &keys[attempt % keys.len()];
                    attempt += 1;
                    if handle.acquire(key, done) {
                        assert!(handle.release(key), "{key} was held");
                        done += 1;
                    } else {
                        assert!(shared_keys, "a key of this thread's own is free");
                    }
                }
            });
        }
        barrier.wait();
        Instant::now()
    });
    let took = started.elapsed();
    took.mul_f64(iters as f64 / (per_thread * n as u64) as f64)
}

fn contended(c: &mut Criterion, recorder: &Recorder, stores: &[(Kind, Shared)]) {
    for (name, shared_keys) in [("threads_own_keys", false), ("threads_shared_keys", true)] {
        let mut group = c.benchmark_group(name);
        configure(&mut group, THREAD_SAMPLES);
        for (kind, shared) in stores {
            for n in THREADS {
                let at = (name, THREAD_SAMPLES);
                recorder.bench(&mut group, at, kind.name(), Some(n), |iters| {
                    threads(shared, n, shared_keys, iters)
                });
            }
        }
        group.finish();
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = RedisServer::start();
    let stores: Vec<(Kind, Shared)> = Kind::ALL
        .into_iter()
        .map(|kind| {
            let path = kind.path_in(dir.path());
            let shared = match kind {
                Kind::RedisLocker => Shared::redis(redis.url(), &path),
                _ => Shared::open(kind, &path),
            };
            (kind, shared)
        })
        .collect();
    let recorder = Recorder::default();
    single_thread(&mut c, &recorder, &stores);
    contended(&mut c, &recorder, &stores);
    c.final_summary();
    recorder.print_table();
}
