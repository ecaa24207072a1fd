//! Torture: worker processes run random operations on a few keys of one
//! file while a supervisor kills them with SIGKILL at random moments and
//! checks the file after each kill. Every operation is logged with its
//! start, end and result; a checker then proves from the logs that no two
//! holds of a key overlapped, that no acknowledged lock went missing, and
//! that fences grew. The supervisor also stops workers (SIGSTOP) inside a
//! write for longer than the others' busy bound: those get `Busy` within the
//! bound, logged as calls that changed nothing, and all go on after SIGCONT.
//! Every other worker opens the file with `Durability::Relaxed`.
//! A broken worker (one that steals keys) must make the
//! checker report violations, so the checker is known to see them.
//!
//! `torture_short` runs in CI. The long configuration runs with
//! `HOSTLOCK_TORTURE_WORKERS=8 HOSTLOCK_TORTURE_SECS=600
//! cargo test --release --test torture -- --ignored --nocapture`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hostlock::{
    CleanableLocker, Durability, FileLocker, LeaseLocker, LockValue, Locker, RenewableLocker,
};

use common::LOG;
const SEED: &str = "HOSTLOCK_TEST_SEED";
const BROKEN: &str = "HOSTLOCK_TEST_BROKEN";
const BUSY_MS: &str = "HOSTLOCK_TEST_BUSY_MS";
const RELAXED: &str = "HOSTLOCK_TEST_RELAXED";
/// Set for a worker whose storage fails at random (ENOSPC, EIO).
const FAULTY: &str = "HOSTLOCK_TEST_FAULTY";
/// The longest a worker waits in line, in milliseconds.
const WAIT_MS: &str = "HOSTLOCK_TEST_WAIT_MS";
/// How long workers wait for a writer before `Busy` when some are stopped.
const STOPPED_BOUND: Duration = Duration::from_millis(400);
/// How long a paused worker stays stopped: longer than a waiter's turn may
/// wait to be claimed (1 s), so the others must be served past it.
const PAUSE: Duration = Duration::from_millis(2500);
const KEYS: [&str; 3] = ["a", "b", "c"];

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A small deterministic generator (xorshift), so no dependency is needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The body of every child process; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    assert_eq!(role, "worker");
    let busy_ms = std::env::var(BUSY_MS).map_or(30_000, |ms| ms.parse().unwrap());
    let durability = if std::env::var(RELAXED).is_ok() {
        Durability::Relaxed
    } else {
        Durability::Immediate
    };
    let faults = hostlock::Faults::new();
    let faulty = std::env::var(FAULTY).is_ok();
    let longest_wait = std::env::var(WAIT_MS).map_or(50, |ms| ms.parse().unwrap());
    // A worker stopped inside a write keeps the file busy past the bound for
    // an opener too: a replacement tries again, as the others' calls do.
    let locker: FileLocker<u32> = loop {
        let opened = FileLocker::builder(common::setting(common::FILE))
            .background_cleanup(false)
            .busy_timeout(Duration::from_millis(busy_ms))
            .durability(durability)
            .faults(faults.clone())
            .open();
        match opened {
            Ok(locker) => break locker,
            Err(hostlock::Error::Busy { .. }) => {}
            Err(e) => panic!("open: {e}"),
        }
    };
    let mut log = common::shared_log();
    let broken = std::env::var(BROKEN).is_ok();
    let mut rng = Rng(common::setting(SEED).parse::<u64>().unwrap() | 1);
    let pid = std::process::id();
    let parent = std::os::unix::process::parent_id();
    let mut guards = Vec::new();
    let mut tokens: Vec<(String, String)> = Vec::new(); // (key, token) of trait acquires
    let mut n = 0u64;
    while !common::orphaned(parent) {
        n += 1;
        let key = KEYS[rng.below(KEYS.len() as u64) as usize];
        if faulty && rng.below(4) == 0 {
            // The next operation's storage fails at one of its first writes
            // or syncs: a full disk or an I/O error.
            let fault = if rng.below(2) == 0 {
                hostlock::Fault::DiskFull
            } else {
                hostlock::Fault::Io
            };
            if rng.below(2) == 0 {
                faults.fail_writes_after(rng.below(4), fault);
            } else {
                faults.fail_syncs_after(rng.below(3), fault);
            }
        }
        let start = now_ns();
        // What a failed call was, to log it as one that may have ended a hold
        // and gave none: (operation, token).
        let mut attempt = ("fail", key.to_owned(), "-".to_owned());
        // One line per finished operation: op key start end result [details].
        let line = (|| -> hostlock::Result<String> {
            Ok(match rng.below(100) {
                0..30 => {
                    let token = format!("{pid}-{n}");
                    attempt = ("acq", key.to_owned(), token.clone());
                    let ttl = Duration::from_millis(100 + rng.below(900));
                    let lock = LockValue::new(pid).with_ttl(ttl).with_token(&token);
                    let expires = lock.expires_at.unwrap().duration_since(UNIX_EPOCH).unwrap();
                    if broken {
                        // The deliberate bug: take the key whoever holds it.
                        locker.force_release(key)?;
                    }
                    let ok = locker.acquire(key, lock)?;
                    if ok {
                        tokens.push((key.to_owned(), token.clone()));
                    }
                    let end = now_ns();
                    format!(
                        "acq {key} {start} {end} {ok} {token} {}",
                        expires.as_nanos()
                    )
                }
                30..40 => {
                    // A wait in line, which a stopped worker may hold up.
                    attempt = ("wait", key.to_owned(), "-".to_owned());
                    let wait = Duration::from_millis(rng.below(longest_wait));
                    match locker.try_lock_for(key, pid, None, wait)? {
                        Some(guard) => {
                            let line = format!(
                                "wait {key} {start} {} true {} {}",
                                now_ns(),
                                guard.token(),
                                guard.fence()
                            );
                            guards.push(guard);
                            line
                        }
                        None => format!("wait {key} {start} {} false - 0", now_ns()),
                    }
                }
                40..45 => match locker.try_lock(key, pid, None)? {
                    Some(guard) => {
                        let line = format!(
                            "lock {key} {start} {} true {} {}",
                            now_ns(),
                            guard.token(),
                            guard.fence()
                        );
                        guards.push(guard);
                        line
                    }
                    None => format!("lock {key} {start} {} false - 0", now_ns()),
                },
                45..60 if !guards.is_empty() => {
                    let guard = guards.swap_remove(rng.below(guards.len() as u64) as usize);
                    let (gkey, token) = (guard.key().to_owned(), guard.token().to_owned());
                    attempt = ("rio", gkey.clone(), token.clone());
                    let start = now_ns();
                    let ok = guard.unlock()?;
                    format!("rio {gkey} {start} {} {ok} {token}", now_ns())
                }
                45..60 if !tokens.is_empty() => {
                    let (tkey, token) = tokens.swap_remove(rng.below(tokens.len() as u64) as usize);
                    attempt = ("rio", tkey.clone(), token.clone());
                    let ok = locker.release_if_owner(&tkey, &token)?;
                    format!("rio {tkey} {start} {} {ok} {token}", now_ns())
                }
                60..70 if !tokens.is_empty() => {
                    let (tkey, token) = tokens[rng.below(tokens.len() as u64) as usize].clone();
                    attempt = ("touch", tkey.clone(), token.clone());
                    let at = SystemTime::now() + Duration::from_millis(100 + rng.below(900));
                    let ok = locker.touch(&tkey, &token, at)?;
                    let at = at.duration_since(UNIX_EPOCH).unwrap().as_nanos();
                    format!("touch {tkey} {start} {} {ok} {token} {at}", now_ns())
                }
                70..73 => {
                    attempt = ("force", key.to_owned(), "-".to_owned());
                    locker.force_release(key)?;
                    format!("force {key} {start} {}", now_ns())
                }
                73..76 => {
                    attempt = ("rel", key.to_owned(), "-".to_owned());
                    let ok = locker.release(key)?;
                    format!("rel {key} {start} {} {ok}", now_ns())
                }
                76..80 => {
                    let removed = locker.cleanup()?;
                    format!("clean - {start} {} {removed}", now_ns())
                }
                _ => {
                    let found = locker.get(key)?;
                    let token = found
                        .and_then(|l| l.token)
                        .unwrap_or_else(|| "-".to_owned());
                    format!("get {key} {start} {} {token}", now_ns())
                }
            })
        })();
        faults.heal();
        // A call that found the file busy past the bound changed nothing.
        let line = match line {
            Ok(line) => line,
            Err(hostlock::Error::Busy { waited, .. }) => {
                format!("busy {key} {start} {} {}", now_ns(), waited.as_nanos())
            }
            // A call whose storage failed may have landed anyway (when the
            // last sync failed): logged as a call that may have ended a hold
            // (a release, a force release) and gave none.
            Err(
                hostlock::Error::NoSpace { .. }
                | hostlock::Error::Io { .. }
                | hostlock::Error::Storage { .. },
            ) if faulty => {
                let (op, key, token) = attempt;
                // A release that failed may not have landed: it is tried
                // again later, as a holder would.
                if op == "rio" && !tokens.iter().any(|(_, t)| *t == token) {
                    tokens.push((key.clone(), token.clone()));
                }
                format!("{op} {key} {start} {} false {token} 0", now_ns())
            }
            Err(e) => panic!("worker {pid}: {e}"),
        };
        log.write_all(format!("{pid} {line}\n").as_bytes()).unwrap();
    }
}

