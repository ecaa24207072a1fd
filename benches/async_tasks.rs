//! Guard cycles of tokio tasks through `AsyncLocker` against those of OS
//! threads through the blocking `LeaseLocker`, measured in the same run
//! (criterion).
//!
//! - `blocking/<store>/<n>`: `n` OS threads, each cycling on a key of its
//!   own with `LeaseLocker::try_lock` then `LockGuard::unlock`, each on a
//!   clone of one locker.
//! - `async/<store>/<n>`: `n` tokio tasks on a multi-thread runtime with two
//!   worker threads (one per core of the bench machine), each cycling on a
//!   key of its own with `AsyncLocker::try_lock(..).await` then
//!   `AsyncGuard::unlock().await`, all through one `AsyncLocker`.
//!
//! The stores are `FileLocker<u64>` with `Durability::Immediate` and with
//! `Durability::Relaxed` (one handle, opened as `benches/common/mod.rs`
//! opens it: no cleanup thread, a 5 s busy timeout), and `MemoryLocker<u64>`,
//! the floor. Every lock has a 60 s expiry. The time is per completed cycle
//! of all the workers together, so its inverse is the aggregate throughput.
//!
//! Criterion measures each API for a few seconds in turn, and the disk of a
//! shared machine can be twice as slow in one stretch as in the next. So
//! after criterion, the bench also runs paired rounds: for each store and
//! worker count, [`ROUNDS`] rounds of about [`ROUND`] for each API, a round
//! being the blocking API then the async one (the order alternating from
//! round to round), with the ratio taken within each round.
//!
//! At the end, prints a markdown table: for each store and worker count, the
//! median over criterion's samples of the cycles per second of each API,
//! their ratio (async over blocking), and the median (and range) of the
//! paired rounds' ratios. Below it, the target for the file stores, judged
//! on the paired ratios: within 10% of the blocking API at one task, ahead
//! of it at 64.
//!
//! Run with `cargo bench --bench async_tasks` (about two minutes);
//! criterion's filters work as usual (`cargo bench --bench async_tasks --
//! immediate`), and pick the paired rounds too.

mod common;

use std::cell::RefCell;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{TTL, format_rate, median, open_hostlock};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use hostlock::{AsyncLocker, AsyncRawLeaseLocker, Durability, LeaseLocker, MemoryLocker};
use tokio::runtime::Runtime;

/// Criterion samples per benchmark.
const SAMPLES: usize = 10;
/// How many threads, or tasks, cycle at once.
const WORKERS: [usize; 2] = [1, 64];
/// The runtime's worker threads: the bench machine's cores.
const RUNTIME_THREADS: usize = 2;
/// Within how much of the blocking API one task must stay.
const ONE_TASK_MARGIN: f64 = 0.10;
/// Paired rounds per store and worker count.
const ROUNDS: usize = 8;
/// About how long each API runs in a paired round.
const ROUND: Duration = Duration::from_millis(250);

/// The two ways of cycling a guard.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Blocking,
    Async,
}

impl Api {
    fn name(self) -> &'static str {
        match self {
            Api::Blocking => "blocking",
            Api::Async => "async",
        }
    }
}

/// What one benchmark measured: nanoseconds per cycle in each of
/// criterion's measurement samples.
struct Measured {
    api: Api,
    store: &'static str,
    workers: usize,
    ns_per_cycle: Vec<f64>,
}

/// The ratios (async throughput over blocking) of the paired rounds of one
/// store and worker count.
struct Paired {
    store: &'static str,
    workers: usize,
    ratios: Vec<f64>,
}

#[derive(Default)]
struct Recorder {
    measured: RefCell<Vec<Measured>>,
    paired: RefCell<Vec<Paired>>,
}

impl Recorder {
    /// Benchmarks `routine` (which completes `iters` cycles and returns how
    /// long they took) as `store/workers` in `group`.
    fn bench(
        &self,
        group: &mut BenchmarkGroup<'_, WallTime>,
        api: Api,
        store: &'static str,
        workers: usize,
        routine: impl FnMut(u64) -> Duration,
    ) {
        let id = BenchmarkId::new(store, workers);
        let Some(ns_per_cycle) = common::per_call_samples(group, id, SAMPLES, routine) else {
            return; // filtered out
        };
        self.measured.borrow_mut().push(Measured {
            api,
            store,
            workers,
            ns_per_cycle,
        });
    }

