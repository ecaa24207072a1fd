//! Fuzz target: no file content makes `FileLocker::open`, or the operations on a file that opens, panic; see `hostlock_testkit::open_file`.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod scratch;

use scratch::scratch_dir;

fuzz_target!(|data: &[u8]| {
    let dir = scratch_dir();
    // An error is the expected outcome for most inputs.
    let _ = hostlock_testkit::open_file(dir.path(), data);
});
