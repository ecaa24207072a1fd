//! What the targets that open lock files share: a scratch directory, and
//! LeakSanitizer's suppressions for the threads `FileLocker` starts.

/// Tells LeakSanitizer to ignore the thread-local storage of threads that are
/// exiting. `FileLocker` does not join the threads it starts (one opens the
/// database and is given up at the busy timeout; one commits a handle's
/// writes and ends after the handle); a leak check that runs while such a
/// thread exits sees its thread-locals, and glibc's list of their destructors
/// (allocated in `__cxa_thread_atexit_impl`), as leaked.
#[unsafe(no_mangle)]
pub extern "C" fn __lsan_default_suppressions() -> *const std::ffi::c_char {
    c"leak:__cxa_thread_atexit_impl\nleak:std::sys::thread_local\n".as_ptr()
}

/// A new directory in memory (`/dev/shm`) where there is one, for speed.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("create a scratch directory")
}
