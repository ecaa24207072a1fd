//! Acquire+release cycles per lock store, against baselines in the same run.
//!
//! - `cycle/*`: one thread, acquire then release of a fresh key; baselines are
//!   `MemoryLocker` and an fs2 lock+unlock of a file (the floor of any lock
//!   that crosses processes).
//!   `file_guard` is the same cycle through a guard (`try_lock` + `unlock`):
//!   a lease bound to the handle's session, which also checks the queue.
//! - `get_held/file`: `get` of a held key.
//! - `processes/N`: N processes on one file, each cycling over its own keys;
//!   the time is for all their cycles together (aggregate throughput).
//!
//! Run with `cargo bench`; `docs/benchmarks.md` says how to read the output.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use hostlock::{FileLocker, LeaseLocker, LockValue, Locker, MemoryLocker};

/// Set in a child process of `processes/N`: "PATH CYCLES PREFIX".
const CHILD: &str = "HOSTLOCK_BENCH_CHILD";

fn open(path: &Path) -> FileLocker<u64> {
    FileLocker::builder(path)
        .background_cleanup(false)
        .open()
        .expect("open the bench lock file")
}

fn cycle(locker: &impl Locker<u64>, key: &str, n: u64) {
    assert!(locker.acquire(key, LockValue::new(n)).expect("acquire"));
    assert!(locker.release(key).expect("release"));
}

fn single_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("cycle");
    group.throughput(Throughput::Elements(1));

    let memory = MemoryLocker::new();
    let mut n = 0u64;
    group.bench_function("memory", |b| {
        b.iter(|| {
            n += 1;
            cycle(&memory, &format!("key-{n}"), n);
        })
    });

    let dir = tempfile::tempdir().expect("temp dir");
    let floor = std::fs::File::create(dir.path().join("floor.lock")).expect("lock file");
    group.bench_function("fs2_lock_unlock", |b| {
        b.iter(|| {
            fs2::FileExt::lock_exclusive(&floor).expect("lock");
            fs2::FileExt::unlock(&floor).expect("unlock");
        })
    });

    let file = open(&dir.path().join("cycle.redb"));
    group.bench_function("file", |b| {
        b.iter(|| {
            n += 1;
            cycle(&file, &format!("key-{n}"), n);
        })
    });
    group.bench_function("file_guard", |b| {
        b.iter(|| {
            n += 1;
            let guard = file
                .try_lock(&format!("key-{n}"), n, None)
                .expect("try_lock")
                .expect("free");
            assert!(guard.unlock().expect("unlock"));
        })
    });
    group.finish();

    let mut group = c.benchmark_group("get_held");
    assert!(file.acquire("held", LockValue::new(1)).expect("acquire"));
    group.bench_function("file", |b| {
        b.iter(|| file.get("held").expect("get").expect("held"))
    });
    group.finish();
}

fn processes(c: &mut Criterion) {
    let mut group = c.benchmark_group("processes");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(1));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("processes.redb");
    drop(open(&path));
    let exe = std::env::current_exe().expect("the bench binary");
    for n in [1u64, 2, 4] {
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let per_child = iters.div_ceil(n).max(1);
                let started = Instant::now();
                let children: Vec<_> = (0..n)
                    .map(|i| {
                        Command::new(&exe)
                            .env(CHILD, format!("{} {per_child} p{i}-", path.display()))
                            .stdout(Stdio::null())
                            .spawn()
                            .expect("start a child")
                    })
                    .collect();
                for mut child in children {
                    assert!(child.wait().expect("wait").success(), "a child failed");
                }
                started.elapsed()
            })
        });
    }
    group.finish();
}

fn child(spec: &str) {
    let mut parts = spec.rsplitn(3, ' ');
    let prefix = parts.next().expect("prefix");
    let cycles: u64 = parts.next().expect("cycles").parse().expect("cycles");
    let path = parts.next().expect("path");
    let locker = open(Path::new(path));
    for n in 0..cycles {
        cycle(&locker, &format!("{prefix}{n}"), n);
    }
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    single_thread(&mut c);
    processes(&mut c);
    c.final_summary();
}
