//! Job helpers: duplicates are skipped, overlapping runs are serialised and
//! all run, a window holds after the job, a panicking job releases, and a
//! killed worker does not block its key. Against every locker, and across
//! processes for `FileLocker`.

mod common;

use std::io::{BufRead, BufReader};
use std::panic::{self, AssertUnwindSafe};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, UNIX_EPOCH};

use hostlock::{
    FileLocker, LeaseLocker, Locker, ManualClock, MemoryLocker, Outcome, OverlapOptions,
    with_unique, with_unique_window, without_overlap,
};

use common::LOG;

/// The body of every child process; does nothing in a normal test run.
#[test]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let locker: FileLocker<String> = FileLocker::builder(common::setting(common::FILE))
        .background_cleanup(false)
        .open()
        .unwrap();
    match role.as_str() {
        // Tries to run a duplicate and says what happened.
        "duplicate" => {
            let outcome = with_unique(&locker, "import", None, |_| ()).unwrap();
            println!("OUTCOME {outcome:?}");
        }
        // Runs ten jobs without overlap, logging each run.
        "overlap" => {
            use std::io::Write;
            let mut log = common::shared_log();
            let pid = std::process::id();
            for _ in 0..10 {
                let options = OverlapOptions::new().ttl(Duration::from_secs(30));
                let outcome = without_overlap(&locker, "nightly", options, |_| {
                    log.write_all(format!("enter {pid}\n").as_bytes()).unwrap();
                    thread::sleep(Duration::from_millis(2));
                    log.write_all(format!("leave {pid}\n").as_bytes()).unwrap();
                })
                .unwrap();
                assert_eq!(outcome, Outcome::Ran(()));
            }
        }
        // Runs a job in a window of an hour, and exits.
        "window" => {
            let hour = Duration::from_secs(3600);
            let outcome = with_unique_window(&locker, "digest", hour, |_| ()).unwrap();
            assert_eq!(outcome, Outcome::Ran(()));
        }
        // Runs a job that never ends, until killed.
        "stuck" => {
            let _ = without_overlap(&locker, "nightly", OverlapOptions::new(), |_| {
                println!("READY");
                let parent = std::os::unix::process::parent_id();
                while !common::orphaned(parent) {
                    thread::sleep(Duration::from_millis(50));
                }
            });
        }
        other => panic!("unknown role {other}"),
    }
}

trait Subject: LeaseLocker<String> + Clone + Send + Sync + 'static {}
impl<L: LeaseLocker<String> + Clone + Send + Sync + 'static> Subject for L {}

fn clock() -> ManualClock {
    ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
}

fn memory(clock: &ManualClock) -> (MemoryLocker<String>, Option<tempfile::TempDir>) {
    (MemoryLocker::with_clock(clock.clone()), None)
}

fn file(clock: &ManualClock) -> (FileLocker<String>, Option<tempfile::TempDir>) {
    let dir = tempfile::tempdir().unwrap();
    let locker = FileLocker::builder(dir.path().join("locks.redb"))
        .clock(clock.clone())
        .background_cleanup(false)
        .open()
        .unwrap();
    (locker, Some(dir))
}

