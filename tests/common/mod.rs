//! Helpers shared by the integration tests that start child processes.
//!
//! A test binary re-executes itself to run one test, `child_entry`, which acts
//! on the role and settings passed in environment variables.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::{Command, Stdio};

/// The environment variable that tells a re-executed test binary its role.
pub const ROLE: &str = "HOSTLOCK_TEST_ROLE";
/// The lock file a child works on.
pub const FILE: &str = "HOSTLOCK_TEST_FILE";

/// A command that runs this test binary's `child_entry` test as `role` on `file`.
pub fn child(role: &str, file: &Path) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(FILE, file)
        .stdin(Stdio::null());
    cmd
}

/// The role this process was started with, or `None` in a normal test run.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// A setting passed to a child.
pub fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("the child needs {name}"))
}

/// A child process that is killed when this value drops, so a failing test
/// leaves no process behind.
#[derive(Debug)]
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether the process that started this child has exited; a long-running
/// child checks it so that it never outlives its test.
pub fn orphaned(parent: u32) -> bool {
    std::os::unix::process::parent_id() != parent
}

/// The environment variable naming the log a child appends its records to.
pub const LOG: &str = "HOSTLOCK_TEST_LOG";

/// The shared log named by [`LOG`], opened for appending: each write of a
/// whole record lands whole and in order (O_APPEND).
pub fn shared_log() -> std::fs::File {
    std::fs::OpenOptions::new()
        .append(true)
        .open(setting(LOG))
        .expect("open the shared log")
}

/// Sends `signal` (as `kill` takes it, e.g. `-STOP`) to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// Runs `during` while `pid` is stopped (SIGSTOP), then lets it go on
/// (SIGCONT). Should `during` itself wait for the stopped process, a timer
/// lets the process go on after `limit`. Returns what `during` returned.
pub fn while_stopped<R>(pid: u32, limit: std::time::Duration, during: impl FnOnce() -> R) -> R {
    signal(pid, "-STOP");
    let (resume, resume_at) = std::sync::mpsc::channel::<()>();
    let resumer = std::thread::spawn(move || {
        let _ = resume_at.recv_timeout(limit);
        signal(pid, "-CONT");
    });
    let result = during();
    drop(resume);
    resumer.join().expect("the thread that resumes the process");
    result
}
