//! Torture of `hostlock run`: loops start `hostlock run KEY -- CMD` over and
//! over on two keys, where CMD logs when it enters and leaves; a supervisor
//! sends SIGTERM, SIGINT, SIGHUP or SIGKILL to running `hostlock` processes,
//! and some runs go through `timeout`. A checker then proves from the log
//! that no two commands of one key ever ran at once.
//!
//! `torture_cli_short` runs with `cargo test`; the long one with
//! `HOSTLOCK_TORTURE_SECS=300 cargo test -p hostlock-cli --release --test
//! torture -- --ignored --nocapture`.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const KEYS: [&str; 2] = ["a", "b"];

/// The command each run holds its key for (a bash script): logs `enter`,
/// works a little, logs `leave`, also when a signal ends it (after a moment,
/// so that a second copy would overlap it if the lock were gone). The time
/// is bash's own clock (`EPOCHREALTIME`, microseconds), not a `date`
/// process: `timeout` signals the whole process group, and a `date` killed
/// in the middle of a stamp would leave a line without a time.
fn script(log: &Path, key: &str) -> String {
    let log = log.display();
    format!(
        "stamp() {{ echo \"$1 {key} $$ ${{EPOCHREALTIME/./}}\" >> {log}; }}; \
         trap 'sleep 0.05; stamp leave; exit 9' TERM INT HUP; \
         stamp enter; sleep 0.0$(( $$ % 7 + 1 )); stamp leave"
    )
}

/// Counters of what the run did to the `hostlock` processes.
#[derive(Default)]
struct Done {
    runs: AtomicUsize,
    signalled: AtomicUsize,
    killed: AtomicUsize,
    timed: AtomicUsize,
}

