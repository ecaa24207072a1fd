//! What grows with the number of locks: cleanup time, open time, file size
//! and memory. Prints markdown tables.
//!
//! - Cleanup: one `cleanup()` that removes 10k expired locks among 1M (1%
//!   expired), against one that removes 10k among 10k. Among 1M, the expired
//!   keys are first spread evenly through the others (each in another page,
//!   as when expiry has nothing to do with the key), then next to each other.
//!   Each expired lock has an expiry time of its own, in an order unlike the
//!   keys' order. The SQLite lock table (`synchronous=FULL`) deleting
//!   `WHERE expires_at <= now` through its expiry index is the baseline. The
//!   expired locks are added again before each round; the time and the bytes
//!   written (`wchar` in `/proc/self/io`) are the medians of the rounds.
//! - Open: opening a file of 1M locks, by the only handle of any process
//!   (which has the storage engine check every page) and beside another open
//!   handle; an empty file for reference.
//! - File size after the first 100k and after 1M acquire+release cycles on
//!   distinct keys, one thread, and after `compact()`.
//! - Memory: how far a child process's resident set (`VmRSS`) grows while it
//!   opens a store and takes 100k locks, and holds them.
//!
//! hostlock has no batch API, so its locks are stored by `acquire` calls,
//! through handles with `Durability::Relaxed` (which skips the waits for the
//! disk but writes the same pages) from several threads. Cleanup and open are
//! timed with `Durability::Immediate` handles. Expiry runs on a
//! `ManualClock`, moved forward instead of waited for. SQLite's rows are
//! inserted in one transaction.
//!
//! Run with `cargo bench --bench storage`. Environment: `HOSTLOCK_BENCH_LOCKS`
//! (default 1,000,000), `HOSTLOCK_BENCH_CYCLES` (1,000,000),
//! `HOSTLOCK_BENCH_HELD` (100,000), `HOSTLOCK_BENCH_ROUNDS` (3).

mod common;

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::{Kind, Shared, SqliteLocks, Synchronous, format_bytes, format_duration, median};
use hostlock::{CleanableLocker, Clock, Durability, FileLocker, LockValue, Locker, ManualClock};

/// Set in a child of the memory measurement: "STORE COUNT PATH".
const CHILD: &str = "HOSTLOCK_BENCH_RSS";

/// Threads that store the locks of a large file.
const SETUP_THREADS: usize = 4;

/// How many of the locks expire in the cleanup measurement.
const EXPIRED: u64 = 10_000;

fn open(path: &Path, durability: Durability, clock: &ManualClock) -> FileLocker<u64> {
    FileLocker::builder(path)
        .durability(durability)
        .clock(clock.clone())
        .background_cleanup(false)
        .busy_timeout(common::BUSY_TIMEOUT)
        .open()
        .expect("open the hostlock file")
}

/// The key of the `i`-th lock of a large file.
fn key(i: u64) -> String {
    format!("k{i:08}")
}

/// Acquires every key of `keys`, expiring at `expires_at`, from
/// [`SETUP_THREADS`] threads with clones of `locker`.
fn store_locks(
    locker: &FileLocker<u64>,
    keys: &[String],
    expires_at: impl Fn(usize) -> SystemTime + Sync,
) {
    let started = Instant::now();
    let chunk = keys.len().div_ceil(SETUP_THREADS).max(1);
    thread::scope(|s| {
        for (t, part) in keys.chunks(chunk).enumerate() {
            let (locker, expires_at) = (locker.clone(), &expires_at);
            s.spawn(move || {
                for (n, key) in part.iter().enumerate() {
                    let lock = LockValue::new(n as u64).expiring_at(expires_at(t * chunk + n));
                    assert!(locker.acquire(key, lock).expect("acquire"));
                    if t == 0 && n > 0 && n.is_multiple_of(50_000) {
                        eprintln!(
                            "  stored about {} locks in {:.0?}",
                            n * SETUP_THREADS,
                            started.elapsed()
                        );
                    }
                }
            });
        }
    });
}

/// A number below 1,000 for the `n`th key, in an order unlike the keys'.
fn scatter(n: usize) -> u64 {
    (n as u64).wrapping_mul(7_919) % 1_000
}

/// Cleanup times (seconds) of hostlock and SQLite, one per round, and the
/// bytes each wrote.
#[derive(Default)]
struct Times {
    hostlock: Vec<f64>,
    sqlite: Vec<f64>,
    hostlock_written: Vec<f64>,
    sqlite_written: Vec<f64>,
}

