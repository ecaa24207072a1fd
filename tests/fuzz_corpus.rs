//! Replays the fuzz corpora on the stable toolchain.
//!
//! - `fuzz/corpus/decode_record/`: every file goes through
//!   `hostlock::fuzzing::decode_record` as a `ciborium::Value`, a `String` and
//!   a `u64`; none may panic (which includes the check that a decoded record
//!   re-encodes to the same bytes), and through `decode_request` as a
//!   waiter's request. The hand-written seeds named `valid_*` must decode
//!   as records, those named `request_*` as requests.
//! - `fuzz/corpus/open_file/`: every file goes through
//!   `hostlock_testkit::open_file`, which panics on a panic of the locker, an
//!   error that does not describe the file, or a sound file that misbehaves.
//!   The seeds named `valid_*` must open.
//! - `fuzz/corpus/ops_model/`: every file goes through
//!   `hostlock_testkit::ops_model`, which panics when a locker's result or
//!   state differs from the model of docs/semantics.md.
//! - `fuzz/corpus/ops_faults/`: every file goes through
//!   `hostlock_testkit::ops_faults`, the same with the storage failing at
//!   chosen writes and syncs.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use hostlock::fuzzing::{decode_record, decode_request};
use hostlock_testkit::{open_file, ops_faults, ops_model};

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "expected at least 5 corpus files in {}, found {}",
        dir.display(),
        files.len()
    );
    files
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new directory for one input, in memory (`/dev/shm`) where there is one.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("create a scratch directory")
}

/// What a panic said.
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[test]
fn decode_record_corpus_replays_without_panics() {
    let mut panicked = Vec::new();
    for path in &corpus_files("decode_record") {
        let bytes = read(path);
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            let value = decode_record::<ciborium::Value>(&bytes);
            let _ = decode_record::<String>(&bytes);
            let _ = decode_record::<u64>(&bytes);
            let request = decode_request::<ciborium::Value>(&bytes);
            let _ = decode_request::<u64>(&bytes);
            (value, request)
        }));
        let name = name(path);
        match outcome {
            Ok((value, request)) => {
                if name.starts_with("valid_") {
                    assert!(
                        value.is_ok(),
                        "seed {name} ({}) does not decode: {value:?}",
                        hex(&bytes)
                    );
                }
                if name.starts_with("request_") {
                    assert!(
                        request.is_ok(),
                        "seed {name} ({}) does not decode as a request: {request:?}",
                        hex(&bytes)
                    );
                }
            }
            Err(_) => panicked.push(format!("{name} ({})", hex(&bytes))),
        }
    }
    assert!(
        panicked.is_empty(),
        "decode_record or decode_request panicked on {} corpus file(s): {panicked:#?}",
        panicked.len()
    );
}

#[test]
fn open_file_corpus_replays_without_panics() {
    let mut panicked = Vec::new();
    for path in &corpus_files("open_file") {
        let bytes = read(path);
        let dir = scratch_dir();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| open_file(dir.path(), &bytes)));
        let name = name(path);
        match outcome {
            Ok(opened) => {
                if name.starts_with("valid_") {
                    assert!(opened.is_ok(), "seed {name} does not open: {opened:?}");
                }
            }
            Err(payload) => panicked.push(format!("{name}: {}", message(&*payload))),
        }
    }
    assert!(
        panicked.is_empty(),
        "open_file panicked on {} corpus file(s): {panicked:#?}",
        panicked.len()
    );
}

#[test]
fn ops_model_corpus_replays_without_mismatches() {
    let mut panicked = Vec::new();
    for path in &corpus_files("ops_model") {
        let bytes = read(path);
        let dir = scratch_dir();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| ops_model(dir.path(), &bytes)));
        if let Err(payload) = outcome {
            panicked.push(format!("{}: {}", name(path), message(&*payload)));
        }
    }
    assert!(
        panicked.is_empty(),
        "ops_model failed on {} corpus file(s): {panicked:#?}",
        panicked.len()
    );
}

#[test]
fn ops_faults_corpus_replays_without_mismatches() {
    let mut panicked = Vec::new();
    let files = corpus_files("ops_faults");
    assert!(files.len() >= 20, "only {} files", files.len());
    for path in &files {
        let bytes = read(path);
        let dir = scratch_dir();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| ops_faults(dir.path(), &bytes)));
        if let Err(payload) = outcome {
            panicked.push(format!("{}: {}", name(path), message(&*payload)));
        }
    }
    assert!(
        panicked.is_empty(),
        "ops_faults failed on {} corpus file(s): {panicked:#?}",
        panicked.len()
    );
}
