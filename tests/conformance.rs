//! The contract of `docs/semantics.md`, run against every locker through the
//! kit `hostlock::conformance`; and the kit itself, against lockers broken on
//! purpose and against the table it claims to check.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::time::SystemTime;

use hostlock::conformance::{self, Report};
use hostlock::{
    CleanableLocker, FileLocker, InspectableLocker, LockInfo, LockValue, Locker, ManualClock,
    MemoryLocker, RenewableLocker, Result,
};

fn memory(clock: ManualClock) -> MemoryLocker<String> {
    MemoryLocker::with_clock(clock)
}

/// Every row the kit has, guards and waits included.
fn everything<L>() -> conformance::Suite<L>
where
    L: hostlock::LeaseLocker<String> + CleanableLocker<String> + Send + Sync + 'static,
{
    conformance::Suite::new()
        .cleanable()
        .renewable()
        .inspectable()
        .leases()
}

#[test]
fn memory_locker_passes_every_row() {
    let report = conformance::run(memory);
    report.assert_passed();
    assert_eq!(report.passed().len(), 49);
    let report = everything().run(memory);
    report.assert_passed();
    assert_eq!(report.passed().len(), 60);
    assert!(report.skipped().is_empty());
}

#[test]
fn file_locker_passes_every_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut made = 0;
    let mut fresh = |clock| {
        made += 1;
        FileLocker::builder(dir.path().join(format!("{made}.redb")))
            .clock(clock)
            .background_cleanup(false)
            .open()
            .expect("open a new lock file")
    };
    let report = conformance::run(&mut fresh);
    report.assert_passed();
    assert_eq!(report.passed().len(), 49);
    let report = everything().run(&mut fresh);
    report.assert_passed();
    assert_eq!(made, 49 + 60, "one fresh locker per row");
    assert_eq!(report.passed().len(), 60);
}

/// Every row of the contract table is checked by the kit, or names the test
/// files that check it, and those exist; the kit checks no row the table lacks.
#[test]
fn every_semantics_row_is_checked() {
    let semantics = include_str!("../docs/semantics.md");
    // The first table; the guard rows (Q) have their own section and tests.
    let contract = semantics.split("\n## ").next().expect("a table");
    let report = conformance::run(memory);
    let checked: Vec<&str> = report.passed().iter().map(|row| row.id).collect();
    let mut rows = Vec::new();
    for line in contract.lines() {
        let Some(cells) = line.strip_prefix("| ") else {
            continue;
        };
        let id = cells.split(" |").next().expect("a first cell").trim();
        if id == "Row" {
            continue;
        }
        rows.push(id);
        if checked.contains(&id) {
            continue;
        }
        let files: Vec<&str> = line
            .match_indices("`tests/")
            .map(|(at, _)| line[at + 1..].split('`').next().expect("a path"))
            .collect();
        assert!(
            !files.is_empty(),
            "row {id} is not in hostlock::conformance and names no test file"
        );
        for file in files {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            assert!(path.is_file(), "row {id} names {file}, which is missing");
        }
    }
    assert!(rows.len() > 40, "found only {rows:?} in docs/semantics.md");
    for id in checked {
        let row = id.trim_end_matches(|c: char| c.is_ascii_lowercase());
        assert!(rows.contains(&row), "the kit checks {id}, not in the table");
    }
}

// ---- lockers broken on purpose ------------------------------------------

/// What is wrong with a [`Flawed`] locker.
#[derive(Debug, Clone, Copy)]
enum Flaw {
    /// `release_if_owner` releases the lock whatever its token.
    IgnoresOwner,
    /// `acquire` takes the key even from a live holder.
    SkipsHeldCheck,
}

/// A `MemoryLocker` with one flaw.
#[derive(Debug)]
struct Flawed {
    inner: MemoryLocker<String>,
    flaw: Flaw,
}

impl Locker<String> for Flawed {
    fn exists(&self, key: &str) -> Result<bool> {
        self.inner.exists(key)
    }

    fn get(&self, key: &str) -> Result<Option<LockValue<String>>> {
        self.inner.get(key)
    }