impl Times {
    fn medians(&self) -> (f64, f64) {
        (
            median(&mut self.hostlock.clone()),
            median(&mut self.sqlite.clone()),
        )
    }

    fn written(&self) -> (f64, f64) {
        (
            median(&mut self.hostlock_written.clone()),
            median(&mut self.sqlite_written.clone()),
        )
    }
}

/// What the cleanup of [`EXPIRED`] among `total` locks measured.
struct Cleanup {
    total: u64,
    /// The expired keys spread evenly among the others.
    spread: Times,
    /// The expired keys next to each other, after all the others (only
    /// when there are others).
    clustered: Times,
    /// File sizes with all `total` locks stored: hostlock's, SQLite's.
    sizes: (u64, u64),
    /// Open times of the hostlock file with `total` locks: alone, beside
    /// another handle (seconds, medians).
    open: Option<(f64, f64)>,
}

fn time_opens(path: &Path, clock: &ManualClock, rounds: u64) -> f64 {
    let mut took: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            let locker = open(path, Durability::Immediate, clock);
            let took = start.elapsed().as_secs_f64();
            drop(locker);
            took
        })
        .collect();
    median(&mut took)
}

fn cleanup(total: u64, rounds: u64, measure_open: bool) -> Cleanup {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cleanup.redb");
    let step = (total / EXPIRED).max(1);
    let (spread, live): (Vec<u64>, Vec<u64>) = (0..total).partition(|i| i.is_multiple_of(step));
    let spread: Vec<String> = spread.into_iter().map(key).collect();
    let live: Vec<String> = live.into_iter().map(key).collect();
    // "z..." sorts after every "k...".
    let clustered: Vec<String> = (0..spread.len()).map(|i| format!("z{i:08}")).collect();
    let clock = ManualClock::default();
    let far = clock.now() + Duration::from_secs(86_400);

    eprintln!(
        "cleanup of {} among {total}: storing the locks",
        spread.len()
    );
    let mut setup = Some(open(&path, Durability::Relaxed, &clock));
    store_locks(setup.as_ref().expect("open"), &live, |_| far);
    let mut measured = Some(open(&path, Durability::Immediate, &clock));

    let sqlite_path = dir.path().join("cleanup.sqlite");
    let sqlite = SqliteLocks::open(&sqlite_path, Synchronous::Full);
    let far_ms = common::expiry_ms(Duration::from_secs(86_400));
    sqlite.insert_many(live.iter().map(|key| (key.clone(), far_ms)));

    let mut result = Cleanup {
        total,
        spread: Times::default(),
        clustered: Times::default(),
        sizes: (0, 0),
        open: None,
    };
    let mut cases = vec![(&spread, "spread")];
    if !live.is_empty() {
        cases.push((&clustered, "clustered"));
    }
    for (expiring, case) in cases {
        for round in 0..rounds {
            // Each lock expires at its own time, in an order that has
            // nothing to do with the keys' order, as when locks are taken
            // at different times.
            let soon = clock.now() + Duration::from_secs(1);
            let at = |n| soon + Duration::from_millis(scatter(n));
            store_locks(setup.as_ref().expect("open"), expiring, at);
            let past_ms = common::expiry_ms(Duration::ZERO) - 2_000;
            sqlite.insert_many(
                expiring
                    .iter()
                    .enumerate()
                    .map(|(n, key)| (key.clone(), past_ms + scatter(n) as i64)),
            );
            if round == 0 && case == "spread" {
                sqlite.checkpoint();
                result.sizes = (common::file_size(&path), common::file_size(&sqlite_path));
                if measure_open {
                    eprintln!("  timing opens");
                    drop(setup.take());
                    drop(measured.take());
                    let alone = time_opens(&path, &clock, rounds);
                    let other = open(&path, Durability::Immediate, &clock);
                    let beside = time_opens(&path, &clock, rounds);
                    drop(other);
                    result.open = Some((alone, beside));
                    setup = Some(open(&path, Durability::Relaxed, &clock));
                    measured = Some(open(&path, Durability::Immediate, &clock));
                }
            }
            clock.advance(Duration::from_secs(2));
            let locker = measured.as_ref().expect("open");
            let before = written();
            let start = Instant::now();
            let removed = locker.cleanup().expect("cleanup");
            let hostlock = start.elapsed();
            let hostlock_written = written() - before;
            assert_eq!(removed, expiring.len(), "cleanup removes the expired locks");

            let now_ms = common::expiry_ms(Duration::ZERO);
            let before = written();
            let start = Instant::now();
            let removed = sqlite.cleanup(now_ms);
            let sqlite = start.elapsed();
            let sqlite_written = written() - before;
            assert_eq!(removed, expiring.len(), "SQLite removes the expired rows");
            eprintln!("  {case} round {round}: hostlock {hostlock:.1?}, SQLite {sqlite:.1?}");
            let times = if case == "spread" {
                &mut result.spread
            } else {
                &mut result.clustered
            };
            times.hostlock.push(hostlock.as_secs_f64());
            times.sqlite.push(sqlite.as_secs_f64());
            times.hostlock_written.push(hostlock_written as f64);
            times.sqlite_written.push(sqlite_written as f64);
        }
    }
    result
}