/// One logged operation.
#[derive(Debug, Clone)]
struct Op {
    pid: u32,
    op: String,
    key: String,
    start: u128,
    end: u128,
    rest: Vec<String>,
}

fn read_logs(dir: &Path) -> Vec<Op> {
    let mut ops = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            // A worker killed mid-write leaves a partial last line.
            let Some((head, rest)) = parts.split_at_checked(5) else {
                continue;
            };
            let (Ok(pid), Ok(start), Ok(end)) = (head[0].parse(), head[3].parse(), head[4].parse())
            else {
                continue;
            };
            ops.push(Op {
                pid,
                op: head[1].to_owned(),
                key: head[2].to_owned(),
                start,
                end,
                rest: rest.iter().map(|s| (*s).to_owned()).collect(),
            });
        }
    }
    ops.sort_by_key(|op| op.start);
    ops
}

/// A lock some worker certainly held: from the end of its acquire until the
/// earliest moment it may have ended.
#[derive(Debug, Clone)]
struct Hold {
    token: String,
    pid: u32,
    call_start: u128,
    from: u128,
    until: u128,
    fence: Option<u64>,
}

/// What the checker found.
#[derive(Debug, Default)]
struct Verdict {
    operations: usize,
    holds: usize,
    violations: Vec<String>,
}

