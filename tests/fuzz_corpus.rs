//! Replays the `decode_record` fuzz corpus on the stable toolchain.
//!
//! Every file in `fuzz/corpus/decode_record/` goes through
//! `hostlock::fuzzing::decode_record` as a `ciborium::Value`, a `String` and a
//! `u64`; none may panic (which includes the check that a decoded record
//! re-encodes to the same bytes). The hand-written seeds named `valid_*` must
//! also decode.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use hostlock::fuzzing::decode_record;

fn corpus_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_record");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn corpus_replays_without_panics() {
    let files = corpus_files();
    assert!(
        files.len() >= 5,
        "expected at least 5 corpus files, found {}",
        files.len()
    );

    let mut panicked = Vec::new();
    for path in &files {
        let bytes =
            fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            let value = decode_record::<ciborium::Value>(&bytes);
            let _ = decode_record::<String>(&bytes);
            let _ = decode_record::<u64>(&bytes);
            value
        }));
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        match outcome {
            Ok(value) => {
                if name.starts_with("valid_") {
                    assert!(
                        value.is_ok(),
                        "seed {name} ({}) does not decode: {value:?}",
                        hex(&bytes)
                    );
                }
            }
            Err(_) => panicked.push(format!("{name} ({})", hex(&bytes))),
        }
    }
    assert!(
        panicked.is_empty(),
        "decode_record panicked on {} corpus file(s): {panicked:#?}",
        panicked.len()
    );
}
