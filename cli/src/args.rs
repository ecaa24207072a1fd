//! The command line: every command, option and argument, and their help.
//! `--help`, the completion scripts and the man page are all made from
//! these definitions.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::{duration, exit, help};

const ABOUT: &str = "Named, expiring locks in a lock file shared by the processes of a host.

Every command works on one lock file, given with --file or HOSTLOCK_FILE. \
acquire, release and renew manage locks that outlive the command; run holds \
one for the life of a command, in the manner of flock(1), with the same \
options: -w, -n, -c, -E.";

const RUN_ABOUT: &str = "Run a command while holding a lock, as flock(1) does: take KEY, waiting \
for it as long as it takes (at most D with -w D, not at all with -n), run the \
command given after -- (or CMD through `sh -c CMD` with -c), and release KEY \
when the command ends. Exits with the command's exit status.

If KEY is held by someone else and not obtained, the command does not run: \
run says so on stderr (nothing with -q) and exits 75, or N with -E N.

Without --ttl the lock has no expiry, and the command keeps it while it \
lives, even if hostlock is killed. With --ttl D the lock is a lease of D that \
hostlock renews while the command runs, and the command is killed if \
hostlock dies. If the lock is lost all the same (force-released, a lease not \
renewed in time, the lock file deleted or replaced), the command is sent \
SIGTERM and run exits 76. SIGTERM, SIGINT, SIGHUP and SIGQUIT sent to \
hostlock are passed on to the command.";

const COMPLETIONS_ABOUT: &str = "Print a completion script for SHELL on stdout.

Install it where the shell looks for completions, for example: \
`hostlock completions bash > ~/.local/share/bash-completion/completions/hostlock`, \
`hostlock completions zsh > ~/.zfunc/_hostlock` (with ~/.zfunc in fpath), \
`hostlock completions fish > ~/.config/fish/completions/hostlock.fish`.";

const MAN_ABOUT: &str = "Print a man page, in roff, on stdout: hostlock(1), or with COMMAND, \
hostlock-COMMAND(1).

Read it with `hostlock man | man -l -`, or install it: \
`hostlock man > ~/.local/share/man/man1/hostlock.1`.";

/// The heading of the options every command takes.
const GLOBAL: &str = "Global options";

