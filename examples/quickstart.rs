//! Two workers contend for one job lock in a lock file.
//!
//! The first to acquire runs the job and then "crashes" without releasing;
//! the other is refused until the lease expires, then takes over. Finally a
//! cleanup removes the expired leases.
//!
//! Run it with `cargo run --example quickstart`.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use hostlock::{CleanableLocker, FileLocker, LockValue, Locker, RenewableLocker};

const JOB: &str = "nightly-report";
const LEASE: Duration = Duration::from_millis(800);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("locks.redb");
    // One handle per process; clones share it between threads.
    let locker: FileLocker<String> = FileLocker::builder(&path)
        .background_cleanup(false)
        .open()?;
    println!("lock file: {}", path.display());

    let start = Arc::new(Barrier::new(2));
    let workers: Vec<_> = ["alice", "bob"]
        .into_iter()
        .map(|name| {
            let (locker, start) = (locker.clone(), Arc::clone(&start));
            thread::spawn(move || work(name, &locker, &start))
        })
        .collect();
    for worker in workers {
        worker.join().expect("a worker panicked")?;
    }

    // Three more short leases, left to expire.
    for i in 0..3 {
        let lease = LockValue::new(format!("batch {i}")).with_ttl(Duration::from_millis(50));
        locker.acquire(&format!("batch-{i}"), lease)?;
    }
    thread::sleep(Duration::from_millis(100));
    println!("cleanup removed {} expired locks", locker.cleanup()?);
    println!("{JOB} still locked: {}", locker.exists(JOB)?);
    Ok(())
}

fn work(name: &str, locker: &FileLocker<String>, start: &Barrier) -> hostlock::Result<()> {
    start.wait();
    let began = Instant::now();
    let lease = || {
        LockValue::new(name.to_owned())
            .with_ttl(LEASE)
            .with_token(format!("{name}-token"))
    };
    if locker.acquire(JOB, lease())? {
        println!("{name}: got {JOB}, running it and then crashing without releasing");
        return Ok(());
    }
    // The lock is held: say by whom, and wait for the lease to run out.
    let holder = locker.get(JOB)?.map(|lock| lock.value);
    println!("{name}: {JOB} is held by {holder:?}, waiting for the lease to expire");
    while !locker.acquire(JOB, lease())? {
        thread::sleep(Duration::from_millis(50));
    }
    println!(
        "{name}: got {JOB} after {:.1?}, when the other lease expired",
        began.elapsed()
    );
    let released = locker.release_if_owner(JOB, &format!("{name}-token"))?;
    println!("{name}: done, released its own lock: {released}");
    Ok(())
}
