//! Lock files of arbitrary bytes: they open with a clear error, or work.

use std::fmt;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use hostlock::{
    CleanableLocker, Error, FileLocker, InspectableLocker, LockValue, Locker, RenewableLocker,
    Result,
};

/// How long [`open_file`] lets a call wait for the file. No other process
/// uses it, so only a hang waits this long.
pub(crate) const OPEN_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// Writes `bytes` to a file in `dir` and opens it as a `FileLocker<String>`
/// without background cleanup; when it opens, runs each kind of operation on
/// it, then opens it again. Returns the error of a file that does not open.
///
/// Panics when anything panics; when a file that does not open fails with an
/// error that does not describe the file or does not name it; and when a file
/// that passes [`FileLocker::check`] misbehaves: an operation on a key of its
/// own returns what the contract does not allow, or the file does not open
/// again.
pub fn open_file(dir: &Path, bytes: &[u8]) -> Result<()> {
    let path = dir.join("input.redb");
    fs::write(&path, bytes).expect("write the input file");
    let open = || {
        FileLocker::<String>::builder(&path)
            .background_cleanup(false)
            .busy_timeout(OPEN_BUSY_TIMEOUT)
            .open()
    };
    let locker = match open() {
        Ok(locker) => locker,
        Err(e) => {
            assert_describes_file(&e, &path);
            return Err(e);
        }
    };
    let clean = exercise(&locker);
    drop(locker);
    match open() {
        Ok(locker) => {
            exercise(&locker);
        }
        Err(e) if clean => panic!("a file that passed its check does not open again: {e}"),
        Err(e) => assert_describes_file(&e, &path),
    }
    Ok(())
}

/// Panics unless `e` is an error about the contents of the file at `path`
/// that names the file.
pub(crate) fn assert_describes_file(e: &Error, path: &Path) {
    assert!(
        matches!(
            e,
            Error::NotLockFile { .. }
                | Error::Corrupted { .. }
                | Error::UnsupportedVersion { .. }
                | Error::Storage { .. }
                | Error::Busy { .. }
        ),
        "opening a damaged file fails with an error that does not describe it: {e:?}"
    );
    let message = e.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "the error does not name the file: {message}"
    );
}

/// The key [`exercise`] acquires and releases.
pub(crate) const OWN_KEY: &str = "fuzz/own-key";
pub(crate) const OWN_TOKEN: &str = "fuzz-token";

/// Runs each kind of operation on an opened input file. Returns whether the
/// file passed its check, in which case the operations on a key of its own
/// must behave as on any lock file.
pub(crate) fn exercise(locker: &FileLocker<String>) -> bool {
    let clean =
        matches!(locker.check(), Ok(report) if !report.repaired && report.problems.is_empty());
    let keys: Vec<String> = match locker.list(true) {
        Ok(all) => all
            .into_iter()
            .flatten()
            .take(4)
            .map(|info| info.key)
            .collect(),
        Err(_) => Vec::new(),
    };
    let _ = locker.list(false);
    for key in &keys {
        let _ = locker.get(key);
        let _ = locker.exists(key);
        let _ = locker.info(key);
    }
    let _ = locker.cleanup();
    let _ = own_key(locker, clean);
    for (i, key) in keys.iter().enumerate() {
        let _ = match i % 3 {
            0 => locker.release(key).map(drop),
            1 => locker.force_release(key),
            _ => locker.release_if_owner(key, OWN_TOKEN).map(drop),
        };
    }
    let _ = locker.check();
    let _ = locker.compact();
    clean
}

/// Takes, renews and releases [`OWN_KEY`]; stops at the first error. When
/// `clean`, panics on a result that the contract does not allow.
pub(crate) fn own_key(locker: &FileLocker<String>, clean: bool) -> Result<()> {
    let expect = |what: &str, got: &dyn fmt::Debug, ok: bool| {
        assert!(!clean || ok, "{what} on a sound file returned {got:?}");
    };
    let now = SystemTime::now();
    let lock = LockValue::new("fuzz".to_owned())
        .expiring_at(now + Duration::from_secs(3600))
        .with_token(OWN_TOKEN);
    locker.force_release(OWN_KEY)?;
    let got = locker.acquire(OWN_KEY, lock.clone())?;
    expect("acquire of a free key", &got, got);
    let got = locker.get(OWN_KEY)?;
    expect(
        "get of a lock just taken",
        &got,
        got.as_ref() == Some(&lock),
    );
    let later = now + Duration::from_secs(7200);
    let got = locker.touch(OWN_KEY, OWN_TOKEN, later)?;
    expect("touch by the owner", &got, got);
    let got = locker.release_if_owner(OWN_KEY, OWN_TOKEN)?;
    expect("release_if_owner by the owner", &got, got);
    let got = locker.exists(OWN_KEY)?;
    expect("exists after a release", &got, !got);
    let got = locker.acquire(OWN_KEY, lock)?;
    expect("acquire of a released key", &got, got);
    let got = locker.release(OWN_KEY)?;
    expect("release of a held key", &got, got);
    Ok(())
}
