//! The exit codes, and what each means, as the help and the man page list
//! them.

/// Exit code: an error (bad input, an unusable file); the message is on stderr.
pub(crate) const FAILED: u8 = 1;
/// Exit code: a usage error, as the argument parser reports them.
pub(crate) const USAGE: u8 = 2;
/// Exit code: no such lock, or it is not held with the given token.
pub(crate) const NOT_HELD: u8 = 3;
/// Exit code: the key is held by someone else (like `flock -E`), or a
/// `--unique-window` run already happened within the window. `run -E N`
/// exits `N` instead.
pub(crate) const BUSY: u8 = 75;
/// Exit code: `run` lost its lease while the command ran.
pub(crate) const LEASE_LOST: u8 = 76;

/// One line of the exit status list: the code as shown, and its meaning.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Status {
    pub(crate) code: &'static str,
    pub(crate) meaning: &'static str,
}

const fn status(code: &'static str, meaning: &'static str) -> Status {
    Status { code, meaning }
}

/// Success; for `run`, the command exited 0.
pub(crate) const OK_STATUS: Status = status("0", "success");
/// [`FAILED`].
pub(crate) const FAILED_STATUS: Status = status(
    "1",
    "an error: a bad key or value, a missing, foreign or damaged lock file, \
     a storage error; one line on stderr names the problem",
);
/// [`USAGE`].
pub(crate) const USAGE_STATUS: Status = status(
    "2",
    "a usage error: an unknown command or option, a missing or invalid \
     argument (a bad duration, a zero --ttl)",
);
/// [`NOT_HELD`].
pub(crate) const NOT_HELD_STATUS: Status =
    status("3", "no such lock, or not held with the given token");
/// [`BUSY`], for `acquire`.
pub(crate) const BUSY_STATUS: Status = status(
    "75",
    "busy: the key is held by someone else and was not obtained (not waited \
     for, or the wait ran out)",
);
/// [`BUSY`], for `run`, which can exit another code instead.
pub(crate) const CONFLICT_STATUS: Status = status(
    "75",
    "busy: the key is held by someone else and was not obtained (-n, or the \
     -w wait ran out), or --unique-window ran within its window; the command \
     did not run. -E N exits N instead",
);
/// [`LEASE_LOST`].
pub(crate) const LEASE_LOST_STATUS: Status = status(
    "76",
    "run: the lock was lost while the command ran (its --ttl lease was not \
     renewed in time, it was force-released, or the lock file was replaced); \
     the command was sent SIGTERM",
);
/// Whatever the command of `run` exited with.
pub(crate) const COMMAND_STATUS: Status = status(
    "other",
    "run: the command's own exit status; 128+N if signal N ended it; 1 if \
     the command could not be started",
);