fn check(ops: &[Op], killed: &HashMap<u32, u128>) -> Verdict {
    // A killed worker may have been inside a call whose result it never
    // logged: after its last logged call, it may have released or force
    // released any key until it died. Stand-in force releases say so.
    let mut last_end: HashMap<u32, u128> = HashMap::new();
    for op in ops {
        let end = last_end.entry(op.pid).or_default();
        *end = (*end).max(op.end);
    }
    let unknown: Vec<Op> = killed
        .iter()
        .flat_map(|(&pid, &died)| {
            let from = last_end.get(&pid).copied().unwrap_or(0);
            KEYS.iter().map(move |key| Op {
                pid,
                op: "force".to_owned(),
                key: (*key).to_owned(),
                start: from,
                end: died,
                rest: Vec::new(),
            })
        })
        .collect();
    // The operations of each key, in order of start.
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops.iter().chain(&unknown) {
        by_key.entry(&op.key).or_default().push(op);
    }
    for list in by_key.values_mut() {
        list.sort_by_key(|op| op.start);
    }
    let mut verdict = Verdict {
        operations: ops.len(),
        ..Verdict::default()
    };
    for (key, key_ops) in &by_key {
        let mut holds = holds_of(key_ops, killed);
        verdict.holds += holds.len();
        holds.sort_by_key(|h| h.from);
        // (a) No two holds certainly at once: in order of start, a hold
        // conflicts with the later ones that start before it certainly ends.
        for (i, a) in holds.iter().enumerate() {
            for b in holds[i + 1..].iter().take_while(|b| b.from < a.until) {
                if b.until > b.from {
                    verdict.violations.push(format!(
                        "{key}: {} (pid {}) and {} (pid {}) held it together",
                        a.token, a.pid, b.token, b.pid
                    ));
                }
            }
        }
        // Running maxima over the holds in order of start: the highest fence
        // acknowledged, and the latest certain end.
        let mut max_fence = Vec::with_capacity(holds.len());
        let mut max_until = Vec::with_capacity(holds.len());
        for hold in &holds {
            let fence = hold
                .fence
                .unwrap_or(0)
                .max(max_fence.last().copied().unwrap_or(0));
            max_fence.push(fence);
            max_until.push(hold.until.max(max_until.last().copied().unwrap_or(0)));
        }
        let before = |t: u128| holds.partition_point(|h| h.from < t);
        // (c) Fences grow: a guard acquired after another's acknowledgement
        // has a higher fence.
        for hold in holds.iter().filter(|h| h.fence.is_some()) {
            let n = before(hold.call_start);
            if n > 0 && Some(max_fence[n - 1]) >= hold.fence {
                verdict.violations.push(format!(
                    "{key}: fence {:?} after {}",
                    hold.fence,
                    max_fence[n - 1]
                ));
            }
        }
        // (b) No acknowledged lock goes missing: a read during a certain
        // hold sees it.
        for op in key_ops
            .iter()
            .filter(|op| op.op == "get" && op.rest[0] == "-")
        {
            let n = before(op.start + 1);
            if n > 0 && max_until[n - 1] >= op.end {
                verdict
                    .violations
                    .push(format!("{key}: read as free by pid {} while held", op.pid));
            }
        }
    }
    verdict
}

