//! Fuzz target: operation sequences on a `FileLocker` whose storage fails at chosen writes and syncs agree with the model of docs/semantics.md; see `hostlock_testkit::ops_faults`.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod scratch;

use scratch::scratch_dir;

fuzz_target!(|data: &[u8]| {
    let dir = scratch_dir();
    hostlock_testkit::ops_faults(dir.path(), data);
});
