//! Integrity checks and compaction of a lock file.

use hostlock::{FileLocker, LockValue, Locker};

fn open(path: &std::path::Path) -> FileLocker<String> {
    FileLocker::builder(path)
        .background_cleanup(false)
        .open()
        .unwrap()
}

#[test]
fn a_healthy_file_checks_clean_while_others_use_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let locker = open(&path);
    let other = open(&path);
    for i in 0..20 {
        let lock = LockValue::new(format!("v{i}")).with_ttl(std::time::Duration::from_secs(60));
        assert!(locker.acquire(&format!("k{i}"), lock).unwrap());
    }
    let report = other.check().unwrap();
    assert_eq!(report.locks, 20);
    assert!(!report.repaired);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // Both handles still work.
    assert!(locker.release("k0").unwrap());
    assert!(!other.exists("k0").unwrap());
}

#[test]
fn a_record_that_does_not_decode_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    drop(open(&path));
    {
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let locks: redb::TableDefinition<'_, &str, &[u8]> =
                redb::TableDefinition::new("hostlock_locks");
            let mut table = tx.open_table(locks).unwrap();
            table.insert("garbled", [9u8, 9, 9].as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let locker = open(&path);
    let report = locker.check().unwrap();
    assert_eq!(report.locks, 1);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].contains("garbled"));
    // Reading it is an error naming the damage, not a panic.
    assert!(matches!(
        locker.get("garbled"),
        Err(hostlock::Error::Corrupted { .. })
    ));
}

#[test]
fn compaction_gives_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    let locker = open(&path);
    let value = "x".repeat(4000);
    for i in 0..400 {
        assert!(
            locker
                .acquire(&format!("k{i}"), LockValue::new(value.clone()))
                .unwrap()
        );
    }
    for i in 0..400 {
        assert!(locker.release(&format!("k{i}")).unwrap());
    }
    let before = std::fs::metadata(&path).unwrap().len();
    assert!(locker.compact().unwrap());
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(after < before, "{after} bytes after, {before} before");
    assert!(locker.acquire("k", LockValue::new(value)).unwrap());
    assert!(locker.check().unwrap().problems.is_empty());
}

#[test]
fn an_index_entry_without_its_lock_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.redb");
    drop(open(&path));
    {
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let expiry: redb::TableDefinition<'_, (u64, &str), ()> =
                redb::TableDefinition::new("hostlock_expiry");
            tx.open_table(expiry)
                .unwrap()
                .insert((5, "ghost"), ())
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let report = open(&path).check().unwrap();
    assert_eq!(report.locks, 0);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].contains("expiry index names \"ghost\""));
}