/// The holds of one key, from its operations in order of start.
fn holds_of(ops: &[&Op], killed: &HashMap<u32, u128>) -> Vec<Hold> {
    // The longest call, so that the calls overlapping an acquire are found
    // among those that started at most this long before it.
    let longest = ops
        .iter()
        .map(|o| o.end.saturating_sub(o.start))
        .max()
        .unwrap_or(0);
    let mut holds = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let ok = op.rest.first().is_some_and(|r| r == "true");
        let (expiry, fence) = match op.op.as_str() {
            "acq" if ok => (op.rest[2].parse().unwrap(), None),
            // Bound to its session: it ends with its worker.
            "lock" | "wait" if ok => (
                killed.get(&op.pid).copied().unwrap_or(u128::MAX),
                Some(op.rest[2].parse().unwrap()),
            ),
            _ => continue,
        };
        let token = op.rest[1].clone();
        // A call takes effect at one moment between its start and end, so
        // the hold is certain only from the acquire's end until the earliest
        // start of anything that may have ended it. Calls that started
        // before this one and overlap it may have come after it, too.
        let mut expiry = expiry;
        let mut released = u128::MAX;
        let first = ops[..i].partition_point(|o| o.start + longest < op.start);
        for other in &ops[first..] {
            if other.start >= released.min(expiry) {
                break;
            }
            if other.end <= op.start || std::ptr::eq(*other, *op) {
                continue;
            }
            let own = other.rest.get(1).is_some_and(|t| *t == token);
            match other.op.as_str() {
                "rio" if own => released = released.min(other.start),
                "force" | "rel" => released = released.min(other.start),
                // A renewal that succeeded replaces the expiry, for certain
                // only once it returned: it decides when its transaction
                // begins, and readers see the new expiry from its commit.
                // One that returned after the old expiry (its worker was
                // stopped inside it) leaves a gap where the lock reads as
                // expired; no writer can act in it, since the renewal holds
                // the write lock throughout.
                "touch"
                    if own && other.rest[0] == "true" && fence.is_none() && other.end <= expiry =>
                {
                    expiry = other.rest[2].parse().unwrap();
                }
                _ => {}
            }
        }
        holds.push(Hold {
            token,
            pid: op.pid,
            call_start: op.start,
            from: op.end,
            until: released.min(expiry),
            fence,
        });
    }
    holds
}

struct Run {
    verdict: Verdict,
    kills: usize,
    integrity_failures: usize,
    stops: Stops,
    /// `try_lock_for` calls: (served, timed out).
    waits: (usize, usize),
    /// Calls whose injected storage failure ended them with an error.
    failed_calls: usize,
}

/// What stopping workers (SIGSTOP) showed.
#[derive(Debug, Default)]
struct Stops {
    /// Workers stopped inside a write transaction, each for a while.
    caught: usize,
    /// Stops that landed in redb's header lock, where even the probe waited.
    header_stalls: usize,
    /// Workers stopped wherever they were, for `PAUSE`.
    paused: usize,
    /// Calls of the other workers that gave up with `Busy`.
    busy: usize,
    /// The longest wait a `Busy` reported, of a worker that was not stopped
    /// itself during the call.
    longest_busy: Duration,
}

/// The settings of one run.
#[derive(Clone, Copy)]
struct Config {
    workers: usize,
    duration: Duration,
    kill_every: Option<Duration>,
    /// Stop a worker inside a write this often, and keep it stopped for
    /// longer than the workers' busy bound.
    stop_every: Option<Duration>,
    /// Stop a worker wherever it is (in a queued wait, say) this often, for
    /// longer than a waiter's turn may wait to be claimed.
    pause_every: Option<Duration>,
    /// Every third worker's storage fails at random.
    faulty: bool,
    broken: bool,
}