/// File sizes: empty, after `cycles / 10` and `cycles` acquire+release
/// cycles, after `compact()`; and the cycles per second.
fn file_size(cycles: u64) -> ([(String, u64); 4], f64) {
    eprintln!("file size over {cycles} cycles");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("size.redb");
    let locker = common::open_hostlock(&path, Durability::Relaxed);
    let handle = Shared::File(locker.clone()).handle();
    let first = cycles / 10;
    let mut sizes = vec![("empty".to_owned(), common::file_size(&path))];
    let start = Instant::now();
    for i in 0..cycles {
        let key = format!("c{i}");
        assert!(handle.acquire(&key, i));
        assert!(handle.release(&key));
        if i + 1 == first {
            sizes.push((format!("after {first} cycles"), common::file_size(&path)));
        }
        if (i + 1).is_multiple_of(100_000) {
            eprintln!("  {} cycles in {:.0?}", i + 1, start.elapsed());
        }
    }
    let per_second = cycles as f64 / start.elapsed().as_secs_f64();
    sizes.push((format!("after {cycles} cycles"), common::file_size(&path)));
    locker.compact().expect("compact");
    sizes.push(("after compact()".to_owned(), common::file_size(&path)));
    (sizes.try_into().expect("four sizes"), per_second)
}

/// The bytes this process has handed to `write` calls so far (`wchar` in
/// `/proc/self/io`): what a cleanup wrote, taken as a difference.
fn written() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    io.lines()
        .find_map(|line| line.strip_prefix("wchar:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a wchar line")
}

/// This process's resident set, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

/// A child: prints its resident set before opening the store, after, and
/// with `count` locks held.
fn child(spec: &str) {
    let parts: Vec<&str> = spec.splitn(3, ' ').collect();
    let [store, count, path] = parts[..] else {
        panic!("bad child spec {spec:?}");
    };
    let kind = Kind::parse(store).expect("a store");
    let count: u64 = count.parse().expect("a count");
    let keys: Vec<String> = (0..count).map(key).collect();
    let before = rss();
    let shared = Shared::open(kind, Path::new(path));
    let handle = shared.handle();
    let opened = rss();
    for (i, key) in keys.iter().enumerate() {
        assert!(handle.acquire(key, i as u64));
    }
    let held = rss();
    println!("{before} {opened} {held}");
}

fn memory(held: u64) -> Vec<(Kind, [u64; 3])> {
    let exe = std::env::current_exe().expect("the bench binary");
    [Kind::Memory, Kind::HostlockRelaxed, Kind::SqliteNormal]
        .into_iter()
        .map(|kind| {
            eprintln!("resident memory of {} with {held} locks", kind.name());
            let dir = tempfile::tempdir().expect("temp dir");
            let path = kind.path_in(dir.path());
            let output = Command::new(&exe)
                .env(CHILD, format!("{} {held} {}", kind.name(), path.display()))
                .output()
                .expect("run a child");
            assert!(output.status.success(), "a child failed");
            let text = String::from_utf8(output.stdout).expect("UTF-8");
            let numbers: Vec<u64> = text
                .split_whitespace()
                .map(|n| n.parse().expect("a size"))
                .collect();
            (kind, numbers.try_into().expect("three sizes"))
        })
        .collect()
}