fn torture(duration: Duration, loops: usize) -> (Vec<String>, HashMap<&'static str, usize>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("locks.redb");
    let log = dir.path().join("commands.log");
    std::fs::write(&log, "").unwrap();
    let running: Arc<Mutex<Vec<u32>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(Done::default());
    let hostlock = env!("CARGO_BIN_EXE_hostlock");
    let workers: Vec<_> = (0..loops)
        .map(|n| {
            let (file, log) = (file.clone(), log.clone());
            let (running, stop, done) = (running.clone(), stop.clone(), done.clone());
            thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let key = KEYS[(n + i) % KEYS.len()];
                    let mut command = if i.is_multiple_of(5) {
                        // Under timeout(1), which signals hostlock alone.
                        done.timed.fetch_add(1, Ordering::SeqCst);
                        let mut c = Command::new("timeout");
                        c.args(["-s", "TERM", "0.03", hostlock]);
                        c
                    } else {
                        Command::new(hostlock)
                    };
                    command
                        .arg("--file")
                        .arg(&file)
                        .args(["run", key, "--wait", "10s", "--", "bash", "-c"])
                        .arg(script(&log, key))
                        .stdout(Stdio::null())
                        .stderr(Stdio::null());
                    let mut child: Child = command.spawn().unwrap();
                    running.lock().unwrap().push(child.id());
                    let _ = child.wait();
                    running.lock().unwrap().retain(|&p| p != child.id());
                    done.runs.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut turn = 0u64;
    while started.elapsed() < duration {
        thread::sleep(Duration::from_millis(37));
        turn += 1;
        let victim = {
            let running = running.lock().unwrap();
            (!running.is_empty()).then(|| running[(turn as usize * 7) % running.len()])
        };
        let Some(pid) = victim else { continue };
        let signal = ["-TERM", "-INT", "-HUP", "-KILL"][(turn % 4) as usize];
        let sent = Command::new("kill")
            .args([signal, &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if sent {
            let counter = if signal == "-KILL" {
                &done.killed
            } else {
                &done.signalled
            };
            counter.fetch_add(1, Ordering::SeqCst);
        }
    }
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.join().unwrap();
    }
    // Commands of killed runs go on to their end, holding their key.
    thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&log).unwrap();
    let violations = check(&text);
    if !violations.is_empty() {
        // Keep the log of a failed run for whoever looks into it.
        let kept = dir.keep();
        eprintln!("the commands' log is kept in {}", kept.display());
    }
    let mut figures = HashMap::new();
    figures.insert("runs", done.runs.load(Ordering::SeqCst));
    figures.insert(
        "commands",
        text.lines().filter(|l| l.starts_with("enter")).count(),
    );
    figures.insert("signalled", done.signalled.load(Ordering::SeqCst));
    figures.insert("killed", done.killed.load(Ordering::SeqCst));
    figures.insert("under timeout", done.timed.load(Ordering::SeqCst));
    (violations, figures)
}

/// Every pair of commands of one key that ran at once, and every line that
/// cannot be read. A process id may come back in a long run: a command's
/// span is from its `enter` to its last `leave` before the next `enter` of
/// the same process id.
fn check(log: &str) -> Vec<String> {
    // (key, pid) -> (enter, leave)
    let mut spans: HashMap<(String, String), (u128, Option<u128>)> = HashMap::new();
    let mut problems = Vec::new();
    let mut done = Vec::new();
    for line in log.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let [what, key, pid, at] = parts[..] else {
            problems.push(format!("unreadable line {line:?}"));
            continue;
        };
        let Ok(at) = at.parse::<u128>() else {
            problems.push(format!("line without a time {line:?}"));
            continue;
        };
        if what == "enter" {
            // A command that entered under this pid before has left.
            if let Some(old) = spans.remove(&(key.to_owned(), pid.to_owned())) {
                done.push(((key.to_owned(), pid.to_owned()), old));
            }
        }
        let span = spans
            .entry((key.to_owned(), pid.to_owned()))
            .or_insert((at, None));
        match what {
            "enter" => span.0 = at,
            // The command runs until its last leave (a signal that comes
            // during the final stamp makes the trap stamp again).
            "leave" => span.1 = Some(span.1.map_or(at, |t: u128| t.max(at))),
            _ => {}
        }
    }
    let mut violations = problems;
    let all: Vec<_> = done.into_iter().chain(spans).collect();
    for key in KEYS {
        let mut of_key: Vec<(u128, u128, &str)> = all
            .iter()
            .filter(|((k, _), _)| k == key)
            // A command with no leave ran until the end of the log.
            .map(|((_, pid), (enter, leave))| (*enter, leave.unwrap_or(u128::MAX), pid.as_str()))
            .collect();
        of_key.sort();
        for pair in of_key.windows(2) {
            let ((_, a_leave, a), (b_enter, _, b)) = (pair[0], pair[1]);
            if b_enter < a_leave {
                violations.push(format!("{key}: commands {a} and {b} ran at once"));
            }
        }
    }
    violations
}

#[test]
fn torture_cli_short() {
    let (violations, figures) = torture(Duration::from_secs(10), 4);
    eprintln!("cli short: {figures:?}");
    assert!(figures["commands"] > 40, "{figures:?}");
    assert!(
        figures["signalled"] > 20 && figures["killed"] > 5,
        "{figures:?}"
    );
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
#[ignore = "long: minutes; run on demand (see the file's doc comment)"]
fn torture_cli_long() {
    let secs = std::env::var("HOSTLOCK_TORTURE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let (violations, figures) = torture(Duration::from_secs(secs), 8);
    eprintln!("cli long: {figures:?}, {} violations", violations.len());
    assert!(violations.is_empty(), "{violations:#?}");
}

/// The checker sees an overlap when there is one.
#[test]
fn the_checker_sees_overlapping_commands() {
    let log = "enter a 1 100\nenter a 2 150\nleave a 1 200\nleave a 2 300\n\
               enter b 3 100\nleave b 3 200\nenter b 4 200\nleave b 4 250\n";
    assert_eq!(check(log), ["a: commands 1 and 2 ran at once"]);
}

/// A process id used again by a later command starts a new span.
#[test]
fn the_checker_tells_commands_of_one_process_id_apart() {
    let log = "enter a 1 100\nleave a 1 200\nenter a 2 250\nleave a 2 300\n\
               enter a 1 400\nleave a 1 500\n";
    assert!(check(log).is_empty(), "{:?}", check(log));
    assert_eq!(
        check("enter a 1 \n"),
        ["line without a time \"enter a 1 \""]
    );
}