/// Stops `worker` (SIGSTOP) inside a write transaction and keeps it stopped
/// for `hold`, so the others run into the bound. A probe write with a short
/// bound shows when the worker was caught inside one; until then the worker
/// is let go on at once and stopped again a moment later. Returns whether it
/// was caught (with the time it was stopped, from and to), and how many stops
/// landed in redb's header lock (where the probe itself waits, until a timer
/// lets the worker go on).
///
/// The probe may also find the file busy with another worker's write; the
/// stopped worker then waits with the others.
fn stop_inside_a_write(
    worker: u32,
    probe: &FileLocker<u32>,
    hold: Duration,
) -> (Option<(u128, u128)>, usize) {
    let mut header_stalls = 0;
    for _ in 0..100 {
        let stopped = now_ns();
        let (caught, stalled) = common::while_stopped(worker, Duration::from_secs(2), || {
            let started = Instant::now();
            let probed = probe.force_release("probe");
            let stalled = started.elapsed() >= Duration::from_secs(2);
            let caught = matches!(probed, Err(hostlock::Error::Busy { .. })) && !stalled;
            if caught {
                thread::sleep(hold.saturating_sub(started.elapsed()));
            }
            (caught, stalled)
        });
        header_stalls += usize::from(stalled);
        if caught {
            return (Some((stopped, now_ns())), header_stalls);
        }
        thread::sleep(Duration::from_millis(3));
    }
    (None, header_stalls)
}

