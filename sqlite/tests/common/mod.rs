//! What the tests that start child processes share: a test binary runs
//! itself again, as one test (`child_entry`) that reads its role and its
//! settings from environment variables.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Names the role of a child run of the test binary.
pub const ROLE: &str = "HOSTLOCK_SQLITE_ROLE";
/// Names the database a child opens.
pub const DB: &str = "HOSTLOCK_SQLITE_DB";
/// Names the log a child appends to.
pub const LOG: &str = "HOSTLOCK_SQLITE_LOG";
/// The process id of the test that started a child.
pub const PARENT: &str = "HOSTLOCK_SQLITE_PARENT";

/// The role of this run, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// A setting the parent passed.
pub fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("a child needs {name}"))
}

/// The command that runs this binary's `child_entry` as `role` on `db`.
pub fn child(role: &str, db: &Path) -> Command {
    let exe = std::env::current_exe().expect("the path of the test binary");
    let mut cmd = Command::new(exe);
    cmd.args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(DB, db)
        .env(PARENT, std::process::id().to_string())
        .stdin(Stdio::null());
    cmd
}

/// A child killed and reaped when dropped, so that a failed test leaves no
/// process behind.
#[derive(Debug)]
pub struct Reaped(pub Child, Option<BufReader<ChildStdout>>);

impl Reaped {
    /// Starts `cmd` with its standard output piped.
    pub fn spawn(mut cmd: Command) -> Reaped {
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start a child");
        let out = child.stdout.take().map(BufReader::new);
        Reaped(child, out)
    }

    /// The child's output, line by line.
    pub fn lines(&mut self) -> &mut BufReader<ChildStdout> {
        self.1.as_mut().expect("piped output")
    }

    /// Waits for the child to end well, within `limit`, reading the rest of
    /// its output (so that it never writes to a closed pipe).
    pub fn finish(mut self, limit: Duration) {
        if let Some(mut out) = self.1.take() {
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut out, &mut rest);
        }
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait for a child") {
                assert!(status.success(), "a child failed: {status}");
                return;
            }
            assert!(Instant::now() < until, "a child ran past {limit:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads lines of `out` until one starts with `prefix`, and returns the rest
/// of it; panics if the output ends first.
pub fn expect_line(out: &mut impl BufRead, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).expect("read a child's output");
        assert!(n > 0, "the child ended before printing {prefix:?}");
        if let Some(rest) = line.trim_end().strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
}

/// Whether the test that started this child is gone: a child that waits
/// long checks it, so that it never outlives its test.
pub fn orphaned() -> bool {
    std::os::unix::process::parent_id().to_string() != setting(PARENT)
}

/// Appends `record` to the shared log in one write (O_APPEND keeps the
/// records of several processes whole and in order).
pub fn log(record: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(setting(LOG))
        .expect("open the shared log");
    file.write_all(record.as_bytes())
        .expect("append to the log");
}