fn unique_runs_once_while_duplicates_arrive(locker: impl Subject, _clock: ManualClock) {
    let duplicates = 8;
    let started = Arc::new(Barrier::new(duplicates + 1));
    let skipped = Arc::new(AtomicUsize::new(0));
    let outcome = with_unique(&locker, "import", None, |lease| {
        let threads: Vec<_> = (0..duplicates)
            .map(|_| {
                let (locker, started, skipped) =
                    (locker.clone(), Arc::clone(&started), Arc::clone(&skipped));
                thread::spawn(move || {
                    started.wait();
                    let outcome = with_unique(&locker, "import", None, |_| ()).unwrap();
                    if outcome == Outcome::Skipped {
                        skipped.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        started.wait();
        threads.into_iter().for_each(|t| t.join().unwrap());
        lease.fence()
    })
    .unwrap();
    assert!(matches!(outcome, Outcome::Ran(Some(fence)) if fence > 0));
    assert_eq!(skipped.load(Ordering::SeqCst), duplicates);
    assert!(!locker.exists("import").unwrap(), "released after the job");
    assert_eq!(
        with_unique(&locker, "import", None, |_| 7).unwrap(),
        Outcome::Ran(7)
    );
}

fn without_overlap_serialises_and_runs_every_job(locker: impl Subject, _clock: ManualClock) {
    let active = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let fences = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let (locker, active, ran, fences) = (
                locker.clone(),
                Arc::clone(&active),
                Arc::clone(&ran),
                Arc::clone(&fences),
            );
            thread::spawn(move || {
                for _ in 0..5 {
                    let options = OverlapOptions::new().ttl(Duration::from_secs(60));
                    let outcome = without_overlap(&locker, "nightly", options, |lease| {
                        assert_eq!(active.fetch_add(1, Ordering::SeqCst), 0, "overlap");
                        fences.lock().unwrap().push(lease.fence());
                        thread::sleep(Duration::from_millis(1));
                        active.fetch_sub(1, Ordering::SeqCst);
                        ran.fetch_add(1, Ordering::SeqCst);
                    })
                    .unwrap();
                    assert_eq!(outcome, Outcome::Ran(()));
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(ran.load(Ordering::SeqCst), 30);
    let fences = fences.lock().unwrap();
    assert!(
        fences.windows(2).all(|w| w[0] < w[1]),
        "fences grow run after run"
    );
}

fn without_overlap_can_refuse_to_wait(locker: impl Subject, _clock: ManualClock) {
    let _holder = locker
        .try_lock("nightly", "holder".into(), None)
        .unwrap()
        .unwrap();
    let once = without_overlap(&locker, "nightly", OverlapOptions::new().try_once(), |_| ());
    assert_eq!(once.unwrap(), Outcome::Contended);
    let options = OverlapOptions::new().wait(Duration::from_millis(20));
    assert_eq!(
        without_overlap(&locker, "nightly", options, |_| ()).unwrap(),
        Outcome::Contended
    );
    assert_eq!(locker.waiters("nightly").unwrap(), 0);
}

fn unique_window_holds_after_the_job(locker: impl Subject, clock: ManualClock) {
    let window = Duration::from_secs(300);
    let run = |n| with_unique_window(&locker, "digest", window, move |_| n).unwrap();
    assert_eq!(run(1), Outcome::Ran(1));
    assert!(locker.exists("digest").unwrap(), "held after the job");
    assert_eq!(run(2), Outcome::Skipped);
    clock.advance(window - Duration::from_secs(1));
    assert_eq!(run(3), Outcome::Skipped);
    clock.advance(Duration::from_secs(2));
    assert_eq!(run(4), Outcome::Ran(4), "free after the window");

    // A failed job keeps the window too.
    clock.advance(window * 2);
    let failed = with_unique_window(&locker, "digest", window, |_| Err::<(), _>("boom"));
    assert_eq!(failed.unwrap(), Outcome::Ran(Err("boom")));
    assert_eq!(run(5), Outcome::Skipped);
}

fn a_panicking_job_releases(locker: impl Subject, clock: ManualClock) {
    let panicked = panic::catch_unwind(AssertUnwindSafe(|| {
        let _ = with_unique(&locker, "k", None, |_| panic!("job failed"));
    }));
    assert!(panicked.is_err(), "the panic propagates");
    assert!(!locker.exists("k").unwrap(), "with_unique released");

    let panicked = panic::catch_unwind(AssertUnwindSafe(|| {
        let options = OverlapOptions::new().ttl(Duration::from_secs(60));
        let _ = without_overlap(&locker, "k", options, |_| panic!("job failed"));
    }));
    assert!(panicked.is_err());
    assert!(!locker.exists("k").unwrap(), "without_overlap released");

    let window = Duration::from_secs(60);
    let panicked = panic::catch_unwind(AssertUnwindSafe(|| {
        let _ = with_unique_window(&locker, "k", window, |_| panic!("job failed"));
    }));
    assert!(panicked.is_err());
    assert!(
        locker.exists("k").unwrap(),
        "the window holds after a panic"
    );
    clock.advance(window + Duration::from_secs(1));
    assert!(!locker.exists("k").unwrap());
}

macro_rules! suite {
    ($($locker:ident),*) => {$(
        mod $locker {
            suite!(@tests $locker:
                unique_runs_once_while_duplicates_arrive,
                without_overlap_serialises_and_runs_every_job,
                without_overlap_can_refuse_to_wait,
                unique_window_holds_after_the_job,
                a_panicking_job_releases
            );
        }
    )*};
    (@tests $locker:ident: $($test:ident),*) => {$(
        #[test]
        fn $test() {
            let clock = super::clock();
            let (locker, _dir) = super::$locker(&clock);
            super::$test(locker, clock);
        }
    )*};
}

suite!(memory, file);

#[test]
fn duplicates_in_other_processes_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let locker: FileLocker<String> = FileLocker::open(&path).unwrap();
    let outcome = with_unique(&locker, "import", None, |_| {
        (0..3)
            .map(|_| {
                common::child("duplicate", &path)
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|child| String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap())
            .filter(|out| out.contains("OUTCOME Skipped"))
            .count()
    })
    .unwrap();
    assert_eq!(
        outcome,
        Outcome::Ran(3),
        "every duplicate process was skipped"
    );
}

#[test]
fn a_killed_worker_does_not_block_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let locker: FileLocker<String> = FileLocker::open(&path).unwrap();
    let mut worker = common::Reaped(
        common::child("stuck", &path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = worker.0.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.ends_with("READY"));
    assert!(ready, "the worker started its job");
    let once = OverlapOptions::new().try_once();
    assert_eq!(
        without_overlap(&locker, "nightly", once, |_| ()).unwrap(),
        Outcome::Contended
    );
    drop(worker); // SIGKILL, mid-job, holding the key with no TTL
    assert_eq!(
        without_overlap(&locker, "nightly", once, |_| "ran").unwrap(),
        Outcome::Ran("ran")
    );
}

#[test]
fn a_window_outlives_the_process_that_ran_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let status = common::child("window", &path)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let locker: FileLocker<String> = FileLocker::open(&path).unwrap();
    assert!(locker.exists("digest").unwrap());
    let hour = Duration::from_secs(3600);
    assert_eq!(
        with_unique_window(&locker, "digest", hour, |_| ()).unwrap(),
        Outcome::Skipped
    );
}

#[test]
fn runs_in_other_processes_never_overlap_and_all_happen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let log = dir.path().join("runs.log");
    std::fs::write(&log, "").unwrap();
    drop(FileLocker::<String>::open(&path).unwrap());
    let children: Vec<_> = (0..3)
        .map(|_| {
            common::Reaped(
                common::child("overlap", &path)
                    .env(LOG, &log)
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    for mut child in children {
        assert!(child.0.wait().unwrap().success());
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3 * 10 * 2, "every run happened");
    for pair in lines.chunks(2) {
        let (enter, leave) = (pair[0], pair[1]);
        assert!(enter.starts_with("enter "), "{enter}");
        assert_eq!(leave, enter.replace("enter", "leave"), "runs overlapped");
    }
}