fn ms(seconds: f64) -> String {
    format_duration(Duration::from_secs_f64(seconds))
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    let locks = common::env_number("HOSTLOCK_BENCH_LOCKS", 1_000_000);
    let cycles = common::env_number("HOSTLOCK_BENCH_CYCLES", 1_000_000).max(10);
    let held = common::env_number("HOSTLOCK_BENCH_HELD", 100_000);
    let rounds = common::env_number("HOSTLOCK_BENCH_ROUNDS", 3);

    let large = cleanup(locks, rounds, true);
    let small = cleanup(EXPIRED.min(locks), rounds, false);
    let empty = {
        let dir = tempfile::tempdir().expect("temp dir");
        time_opens(
            &dir.path().join("empty.redb"),
            &ManualClock::default(),
            rounds,
        )
    };
    let (sizes, cycle_rate) = file_size(cycles);
    let memory = memory(held);

    let (small_hostlock, small_sqlite) = small.spread.medians();
    println!();
    println!("Cleanup of {EXPIRED} expired locks (median of {rounds}):");
    println!();
    println!(
        "| Locks in the file | hostlock (immediate) | SQLite FULL | hostlock vs SQLite (time) | hostlock wrote | SQLite wrote |"
    );
    println!(
        "|-------------------|----------------------|-------------|---------------------------|----------------|--------------|"
    );
    let rows = [
        (
            format!("{}, expired keys spread among them", large.total),
            &large.spread,
        ),
        (
            format!("{}, expired keys next to each other", large.total),
            &large.clustered,
        ),
        (format!("{}, all expired", small.total), &small.spread),
    ];
    for (what, times) in &rows {
        let (hostlock, sqlite) = times.medians();
        let (hostlock_written, sqlite_written) = times.written();
        println!(
            "| {what} | {} | {} | {:.2}x | {} | {} |",
            ms(hostlock),
            ms(sqlite),
            hostlock / sqlite,
            format_bytes(hostlock_written as u64),
            format_bytes(sqlite_written as u64),
        );
    }
    let (small_written, small_sqlite_written) = small.spread.written();
    for (what, times) in [
        ("spread among", &large.spread),
        ("next to each other among", &large.clustered),
    ] {
        let (hostlock, sqlite) = times.medians();
        let (hostlock_written, sqlite_written) = times.written();
        println!(
            "| ratio {what} {} / all expired | {:.2}x | {:.2}x | | {:.2}x | {:.2}x |",
            large.total,
            hostlock / small_hostlock,
            sqlite / small_sqlite,
            hostlock_written / small_written,
            sqlite_written / small_sqlite_written,
        );
    }
    println!();
    let (alone, beside) = large.open.expect("open times");
    println!(
        "Open (median of {rounds}) and size of a file of {} locks:",
        large.total
    );
    println!();
    println!("| | hostlock | SQLite |");
    println!("|-|----------|--------|");
    println!(
        "| open, the only handle (checks every page) | {} | |",
        ms(alone)
    );
    println!("| open beside another open handle | {} | |", ms(beside));
    println!("| open an empty file, the only handle | {} | |", ms(empty));
    println!(
        "| file size | {} | {} |",
        format_bytes(large.sizes.0),
        format_bytes(large.sizes.1)
    );
    println!(
        "| file size with {} locks | {} | {} |",
        small.total,
        format_bytes(small.sizes.0),
        format_bytes(small.sizes.1)
    );
    println!();
    println!(
        "hostlock file size over acquire+release cycles on distinct keys (relaxed, one thread, {:.0} cycles/s):",
        cycle_rate
    );
    println!();
    println!("| When | File size |");
    println!("|------|-----------|");
    for (when, size) in &sizes {
        println!("| {when} | {} |", format_bytes(*size));
    }
    println!(
        "| ratio after {cycles} / after {} | {:.2}x |",
        cycles / 10,
        sizes[2].1 as f64 / sizes[1].1 as f64
    );
    println!();
    println!("Resident memory of a process holding {held} locks:");
    println!();
    println!(
        "| Store | Before open | After open | With the locks held | Growth for the locks | Per lock |"
    );
    println!(
        "|-------|-------------|------------|---------------------|----------------------|----------|"
    );
    for (kind, [before, opened, with]) in &memory {
        let growth = with.saturating_sub(*opened);
        println!(
            "| `{}` | {} | {} | {} | {} | {} B |",
            kind.name(),
            format_bytes(*before),
            format_bytes(*opened),
            format_bytes(*with),
            format_bytes(growth),
            growth / held.max(1)
        );
    }
    println!();
    println!("Load average at the end: {}.", common::load_average());
}
