//! Processes sharing one lock store: aggregate throughput, latency and
//! fairness, for hostlock in both durabilities, the SQLite lock table with
//! `synchronous=FULL` and `NORMAL`, and the lockers of the sibling crates
//! over SQLite and Redis (the stores of `benches/common/mod.rs`; the bench
//! starts its own `redis-server`).
//!
//! Every run starts 2 or 4 processes (this binary again, its role in an
//! environment variable) that open the store, start together, and cycle
//! acquire+release for a fixed time, either on keys of their own or all on
//! one key. On one key, a process whose acquire is refused tries again at
//! once; `hostlock_immediate_queued`, `sqlite_locker_queued` and
//! `redis_locker_queued` instead wait in line with `try_lock_for` (a guard:
//! bound to its holder, first come first served).
//!
//! Per run it reports completed cycles per second of all processes together,
//! the 50th and 99th percentile of the time one cycle took (acquire, retries
//! included, to the end of the release), and fairness: the fewest cycles any
//! process completed over the most. Each figure is the median over the
//! rounds of a configuration.
//!
//! Run with `cargo bench --bench processes`. `HOSTLOCK_BENCH_SECS` (default
//! 5) sets the length of a run and `HOSTLOCK_BENCH_ROUNDS` (default 3) the
//! rounds. `HOSTLOCK_BENCH_ONLY`, a comma-separated list of row labels
//! (`hostlock_immediate,hostlock_immediate_queued`), runs those rows alone.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Handle, Kind, RedisServer, Shared, format_duration, format_rate, median};
use hostlock::LeaseLocker;

/// Set in a child: "STORE MODE START_MS END_MS INDEX PATH".
const CHILD: &str = "HOSTLOCK_BENCH_PROCESS";

/// How the processes pick keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    OwnKeys,
    OneKey,
    /// One key, waiting with `try_lock_for` (hostlock only).
    OneKeyQueued,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::OwnKeys => "own_keys",
            Mode::OneKey => "one_key",
            Mode::OneKeyQueued => "one_key_queued",
        }
    }

    fn parse(name: &str) -> Mode {
        [Mode::OwnKeys, Mode::OneKey, Mode::OneKeyQueued]
            .into_iter()
            .find(|mode| mode.name() == name)
            .expect("a mode")
    }
}

fn epoch_ms(at: SystemTime) -> u64 {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    u64::try_from(ms).expect("a time in range")
}

/// Sleeps until the wall-clock time `ms`; whether it was already past.
fn sleep_until_ms(ms: u64) -> bool {
    let now = epoch_ms(SystemTime::now());
    if now >= ms {
        return true;
    }
    thread::sleep(Duration::from_millis(ms - now));
    false
}

/// A child: cycles until the end time and prints "late" or "on-time" and the
/// number of calls it retried after a busy timeout, then the nanoseconds of
/// each completed cycle, one per line.
fn child(spec: &str) {
    let parts: Vec<&str> = spec.splitn(6, ' ').collect();
    let [store, mode, start_ms, end_ms, index, path] = parts[..] else {
        panic!("bad child spec {spec:?}");
    };
    let kind = Kind::parse(store).expect("a store");
    let mode = Mode::parse(mode);
    let start_ms: u64 = start_ms.parse().expect("start");
    let end_ms: u64 = end_ms.parse().expect("end");
    let shared = Shared::open(kind, Path::new(path));
    let handle = shared.handle();
    let keys: Vec<String> = match mode {
        Mode::OwnKeys => (0..1024).map(|i| format!("p{index}-{i}")).collect(),
        Mode::OneKey | Mode::OneKeyQueued => vec!["one".to_owned()],
    };
    let late = sleep_until_ms(start_ms);
    let end = Instant::now() + Duration::from_millis(end_ms.saturating_sub(start_ms));
    let mut took = Vec::new();
    let mut n = 0usize;
    'cycles: while Instant::now() < end {
        let key = &keys[n % keys.len()];
        n += 1;
        let start = Instant::now();
        if mode == Mode::OneKeyQueued {
            let wait = end.saturating_duration_since(start);
            let served = match &handle {
                Handle::File(locker) => queued_cycle(locker, key, n as u64, wait),
                Handle::SqliteLocker(locker) => queued_cycle(locker, key, n as u64, wait),
                Handle::RedisLocker(locker) => queued_cycle(locker, key, n as u64, wait),
                _ => panic!("queued waits are for lease lockers"),
            };
            match served {
                Some(true) => {}
                Some(false) => continue 'cycles,
                None => break 'cycles,
            }
        } else {
            while !handle.acquire(key, n as u64) {
                assert!(mode == Mode::OneKey, "a key of this process's own is free");
                if Instant::now() >= end {
                    break 'cycles;
                }
            }
            assert!(handle.release(key), "{key} was held");
        }
        took.push(start.elapsed().as_nanos());
    }
    let mut out = std::io::stdout().lock();
    let start = if late { "late" } else { "on-time" };
    writeln!(out, "{start} {}", common::busy_retries()).expect("stdout");
    for ns in took {
        writeln!(out, "{ns}").expect("stdout");
    }
}

