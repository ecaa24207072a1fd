//! Three worker processes pull the same jobs from a queue.
//!
//! `invoice-*` jobs must run once at a time (`with_unique`): a worker that
//! finds one running skips it as a duplicate. `report` must never run twice
//! at the same time (`without_overlap`): workers wait their turn, and every
//! run happens, one after another.
//!
//! Run it with `cargo run --example unique_jobs`.

use std::process::Command;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hostlock::{FileLocker, Outcome, OverlapOptions, with_unique, without_overlap};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, worker, path, start] = args.as_slice()
        && role == "worker"
    {
        return work(worker, path, start.parse()?);
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("jobs.redb");
    println!("lock file: {}", path.display());
    let exe = std::env::current_exe()?;
    let start = millis_since_epoch().to_string();
    let workers = (1..=3)
        .map(|n| {
            Command::new(&exe)
                .args(["worker", &n.to_string()])
                .arg(&path)
                .arg(&start)
                .spawn()
        })
        .collect::<Result<Vec<_>, _>>()?;
    for mut worker in workers {
        let status = worker.wait()?;
        if !status.success() {
            return Err(format!("a worker failed: {status}").into());
        }
    }
    Ok(())
}

fn millis_since_epoch() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// A job's fence as shown: every lease locker gives one.
fn fence(fence: Option<u64>) -> String {
    fence.map_or_else(|| "none".to_owned(), |fence| fence.to_string())
}

fn work(worker: &str, path: &str, start: u128) -> Result<(), Box<dyn std::error::Error>> {
    let locker: FileLocker<String> = FileLocker::open(path)?;
    // Milliseconds since the parent started the workers, on the shared clock.
    let say = |what: String| {
        let at = millis_since_epoch().saturating_sub(start);
        println!("{at:>5} ms  worker {worker}: {what}");
    };
    for job in ["invoice-17", "invoice-18"] {
        let outcome = with_unique(&locker, job, Some(Duration::from_secs(60)), |lease| {
            say(format!("{job} runs (fence {})", fence(lease.fence())));
            thread::sleep(Duration::from_millis(300));
        })?;
        if outcome == Outcome::Skipped {
            say(format!("{job} skipped: a duplicate of a running job"));
        }
    }
    let options = OverlapOptions::new().ttl(Duration::from_secs(30));
    let outcome = without_overlap(&locker, "report", options, |lease| {
        say(format!("report starts (fence {})", fence(lease.fence())));
        thread::sleep(Duration::from_millis(150));
        say("report ends".to_string());
    })?;
    // Waiting without a limit, the run always happens.
    assert_eq!(outcome, Outcome::Ran(()));
    Ok(())
}
