//! Tasks of a tokio program share job locks in a lock file (feature
//! `tokio`).
//!
//! Eight tasks each try to import the same batch (`with_unique_async`: one
//! runs, the duplicates arriving meanwhile are skipped), then each rebuilds
//! the index (`without_overlap_async`: they wait their turn, in arrival
//! order, and never overlap), and one gives up waiting after 50 ms, which
//! leaves the queue at once. No task blocks the runtime's threads.
//!
//! Run it with `cargo run --example async_jobs`.

use std::time::{Duration, Instant};

use hostlock::{
    AsyncLocker, FileLocker, Outcome, OverlapOptions, with_unique_async, without_overlap_async,
};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("jobs.redb");
    let locker = AsyncLocker::new(FileLocker::<String>::open(&path)?);
    println!("lock file: {}", path.display());
    let start = Instant::now();

    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let locker = locker.clone();
            tokio::spawn(async move { work(task, &locker, start).await })
        })
        .collect();
    for task in tasks {
        task.await??;
    }

    // A wait given up under a timeout leaves no ticket behind: the next
    // comer is served at once.
    let held = locker.lock("report", String::new(), None).await?;
    let waited = tokio::time::timeout(
        Duration::from_millis(50),
        locker.lock("report", String::new(), None),
    )
    .await;
    println!(
        "{:>5} ms  a wait given up after 50 ms: {}",
        ms(start),
        waited.is_err()
    );
    drop(held);
    let next = locker.try_lock_for("report", String::new(), None, Duration::from_secs(5));
    println!(
        "{:>5} ms  the next comer served: {}",
        ms(start),
        next.await?.is_some()
    );
    Ok(())
}

async fn work(
    task: usize,
    locker: &AsyncLocker<FileLocker<String>>,
    start: Instant,
) -> hostlock::Result<()> {
    let imported = with_unique_async(locker, "import:batch-7", None, async |lease| {
        println!(
            "{:>5} ms  task {task} imports (fence {})",
            ms(start),
            lease.fence()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    })
    .await?;
    if imported == Outcome::Skipped {
        println!(
            "{:>5} ms  task {task}: the import is already running",
            ms(start)
        );
    }
    let options = OverlapOptions::new().ttl(Duration::from_secs(30));
    let rebuilt = without_overlap_async(locker, "rebuild-index", options, async |lease| {
        println!(
            "{:>5} ms  task {task} rebuilds (fence {})",
            ms(start),
            lease.fence()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    })
    .await?;
    // Waiting without a limit, the run always happens.
    assert_eq!(rebuilt, Outcome::Ran(()));
    Ok(())
}

fn ms(start: Instant) -> u128 {
    start.elapsed().as_millis()
}
