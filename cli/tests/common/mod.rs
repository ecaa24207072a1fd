//! What the tests of the `hostlock` binary share: a lock file in a temporary
//! directory, commands run on it, and the exit code of a busy key.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The exit code of a key held by someone else and not obtained.
pub const BUSY: i32 = 75;

/// A lock file of its own, in a temporary directory that goes with it.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("locks.redb");
        Env { dir, file }
    }

    /// The `hostlock` binary with `args`, working on this lock file.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hostlock"));
        cmd.env("HOSTLOCK_FILE", &self.file).args(args);
        cmd
    }

    /// Runs `hostlock` with `args` to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