/// One wait in line for `key` and its release: `Some(true)` when served,
/// `Some(false)` when the store was busy, `None` when `wait` ran out.
fn queued_cycle<L: LeaseLocker<u64>>(
    locker: &L,
    key: &str,
    value: u64,
    wait: Duration,
) -> Option<bool> {
    match locker.try_lock_for(key, value, Some(common::TTL), wait) {
        Ok(Some(guard)) => {
            assert!(guard.unlock().expect("unlock"));
            Some(true)
        }
        Ok(None) => None,
        Err(hostlock::Error::Busy { .. }) => Some(false),
        Err(e) => panic!("try_lock_for: {e}"),
    }
}

/// What one run measured.
struct Run {
    busy_retries: u64,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    fairness: f64,
}

fn percentile(sorted: &[u128], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1;
    Duration::from_nanos(u64::try_from(sorted[at]).expect("a short cycle"))
}

fn run(kind: Kind, mode: Mode, processes: usize, secs: u64, redis_url: &str) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = kind.path_in(dir.path());
    match kind {
        Kind::RedisLocker => drop(Shared::redis(redis_url, &path)),
        _ => drop(Shared::open(kind, &path)),
    }
    let exe = std::env::current_exe().expect("the bench binary");
    // Time to start and open the store before the common start.
    let start = epoch_ms(SystemTime::now()) + 500 + 100 * processes as u64;
    let end = start + secs * 1000;
    let children: Vec<_> = (0..processes)
        .map(|i| {
            let spec = format!(
                "{} {} {start} {end} {i} {}",
                kind.name(),
                mode.name(),
                path.display()
            );
            Command::new(&exe)
                .env(CHILD, spec)
                .env(common::REDIS_URL, redis_url)
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a child")
        })
        .collect();
    let mut all = Vec::new();
    let mut counts = Vec::new();
    let mut busy_retries = 0;
    for child in children {
        let output = child.wait_with_output().expect("wait for a child");
        assert!(output.status.success(), "a child failed");
        let text = String::from_utf8(output.stdout).expect("UTF-8");
        let mut lines = text.lines();
        let first = lines.next().expect("a first line");
        let (start, busy) = first.split_once(' ').expect("start and busy retries");
        if start != "on-time" {
            eprintln!("warning: a child opened the store after the common start");
        }
        busy_retries += busy.parse::<u64>().expect("busy retries");
        let took: Vec<u128> = lines.map(|line| line.parse().expect("ns")).collect();
        counts.push(took.len());
        all.extend(took);
    }
    all.sort_unstable();
    let most = counts.iter().copied().max().unwrap_or(0);
    let fewest = counts.iter().copied().min().unwrap_or(0);
    Run {
        busy_retries,
        per_second: all.len() as f64 / secs as f64,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        fairness: if most == 0 {
            0.0
        } else {
            fewest as f64 / most as f64
        },
    }
}