    /// Median cycles per second of `api` on `store` with `workers`.
    fn rate(&self, api: Api, store: &str, workers: usize) -> Option<f64> {
        self.measured
            .borrow()
            .iter()
            .find(|m| m.api == api && m.store == store && m.workers == workers)
            .map(|m| 1e9 / median(&mut m.ns_per_cycle.clone()))
    }

    /// The median, lowest and highest ratio of the paired rounds.
    fn paired(&self, store: &str, workers: usize) -> Option<(f64, f64, f64)> {
        let paired = self.paired.borrow();
        let rounds = paired
            .iter()
            .find(|p| p.store == store && p.workers == workers)?;
        let mut ratios = rounds.ratios.clone();
        let mid = median(&mut ratios); // sorts them
        Some((mid, *ratios.first()?, *ratios.last()?))
    }

    fn print_table(&self, stores: &[&'static str]) {
        let shown = |rate: Option<f64>| rate.map_or_else(String::new, format_rate);
        println!();
        println!(
            "| Store | Workers | Blocking cycles/s | Async cycles/s | Async / blocking | Paired rounds: median (range) |"
        );
        println!(
            "|-------|---------|-------------------|----------------|------------------|-------------------------------|"
        );
        for store in stores {
            for n in WORKERS {
                let blocking = self.rate(Api::Blocking, store, n);
                let tasks = self.rate(Api::Async, store, n);
                let ratio = blocking
                    .zip(tasks)
                    .map_or_else(String::new, |(b, a)| format!("{:.2}x", a / b));
                let paired = self
                    .paired(store, n)
                    .map_or_else(String::new, |(mid, low, high)| {
                        format!("{mid:.2}x ({low:.2}x to {high:.2}x)")
                    });
                println!(
                    "| `{store}` | {n} | {} | {} | {ratio} | {paired} |",
                    shown(blocking),
                    shown(tasks)
                );
            }
        }
        println!();
        for store in stores.iter().filter(|s| s.starts_with("hostlock")) {
            let ratio = |n| self.paired(store, n).map(|(mid, _, _)| mid);
            let verdict = |met: bool| if met { "met" } else { "missed" };
            if let (Some(one), Some(many)) = (ratio(1), ratio(64)) {
                println!(
                    "Target, `{store}` (paired rounds): one task within {:.0}% of one thread: \
                     {:.2}x, {}; 64 tasks ahead of 64 threads: {:.2}x, {}.",
                    ONE_TASK_MARGIN * 100.0,
                    one,
                    verdict(one >= 1.0 - ONE_TASK_MARGIN),
                    many,
                    verdict(many > 1.0),
                );
            }
        }
        println!();
        println!(
            "Ratios are of throughput: between criterion's medians, and the median of \
             {ROUNDS} paired rounds. Load average at the end: {}.",
            common::load_average()
        );
    }
}

/// `took` for `done` cycles, scaled to the `iters` asked for.
fn scaled(took: Duration, iters: u64, done: u64) -> Duration {
    took.mul_f64(iters as f64 / done as f64)
}

/// Runs `n` threads that complete about `iters` cycles between them, each
/// on a key of its own; returns the time from their common start until the
/// last one is done, scaled to `iters` cycles.
fn threads<L>(locker: &L, n: usize, iters: u64) -> Duration
where
    L: LeaseLocker<u64> + Send + Sync,
{
    let per_worker = iters.div_ceil(n as u64).max(1);
    let barrier = Barrier::new(n + 1);
    let started = thread::scope(|s| {
        for worker in 0..n {
            let (barrier, locker) = (&barrier, locker.clone());
            s.spawn(move || {
                let key = format!("worker-{worker}");
                barrier.wait();
                for i in 0..per_worker {
                    let guard = locker.try_lock(&key, i, Some(TTL)).expect("try_lock");
                    let guard = guard.expect("a key of the thread's own is free");
                    assert!(guard.unlock().expect("unlock"), "{key} was held");
                }
            });
        }
        barrier.wait();
        Instant::now()
    });
    scaled(started.elapsed(), iters, per_worker * n as u64)
}

/// Runs `n` tasks on `runtime` that complete about `iters` cycles between
/// them, each on a key of its own; returns the time from their common start
/// until the last one is done, scaled to `iters` cycles.
fn tasks<L>(runtime: &Runtime, locker: &AsyncLocker<L>, n: usize, iters: u64) -> Duration
where
    L: AsyncRawLeaseLocker<u64> + Clone,
{
    let per_worker = iters.div_ceil(n as u64).max(1);
    let took = runtime.block_on(async {
        let barrier = Arc::new(tokio::sync::Barrier::new(n + 1));
        let workers: Vec<_> = (0..n)
            .map(|worker| {
                let (barrier, locker) = (Arc::clone(&barrier), locker.clone());
                tokio::spawn(async move {
                    let key = format!("worker-{worker}");
                    barrier.wait().await;
                    for i in 0..per_worker {
                        let guard = locker.try_lock(&key, i, Some(TTL)).await;
                        let guard = guard.expect("try_lock");
                        let guard = guard.expect("a key of the task's own is free");
                        assert!(guard.unlock().await.expect("unlock"), "{key} was held");
                    }
                })
            })
            .collect();
        barrier.wait().await;
        let started = Instant::now();
        for worker in workers {
            worker.await.expect("a worker panicked");
        }
        started.elapsed()
    });
    scaled(took, iters, per_worker * n as u64)
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(SAMPLES)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
}

/// For each worker count: criterion on the blocking API then the async one,
/// then the paired rounds.
fn compare<L>(
    c: &mut Criterion,
    recorder: &Recorder,
    runtime: &Runtime,
    store: &'static str,
    locker: L,
) where
    L: LeaseLocker<u64> + AsyncRawLeaseLocker<u64> + Send + Sync,
{
    let awaitable = AsyncLocker::new(locker.clone());
    for n in WORKERS {
        let run = |api, iters| match api {
            Api::Blocking => threads(&locker, n, iters),
            Api::Async => tasks(runtime, &awaitable, n, iters),
        };
        for api in [Api::Blocking, Api::Async] {
            let mut group = c.benchmark_group(api.name());
            configure(&mut group);
            recorder.bench(&mut group, api, store, n, |iters| run(api, iters));
            group.finish();
        }
        // Rounds as long as criterion's figures suggest; none where its
        // filter left this store out.
        let Some(rate) = recorder.rate(Api::Blocking, store, n) else {
            continue;
        };
        let iters = (rate * ROUND.as_secs_f64()).max(n as f64).ceil() as u64;
        let ratios = (0..ROUNDS)
            .map(|round| {
                let (blocking, tasks) = if round % 2 == 0 {
                    let blocking = run(Api::Blocking, iters);
                    (blocking, run(Api::Async, iters))
                } else {
                    let tasks = run(Api::Async, iters);
                    (run(Api::Blocking, iters), tasks)
                };
                blocking.as_secs_f64() / tasks.as_secs_f64()
            })
            .collect();
        recorder.paired.borrow_mut().push(Paired {
            store,
            workers: n,
            ratios,
        });
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .enable_all()
        .build()
        .expect("a runtime");
    let recorder = Recorder::default();
    let memory = MemoryLocker::<u64>::new();
    let immediate = open_hostlock(&dir.path().join("immediate.redb"), Durability::Immediate);
    let relaxed = open_hostlock(&dir.path().join("relaxed.redb"), Durability::Relaxed);
    compare(&mut c, &recorder, &runtime, "memory", memory);
    compare(&mut c, &recorder, &runtime, "hostlock_immediate", immediate);
    compare(&mut c, &recorder, &runtime, "hostlock_relaxed", relaxed);
    c.final_summary();
    recorder.print_table(&["memory", "hostlock_immediate", "hostlock_relaxed"]);
}