    fn acquire(&self, key: &str, lock: LockValue<String>) -> Result<bool> {
        if let Flaw::SkipsHeldCheck = self.flaw {
            self.inner.force_release(key)?;
        }
        self.inner.acquire(key, lock)
    }

    fn release(&self, key: &str) -> Result<bool> {
        self.inner.release(key)
    }

    fn force_release(&self, key: &str) -> Result<()> {
        self.inner.force_release(key)
    }

    fn now(&self) -> SystemTime {
        self.inner.now()
    }
}

impl CleanableLocker<String> for Flawed {
    fn cleanup(&self) -> Result<usize> {
        self.inner.cleanup()
    }
}

impl RenewableLocker<String> for Flawed {
    fn touch(&self, key: &str, token: &str, expires_at: SystemTime) -> Result<bool> {
        self.inner.touch(key, token, expires_at)
    }

    fn release_if_owner(&self, key: &str, token: &str) -> Result<bool> {
        // The arguments are checked as they should be; the owner is not.
        let released = self.inner.release_if_owner(key, token)?;
        match self.flaw {
            Flaw::IgnoresOwner => Ok(released || self.inner.release(key)?),
            Flaw::SkipsHeldCheck => Ok(released),
        }
    }
}

impl InspectableLocker<String> for Flawed {
    fn info(&self, key: &str) -> Result<Option<LockInfo<String>>> {
        self.inner.info(key)
    }

    fn list(&self, include_expired: bool) -> Result<Vec<Result<LockInfo<String>>>> {
        self.inner.list(include_expired)
    }
}

fn run_flawed(flaw: Flaw) -> Report {
    conformance::run(|clock| Flawed {
        inner: MemoryLocker::with_clock(clock),
        flaw,
    })
}

fn failed_ids(report: &Report) -> Vec<&'static str> {
    report
        .failed()
        .iter()
        .map(|failure| failure.row.id)
        .collect()
}

#[test]
fn kit_catches_a_release_if_owner_that_ignores_the_token() {
    let report = run_flawed(Flaw::IgnoresOwner);
    assert_eq!(failed_ids(&report), ["O3", "O4", "O6"], "{report}");
    assert_eq!(report.passed().len(), 46);
}

#[test]
fn kit_catches_an_acquire_that_takes_a_held_key() {
    let report = run_flawed(Flaw::SkipsHeldCheck);
    // The job helpers over such a locker break too: duplicates run, and
    // runs overlap.
    assert_eq!(
        failed_ids(&report),
        ["A2", "A5", "A7", "N1", "J2", "J4", "J5", "J6"],
        "{report}"
    );
    assert_eq!(report.passed().len(), 41);
}

#[test]
fn a_failing_report_names_its_rows() {
    let report = run_flawed(Flaw::IgnoresOwner);
    assert!(!report.is_success());
    let o3 = &report.failed()[0];
    assert_eq!(o3.row.id, "O3");
    assert_eq!(
        o3.row.description,
        "release_if_owner with another token changes nothing"
    );
    assert!(
        o3.message
            .contains("release_if_owner with another token must be refused"),
        "{}",
        o3.message
    );
    let shown = report.to_string();
    assert!(shown.starts_with("60 rows of docs/semantics.md: 46 passed, 3 failed, 11 skipped"));
    for id in ["O3", "O4", "O6"] {
        assert!(shown.contains(&format!("\n  {id} ")), "{shown}");
    }
    let panic = panic::catch_unwind(AssertUnwindSafe(|| report.assert_passed()))
        .expect_err("assert_passed panics on a failed row");
    let message = panic.downcast_ref::<String>().expect("a message");
    assert!(message.contains(&shown), "{message}");
}

#[test]
fn a_panic_in_the_factory_fails_its_row_only() {
    let mut made = 0;
    let report = conformance::run(|clock| {
        made += 1;
        assert!(made != 5, "no fifth locker");
        memory(clock)
    });
    assert_eq!(failed_ids(&report), ["G1"]);
    assert_eq!(report.failed()[0].message, "no fifth locker");
    assert_eq!(report.passed().len(), 48);
}