/// The help of KEY.
fn key_help() -> String {
    format!(
        "The lock's name: any text of 1 to {} bytes",
        hostlock::MAX_KEY_LEN
    )
}

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "hostlock",
    version,
    about = help::first_paragraph(ABOUT),
    long_about = help::paragraphs(ABOUT),
    after_help = help::after_help("hostlock"),
)]
pub(crate) struct Cli {
    /// The lock file.
    #[arg(long, env = "HOSTLOCK_FILE", global = true, help_heading = GLOBAL)]
    pub(crate) file: Option<PathBuf>,
    /// The permissions of a lock file this command creates, in octal
    ///
    /// 600 (the default) keeps its locks to its owner,
    /// 660 shares them with its group.
    #[arg(long, global = true, value_parser = parse_mode, value_name = "OCTAL", help_heading = GLOBAL)]
    #[arg(verbatim_doc_comment)]
    pub(crate) mode: Option<u32>,
    /// Open a lock file that another local user could replace
    ///
    /// Such as another user's file in /tmp, or a file in a world-writable
    /// directory. Refused by default, since whoever can replace the file
    /// can split its locks.
    #[arg(long, global = true, verbatim_doc_comment, help_heading = GLOBAL)]
    pub(crate) trust_path: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List the live locks (with --all, also expired ones not yet removed).
    #[command(after_help = help::after_help("list"))]
    List {
        /// Include expired locks and those of holders that are gone.
        #[arg(long)]
        all: bool,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one lock, live or not; exits 3 if there is none.
    #[command(after_help = help::after_help("get"))]
    Get {
        #[arg(help = key_help())]
        key: String,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Take a lock that outlives this command; prints its token and fence.
    #[command(after_help = help::after_help("acquire"))]
    Acquire {
        #[arg(help = key_help())]
        key: String,
        /// Expire after D (default: never).
        #[arg(long, value_name = "D", value_parser = duration::parse_lease, allow_hyphen_values = true)]
        ttl: Option<Duration>,
        /// The value to store, as JSON (default: null).
        #[arg(long)]
        value: Option<String>,
        /// Wait up to D for the key, in line with other waiters (default: no wait)
        #[arg(short, long, value_name = "D", value_parser = duration::parse, allow_hyphen_values = true)]
        wait: Option<Duration>,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Release a lock if it is held with this token.
    #[command(after_help = help::after_help("release"))]
    Release {
        #[arg(help = key_help())]
        key: String,
        /// The token `acquire` printed when it took the lock.
        #[arg(long)]
        token: String,
    },
    /// Remove a lock whoever holds it.
    #[command(after_help = help::after_help("force-release"))]
    ForceRelease {
        #[arg(help = key_help())]
        key: String,
    },
    /// Set a held lock's expiry to D from now, if held with this token.
    #[command(after_help = help::after_help("renew"))]
    Renew {
        #[arg(help = key_help())]
        key: String,
        /// The token `acquire` printed when it took the lock.
        #[arg(long)]
        token: String,
        /// The new expiry, D from now.
        #[arg(long, value_name = "D", value_parser = duration::parse_lease, allow_hyphen_values = true)]
        ttl: Duration,
    },
    /// Remove expired locks and those of holders that are gone.
    #[command(after_help = help::after_help("cleanup"))]
    Cleanup,
    /// Give the file's free space back to the file system.
    #[command(after_help = help::after_help("compact"))]
    Compact,
    /// Verify the whole file: exits 1 if anything is wrong.
    #[command(after_help = help::after_help("check"))]
    Check,
    /// Run a command while holding a lock, like flock(1): exits with the
    /// command's status.
    #[command(
        long_about = help::paragraphs(RUN_ABOUT),
        after_help = help::after_help("run"),
    )]
    Run {
        #[arg(help = key_help())]
        key: String,
        /// Wait at most D for the key (default: as long as it takes).
        #[arg(
            short,
            long,
            value_name = "D",
            value_parser = duration::parse,
            allow_hyphen_values = true,
            conflicts_with = "no_wait",
            visible_alias = "timeout"
        )]
        wait: Option<Duration>,
        /// Do not wait: if the key is held, exit at once.
        #[arg(short, long, visible_aliases = ["nonblock", "nb"])]
        no_wait: bool,
        /// Run CMD through `sh -c CMD`, instead of a command after --.
        #[arg(
            short = 'c',
            long = "command",
            value_name = "CMD",
            conflicts_with = "command"
        )]
        shell_command: Option<String>,
        /// The exit code when the key is held and not obtained.
        #[arg(
            short = 'E',
            long,
            value_name = "N",
            default_value_t = exit::BUSY,
            allow_hyphen_values = true
        )]
        conflict_exit_code: u8,
        /// Print nothing on stderr when the key is busy
        ///
        /// Only the exit code (75, or -E N) says that the key was held and
        /// not obtained. Other errors are still reported on stderr.
        #[arg(short, long, verbatim_doc_comment)]
        quiet: bool,
        /// Hold a lease of D, renewed while the command runs
        ///
        /// Default: no expiry; the lock is held until the command ends.
        /// With a lease, the command is killed if hostlock dies.
        #[arg(long, value_name = "D", value_parser = duration::parse_lease, allow_hyphen_values = true)]
        #[arg(verbatim_doc_comment)]
        ttl: Option<Duration>,
        /// Run the command at most once per window of D
        ///
        /// The key is kept for D after the command ends (also if it
        /// failed); a run within the window exits 75 (or -E N) without
        /// running the command.
        #[arg(
            verbatim_doc_comment,
            long,
            value_name = "D",
            value_parser = duration::parse,
            allow_hyphen_values = true,
            conflicts_with_all = ["wait", "ttl"]
        )]
        unique_window: Option<Duration>,
        /// The command to run and its arguments, after --.
        #[arg(
            last = true,
            value_name = "COMMAND",
            required_unless_present = "shell_command"
        )]
        command: Vec<String>,
    },
    /// Print a completion script for bash, zsh or fish (also elvish,
    /// powershell).
    #[command(
        long_about = help::paragraphs(COMPLETIONS_ABOUT),
        after_help = help::after_help("completions"),
    )]
    Completions {
        /// The shell to complete for.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page, in roff.
    #[command(
        long_about = help::paragraphs(MAN_ABOUT),
        after_help = help::after_help("man"),
    )]
    Man {
        /// The command whose page to print (default: the tool's own page).
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
}

impl Command {
    /// The key the command works on, if any.
    pub(crate) fn key(&self) -> Option<&str> {
        match self {
            Command::List { .. }
            | Command::Cleanup
            | Command::Compact
            | Command::Check
            | Command::Completions { .. }
            | Command::Man { .. } => None,
            Command::Get { key, .. }
            | Command::Acquire { key, .. }
            | Command::Release { key, .. }
            | Command::ForceRelease { key }
            | Command::Renew { key, .. }
            | Command::Run { key, .. } => Some(key),
        }
    }
}

/// An octal file mode such as 600 or 0660.
fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| format!("{text:?} is not an octal file mode such as 600 or 660"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
