//! Fuzz target: operation sequences give the same results on a `FileLocker`, a `MemoryLocker` and the model of docs/semantics.md; see `hostlock_testkit::ops_model`.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod scratch;

use scratch::scratch_dir;

fuzz_target!(|data: &[u8]| {
    let dir = scratch_dir();
    hostlock_testkit::ops_model(dir.path(), data);
});
