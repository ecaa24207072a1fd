//! Guards against one process starving the others of a busy key: a process
//! that takes turns on one key alone (waiting in line with `try_lock_for`,
//! releasing at once, over and over) and three that join it later all get
//! about the same number of turns. With SQLite's own busy handler the first
//! kept the key: the others, asleep in that handler, missed the microsecond
//! gaps between its writes and could not even join the queue.

mod common;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hostlock::LeaseLocker;
use hostlock_sqlite::SqliteLocker;

use common::{DB, Reaped, child, expect_line, role, setting};

/// How long each child takes turns.
const RUN: Duration = Duration::from_secs(2);

/// Set for a child: how many turns it takes alone before it says "started"
/// and begins to count.
const WARMUP: &str = "HOSTLOCK_SQLITE_WARMUP";

/// The child: opens the database, says so, waits for the word to start,
/// takes its warm-up turns, then takes turns for [`RUN`] and prints how
/// many it got.
#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    assert_eq!(role, "turns", "the only role of this binary");
    let locker: SqliteLocker<u32> =
        SqliteLocker::open(PathBuf::from(setting(DB))).expect("open the database");
    let warmup: u32 = setting(WARMUP).parse().unwrap();
    // The harness has begun a line ("test child_entry ... ").
    println!();
    println!("ready");
    let mut go = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut go)
        .expect("the word to start");
    let ttl = Some(Duration::from_secs(60));
    for n in 0..warmup {
        let wait = Duration::from_secs(10);
        let guard = locker.try_lock_for("busy", n, ttl, wait).unwrap();
        assert!(guard.expect("served").unlock().unwrap());
    }
    println!("started");
    let end = Instant::now() + RUN;
    let mut turns = 0u32;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Some(guard) = locker.try_lock_for("busy", turns, ttl, left).unwrap() else {
            break;
        };
        assert!(guard.unlock().unwrap(), "still ours when unlocked");
        turns += 1;
    }
    println!("turns {turns}");
}

#[test]
fn four_processes_taking_turns_on_one_key_get_even_shares() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("locks.db");
    drop(SqliteLocker::<u32>::open(&db).unwrap());
    let mut children: Vec<Reaped> = (0..4)
        .map(|i| {
            let mut cmd = child("turns", &db);
            cmd.stdin(Stdio::piped())
                .env(WARMUP, if i == 0 { "20" } else { "0" });
            Reaped::spawn(cmd)
        })
        .collect();
    for c in &mut children {
        expect_line(c.lines(), "ready");
    }
    let go = |c: &mut Reaped| {
        let mut stdin = c.0.stdin.take().expect("piped input");
        stdin.write_all(b"go\n").expect("start a child");
    };
    // The first takes turns alone, writing without pause; then the others
    // come.
    go(&mut children[0]);
    expect_line(children[0].lines(), "started");
    for c in &mut children[1..] {
        go(c);
    }
    let mut turns = Vec::new();
    for mut c in children {
        let n: u32 = expect_line(c.lines(), "turns ").parse().unwrap();
        turns.push(n);
        c.finish(Duration::from_secs(30));
    }
    let most = *turns.iter().max().unwrap();
    let fewest = *turns.iter().min().unwrap();
    assert!(most > 0, "no process got the key: {turns:?}");
    // Served in arrival order, each gets about a quarter. A starved process
    // lags by hundreds of turns; on a machine so loaded that each gets only
    // a few, their ratio says little, so a lag of a few turns passes.
    let fairness = f64::from(fewest) / f64::from(most);
    assert!(
        fairness >= 0.5 || most - fewest <= 20,
        "turns per process {turns:?}: the fewest over the most is {fairness:.2}"
    );
}