/// The medians of a configuration's rounds.
struct Row {
    label: &'static str,
    mode: Mode,
    processes: usize,
    per_second: f64,
    p50: f64,
    p99: f64,
    fairness: f64,
    busy_retries: u64,
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    let secs = common::env_number("HOSTLOCK_BENCH_SECS", 5);
    let rounds = common::env_number("HOSTLOCK_BENCH_ROUNDS", 3);
    let redis = RedisServer::start();
    let mut configs = Vec::new();
    for mode in [Mode::OneKey, Mode::OwnKeys] {
        for processes in [2, 4] {
            for kind in Kind::FILES.into_iter().chain(Kind::SIBLINGS) {
                configs.push((kind, kind.name(), mode, processes));
            }
            if mode == Mode::OneKey {
                for (kind, queued) in [
                    (Kind::HostlockImmediate, "hostlock_immediate_queued"),
                    (Kind::SqliteLocker, "sqlite_locker_queued"),
                    (Kind::RedisLocker, "redis_locker_queued"),
                ] {
                    configs.push((kind, queued, Mode::OneKeyQueued, processes));
                }
            }
        }
    }
    if let Ok(only) = std::env::var("HOSTLOCK_BENCH_ONLY") {
        let wanted: Vec<&str> = only.split(',').map(str::trim).collect();
        configs.retain(|(_, label, _, _)| wanted.contains(label));
    }
    // Rounds go over every configuration in turn, so that the rows compared
    // below ran under the same conditions, round by round.
    let mut runs: Vec<Vec<Run>> = configs.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, &(kind, _, mode, processes)) in configs.iter().enumerate() {
            runs[i].push(run(kind, mode, processes, secs, redis.url()));
        }
    }
    let mut rows = Vec::new();
    for (&(_, label, mode, processes), runs) in configs.iter().zip(&runs) {
        let of = |f: fn(&Run) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
        let row = Row {
            label,
            mode,
            processes,
            per_second: of(|r| r.per_second),
            p50: of(|r| r.p50.as_secs_f64()),
            p99: of(|r| r.p99.as_secs_f64()),
            fairness: of(|r| r.fairness),
            busy_retries: runs.iter().map(|r| r.busy_retries).sum(),
        };
        eprintln!(
            "{label} {} x{processes}: {:.0} cycles/s, fairness {:.2}",
            mode.name(),
            row.per_second,
            row.fairness
        );
        rows.push(row);
    }
    paired_queued_ratios(&configs, &runs);

    println!();
    println!("{HEADER}");
    for row in &rows {
        let compared_mode = match row.mode {
            Mode::OneKeyQueued => Mode::OneKey,
            mode => mode,
        };
        let baseline = |base: Kind| {
            rows.iter()
                .find(|r| {
                    r.label == base.name()
                        && r.mode == compared_mode
                        && r.processes == row.processes
                })
                .map_or_else(String::new, |r| {
                    format!("{:.2}x", row.per_second / r.per_second)
                })
        };
        let keys = match row.mode {
            Mode::OwnKeys => "own keys",
            Mode::OneKey | Mode::OneKeyQueued => "one key",
        };
        println!(
            "| `{}` | {keys} | {} | {} | {} | {} | {} | {} | {:.2} |",
            row.label,
            row.processes,
            format_rate(row.per_second),
            baseline(Kind::SqliteFull),
            baseline(Kind::SqliteNormal),
            format_duration(Duration::from_secs_f64(row.p50)),
            format_duration(Duration::from_secs_f64(row.p99)),
            row.fairness,
        );
    }
    let busy: u64 = rows.iter().map(|r| r.busy_retries).sum();
    println!();
    if busy > 0 {
        println!("Calls retried after a busy timeout (all runs): {busy}.");
    }
    println!(
        "{secs} s per run, median of {rounds} runs. Load average at the end: {}.",
        common::load_average()
    );
}

/// Prints, for each store with queued waits and each process count, the
/// queued row's cycles over its retrying row's, round by round: the two ran
/// one after the other in each round.
fn paired_queued_ratios(configs: &[(Kind, &'static str, Mode, usize)], runs: &[Vec<Run>]) {
    for (i, &(kind, label, mode, processes)) in configs.iter().enumerate() {
        if mode != Mode::OneKeyQueued {
            continue;
        }
        let raw = configs.iter().position(|&(k, l, m, p)| {
            k == kind && l == kind.name() && m == Mode::OneKey && p == processes
        });
        let Some(raw) = raw else {
            continue;
        };
        let mut ratios: Vec<f64> = runs[i]
            .iter()
            .zip(&runs[raw])
            .map(|(queued, raw)| queued.per_second / raw.per_second)
            .collect();
        let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}x")).collect();
        eprintln!(
            "{label} against {} x{processes}, paired by round: median {:.2}x ({})",
            kind.name(),
            median(&mut ratios),
            listed.join(", ")
        );
    }
}

const HEADER: &str = "\
| Store | Keys | Processes | Cycles per second | vs SQLite FULL | vs SQLite NORMAL | p50 cycle | p99 cycle | Fairness |
|-------|------|-----------|-------------------|----------------|------------------|-----------|-----------|----------|";