/// The runs of this binary take turns: each wants the machine's cores, and
/// its figures (kills, holds) assume it has them.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn torture(config: Config) -> Run {
    let _turn = one_at_a_time();
    let Config {
        workers,
        duration,
        kill_every,
        stop_every,
        pause_every,
        faulty,
        broken,
    } = config;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("locks.redb");
    let supervisor: FileLocker<u32> = FileLocker::builder(&file)
        .background_cleanup(false)
        .busy_timeout(Duration::from_secs(30))
        .open()
        .unwrap();
    let probe: FileLocker<u32> = FileLocker::builder(&file)
        .background_cleanup(false)
        .busy_timeout(STOPPED_BOUND / 4)
        .open()
        .unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ now_ns() as u64;
    let mut rng = Rng(seed | 1);
    let mut spawn = |n: usize| -> (common::Reaped, PathBuf) {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let log = dir.path().join(format!("worker-{n}.log"));
        std::fs::write(&log, "").unwrap();
        let mut cmd = common::child("worker", &file);
        cmd.env(LOG, &log)
            .env(SEED, seed.to_string())
            .stdout(Stdio::null());
        if broken {
            cmd.env(BROKEN, "1");
        }
        // Half the workers commit without syncing: SIGKILL must not tell.
        if n.is_multiple_of(2) {
            cmd.env(RELAXED, "1");
        }
        if faulty && n % 3 == 1 {
            cmd.env(FAULTY, "1");
        }
        // Waits in line long enough to be held up by a paused worker.
        if pause_every.is_some() {
            cmd.env(WAIT_MS, "1500");
        }
        if stop_every.is_some() || pause_every.is_some() {
            cmd.env(BUSY_MS, STOPPED_BOUND.as_millis().to_string());
        }
        (common::Reaped(cmd.spawn().unwrap()), log)
    };
    let mut running: Vec<common::Reaped> = (0..workers).map(|n| spawn(n).0).collect();
    let mut spawned = workers;
    let mut killed = HashMap::new();
    let mut integrity_failures = 0;
    let started = Instant::now();
    let mut next_kill = kill_every.map(|every| started + every);
    let mut next_stop = stop_every.map(|every| started + every / 2);
    let mut next_pause = pause_every.map(|every| started + every / 3);
    let mut stops = Stops::default();
    let mut stopped: Vec<(u32, u128, u128)> = Vec::new();
    while started.elapsed() < duration {
        thread::sleep(Duration::from_millis(20));
        for worker in &mut running {
            if let Some(status) = worker.0.try_wait().unwrap() {
                panic!("a worker failed: {status}");
            }
        }
        if let (Some(at), Some(every)) = (next_kill, kill_every)
            && Instant::now() >= at
        {
            let victim = rng.below(running.len() as u64) as usize;
            let mut worker = running.swap_remove(victim);
            killed.insert(worker.0.id(), now_ns());
            worker.0.kill().unwrap();
            worker.0.wait().unwrap();
            let report = supervisor.check().unwrap();
            if !report.problems.is_empty() || report.repaired {
                integrity_failures += 1;
            }
            running.push(spawn(spawned).0);
            spawned += 1;
            let jitter = Duration::from_millis(rng.below(every.as_millis() as u64 + 1));
            next_kill = Some(Instant::now() + every / 2 + jitter);
        }
        if let (Some(at), Some(every)) = (next_stop, stop_every)
            && Instant::now() >= at
        {
            let victim = running[rng.below(running.len() as u64) as usize].0.id();
            let (caught, stalls) = stop_inside_a_write(victim, &probe, STOPPED_BOUND * 5 / 2);
            if let Some((from, to)) = caught {
                stops.caught += 1;
                stopped.push((victim, from, to));
            }
            stops.header_stalls += stalls;
            let jitter = Duration::from_millis(rng.below(every.as_millis() as u64 + 1));
            next_stop = Some(Instant::now() + every / 2 + jitter);
        }
        if let (Some(at), Some(every)) = (next_pause, pause_every)
            && Instant::now() >= at
        {
            let victim = running[rng.below(running.len() as u64) as usize].0.id();
            let from = now_ns();
            common::while_stopped(victim, Duration::from_secs(10), || {
                thread::sleep(PAUSE);
            });
            stops.paused += 1;
            stopped.push((victim, from, now_ns()));
            let jitter = Duration::from_millis(rng.below(every.as_millis() as u64 + 1));
            next_pause = Some(Instant::now() + every / 2 + jitter);
        }
    }
    // The workers still running end here too: their bound locks with them.
    let kills = killed.len();
    for worker in &running {
        killed.insert(worker.0.id(), now_ns());
    }
    drop(running);
    if let Ok(keep) = std::env::var("HOSTLOCK_TORTURE_KEEP") {
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                std::fs::copy(&path, Path::new(&keep).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    let ops = read_logs(dir.path());
    for op in ops.iter().filter(|op| op.op == "busy") {
        stops.busy += 1;
        let itself_stopped = stopped
            .iter()
            .any(|&(pid, from, to)| pid == op.pid && from < op.end && to > op.start);
        if !itself_stopped {
            let waited = Duration::from_nanos(op.rest[0].parse().unwrap());
            stops.longest_busy = stops.longest_busy.max(waited);
        }
    }
    let verdict = check(&ops, &killed);
    let waited = |ok: &str| {
        ops.iter()
            .filter(|op| op.op == "wait" && op.rest[0] == ok)
            .count()
    };
    let waits = (waited("true"), waited("false"));
    let failed_calls = ops
        .iter()
        .filter(|op| op.op != "wait" && op.op != "lock")
        .filter(|op| op.rest.len() == 3 && op.rest[0] == "false" && op.rest[2] == "0")
        .count();
    if !verdict.violations.is_empty() && !broken {
        // Keep the logs of a failed run for whoever looks into it.
        let kept = dir.keep();
        eprintln!("the workers' logs are kept in {}", kept.display());
    }
    Run {
        verdict,
        kills,
        integrity_failures,
        stops,
        waits,
        failed_calls,
    }
}

fn report(name: &str, run: &Run) {
    eprintln!(
        "{name}: {} operations, {} holds, {} kills, {} violations, {} integrity failures",
        run.verdict.operations,
        run.verdict.holds,
        run.kills,
        run.verdict.violations.len(),
        run.integrity_failures
    );
    let stops = &run.stops;
    if stops.caught + stops.header_stalls > 0 {
        eprintln!(
            "{name}: {} workers stopped inside a write, {} stops in redb's header lock, \
             {} calls of the others busy (longest wait {:?}, bound {STOPPED_BOUND:?})",
            stops.caught, stops.header_stalls, stops.busy, stops.longest_busy
        );
    }
    if stops.paused > 0 {
        eprintln!(
            "{name}: {} workers paused anywhere for {PAUSE:?}",
            stops.paused
        );
    }
    eprintln!(
        "{name}: waits in line: {} served, {} timed out; {} calls failed in storage",
        run.waits.0, run.waits.1, run.failed_calls
    );
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for violation in &run.verdict.violations {
        let kind = ["held it together", "fence", "read as free"]
            .into_iter()
            .find(|k| violation.contains(k))
            .unwrap_or("other");
        *kinds.entry(kind).or_default() += 1;
    }
    if !kinds.is_empty() {
        eprintln!("{name}: violations by kind: {kinds:?}");
    }
}

#[test]
fn torture_short() {
    let run = torture(Config {
        workers: 4,
        duration: Duration::from_secs(15),
        kill_every: Some(Duration::from_millis(1500)),
        stop_every: Some(Duration::from_millis(2500)),
        pause_every: None,
        faulty: false,
        broken: false,
    });
    report("short", &run);
    assert!(run.kills >= 5, "{} kills", run.kills);
    // Stopped writers make the others give up within the bound, and all go
    // on once they run again (a worker that failed ends the run).
    assert!(run.stops.caught >= 2, "{:?}", run.stops);
    assert!(run.stops.busy > 0, "{:?}", run.stops);
    assert!(
        run.stops.longest_busy < STOPPED_BOUND * 2,
        "{:?}",
        run.stops
    );
    assert!(run.verdict.holds > 100, "{} holds", run.verdict.holds);
    assert_eq!(run.integrity_failures, 0);
    assert!(
        run.verdict.violations.is_empty(),
        "{:#?}",
        run.verdict.violations
    );
}

#[test]
fn the_checker_catches_a_broken_locker() {
    let run = torture(Config {
        workers: 3,
        duration: Duration::from_secs(3),
        kill_every: None,
        stop_every: None,
        pause_every: None,
        faulty: false,
        broken: true,
    });
    report("broken", &run);
    assert!(
        !run.verdict.violations.is_empty(),
        "stealing keys went unnoticed in {} holds",
        run.verdict.holds
    );
}

/// Workers whose storage fails (ENOSPC, EIO) at random writes and syncs
/// contend for the same keys as healthy ones: a failed call gives no hold,
/// and its clean-up never frees another's.
#[test]
fn torture_faults() {
    let run = torture(Config {
        workers: 6,
        duration: Duration::from_secs(12),
        kill_every: Some(Duration::from_millis(2000)),
        stop_every: None,
        pause_every: None,
        faulty: true,
        broken: false,
    });
    report("faults", &run);
    assert!(run.failed_calls > 20, "{} calls failed", run.failed_calls);
    assert_eq!(run.integrity_failures, 0);
    assert!(
        run.verdict.violations.is_empty(),
        "{:#?}",
        run.verdict.violations
    );
}

/// Workers stopped wherever they are (queued in a wait, holding a key,
/// inside a write) for longer than a waiter's turn may go unclaimed: the
/// others are still served, and no two hold a key together.
#[test]
fn torture_paused_waiters() {
    let run = torture(Config {
        workers: 5,
        duration: Duration::from_secs(12),
        kill_every: None,
        stop_every: None,
        pause_every: Some(Duration::from_millis(1500)),
        faulty: false,
        broken: false,
    });
    report("paused", &run);
    assert!(run.stops.paused >= 3, "{:?}", run.stops);
    assert!(run.waits.0 > 20, "waits served: {:?}", run.waits);
    assert!(
        run.verdict.violations.is_empty(),
        "{:#?}",
        run.verdict.violations
    );
}

#[test]
#[ignore = "long: minutes; run on demand (see the file's doc comment)"]
fn torture_long() {
    let setting = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let workers = setting("HOSTLOCK_TORTURE_WORKERS", 8) as usize;
    let secs = setting("HOSTLOCK_TORTURE_SECS", 600);
    // HOSTLOCK_TORTURE_MODE: all (the default), kills, faults or paused.
    let mode = std::env::var("HOSTLOCK_TORTURE_MODE").unwrap_or_else(|_| "all".to_owned());
    let on = |m: &str| mode == "all" || mode == m;
    let run = torture(Config {
        workers,
        duration: Duration::from_secs(secs),
        kill_every: (on("kills") || on("faults")).then(|| Duration::from_secs(3)),
        stop_every: on("kills").then(|| Duration::from_secs(5)),
        pause_every: on("paused").then(|| Duration::from_secs(4)),
        faulty: on("faults"),
        broken: false,
    });
    report(&format!("long ({mode})"), &run);
    assert_eq!(run.integrity_failures, 0);
    assert!(
        run.verdict.violations.is_empty(),
        "{:#?}",
        run.verdict.violations
    );
}
