//! What the targets that open lock files share: a scratch directory.
//!
//! No LeakSanitizer suppressions: a `FileLocker` joins every thread it
//! starts when its last handle drops.

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
