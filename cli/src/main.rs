//! `hostlock`: list, inspect, take and release the locks of a hostlock lock
//! file, and run a command while holding one. `docs/cli.md` documents the
//! commands, their JSON output and their exit codes.

mod args;
mod duration;
mod exit;
mod generated;
mod help;
mod render;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode};
use std::thread;
use std::time::{Duration, SystemTime};

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;

use ciborium::Value as Cbor;
use clap::Parser;
use hostlock::{
    CleanableLocker, FileLocker, InspectableLocker, LeaseLocker, LockGuard, Locker, RenewableLocker,
};
use serde_json::json;

use crate::args::{Cli, Command};
use crate::exit::{BUSY, FAILED, LEASE_LOST, NOT_HELD, USAGE};

/// The library's key rules, checked before the file is opened.
fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("invalid key: a key must not be empty".to_owned());
    }
    if key.len() > hostlock::MAX_KEY_LEN {
        return Err(format!(
            "invalid key: a key is at most {} bytes, this one has {}",
            hostlock::MAX_KEY_LEN,
            key.len()
        ));
    }
    Ok(())
}

/// A failure to report: one line on stderr and an exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// A library error, naming the file if the message does not already.
fn failed(path: &Path, e: hostlock::Error) -> Failure {
    let message = e.to_string();
    let shown = path.display().to_string();
    if message.contains(&shown) {
        Failure::new(FAILED, message)
    } else {
        Failure::new(FAILED, format!("{shown}: {message}"))
    }
}

/// Writes generated text (a completion script, a man page) to stdout.
fn emit(out: &mut dyn Write, text: &[u8]) -> Result<u8, Failure> {
    out.write_all(text)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::new(FAILED, format!("cannot write output: {e}")))?;
    Ok(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("hostlock: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn run(cli: Cli) -> Result<u8, Failure> {
    // Completion scripts and man pages need no lock file.
    let uses_file = !matches!(
        cli.command,
        Command::Completions { .. } | Command::Man { .. }
    );
    let path = match cli.file {
        Some(path) => path,
        None if uses_file => {
            return Err(Failure::new(
                FAILED,
                "no lock file given: pass --file PATH or set HOSTLOCK_FILE",
            ));
        }
        None => PathBuf::new(),
    };
    // Bad input is reported with the file, on one line, before the file is
    // opened, so that it creates nothing.
    let invalid = |message: String| Failure::new(FAILED, format!("{}: {message}", path.display()));
    if let Some(key) = cli.command.key() {
        check_key(key).map_err(invalid)?;
    }
    // Only the commands that take a lock may create the file.
    let creates = matches!(cli.command, Command::Acquire { .. } | Command::Run { .. });
    if uses_file && !creates && !path.exists() {
        return Err(invalid("no such lock file".to_owned()));
    }
    let fail = |e| failed(&path, e);
    let builder = || {
        FileLocker::builder(&path)
            .background_cleanup(false)
            .mode(cli.mode.unwrap_or(hostlock::DEFAULT_MODE))
            .trust_path(cli.trust_path)
    };
    let open = || -> Result<FileLocker<Cbor>, Failure> { builder().open().map_err(fail) };
    // The commands that only look work with read access alone.
    let open_to_look = || -> Result<FileLocker<Cbor>, Failure> {
        match builder().open() {
            Err(hostlock::Error::PermissionDenied { .. } | hostlock::Error::ReadOnly { .. }) => {
                builder().read_only(true).open().map_err(fail)
            }
            opened => opened.map_err(fail),
        }
    };
    let out = &mut std::io::stdout().lock();
    let print = |out: &mut dyn Write, text: String| {
        writeln!(out, "{text}")
            .map_err(|e| Failure::new(FAILED, format!("cannot write output: {e}")))
    };
    let not_held =
        |key: &str| Failure::new(NOT_HELD, format!("{key:?} is not held with that token"));
    match cli.command {
        Command::Completions { shell } => emit(out, &generated::completions(shell)),
        Command::Man { command } => {
            let page = generated::man(command.as_deref()).map_err(|e| Failure::new(USAGE, e))?;
            emit(out, &page)
        }
        Command::List { all, json } => {
            let entries = open_to_look()?.list(all).map_err(fail)?;
            // What cannot be shown (a damaged record) is said on stderr, and
            // the rest is listed all the same.
            let mut locks = Vec::with_capacity(entries.len());
            let mut damaged = Vec::new();
            for entry in entries {
                match entry {
                    Ok(info) => locks.push(info),
                    Err(e) => damaged.push(e),
                }
            }
            if json {
                let array: Vec<_> = locks.iter().map(render::lock_json).collect();
                print(out, serde_json::Value::Array(array).to_string())?;
            } else {
                print(out, render::table(&locks, SystemTime::now()))?;
            }
            for e in &damaged {
                eprintln!("hostlock: {}", render::escape(&e.to_string()));
            }
            Ok(if damaged.is_empty() { 0 } else { FAILED })
        }
        Command::Get { key, json } => {
            let Some(info) = open_to_look()?.info(&key).map_err(fail)? else {
                let message = format!("no lock {key:?} in {}", path.display());
                return Err(Failure::new(NOT_HELD, message));
            };
            if json {
                print(out, render::lock_json(&info).to_string())?;
            } else {
                print(out, render::table(&[info], SystemTime::now()))?;
            }
            Ok(0)
        }
        Command::Acquire {
            key,
            ttl,
            value,
            wait,
            json,
        } => {
            let value = match value {
                Some(text) => render::from_json(&text).map_err(invalid)?,
                None => Cbor::Null,
            };
            let locker = open()?;
            // Taken without expiry (bound to this process until kept), so it
            // cannot expire before it is kept; the TTL counts from then.
            let guard = match wait {
                Some(wait) => locker.try_lock_for(&key, value, None, wait),
                None => locker.try_lock(&key, value, None),
            }
            .map_err(fail)?;
            let Some(guard) = guard else {
                let message = format!("{key:?} is held in {}", path.display());
                return Err(Failure::new(BUSY, message));
            };
            let (token, fence) = (guard.token().to_owned(), guard.fence());
            let kept = match ttl {
                Some(ttl) => guard.hold_for(ttl),
                None => guard.persist(),
            };
            if !kept.map_err(fail)? {
                let message = format!("lost {key:?} before it was kept");
                return Err(Failure::new(NOT_HELD, message));
            }
            if json {
                let info = locker.info(&key).map_err(fail)?;
                let expires = info.and_then(|info| info.expires_at);
                let object = json!({
                    "key": key,
                    "token": token,
                    "fence": fence,
                    "expires_at_ms": expires.map(render::millis),
                });
                print(out, object.to_string())?;
            } else {
                print(out, format!("token={token} fence={fence}"))?;
            }
            Ok(0)
        }
        Command::Release { key, token } => {
            if open()?.release_if_owner(&key, &token).map_err(fail)? {
                Ok(0)
            } else {
                Err(not_held(&key))
            }
        }
        Command::ForceRelease { key } => {
            open()?.force_release(&key).map_err(fail)?;
            Ok(0)
        }
        Command::Renew { key, token, ttl } => {
            let at = SystemTime::now()
                .checked_add(ttl)
                .ok_or_else(|| invalid("the TTL is too long".to_owned()))?;
            if open()?.touch(&key, &token, at).map_err(fail)? {
                Ok(0)
            } else {
                Err(not_held(&key))
            }
        }
        Command::Cleanup => {
            let removed = open()?.cleanup().map_err(fail)?;
            print(out, format!("removed {removed}"))?;
            Ok(0)
        }
        Command::Compact => {
            let compacted = open()?.compact().map_err(fail)?;
            let said = if compacted {
                "compacted"
            } else {
                "nothing to compact"
            };
            print(out, said.to_owned())?;
            Ok(0)
        }
        Command::Check => {
            let report = open_to_look()?.check().map_err(fail)?;
            if !report.engine_checked {
                print(
                    out,
                    "read-only: the storage engine's page check needs write access; \
                     checked the locks and indexes only"
                        .to_owned(),
                )?;
            }
            if report.repaired {
                print(out, "repaired damage the storage engine found".to_owned())?;
            }
            for problem in &report.problems {
                print(out, format!("problem: {problem}"))?;
            }
            if report.problems.is_empty() {
                print(out, format!("ok: {} locks", report.locks))?;
                Ok(0)
            } else {
                let count = report.problems.len();
                Err(invalid(format!("{count} problems found")))
            }
        }
        Command::Run {
            key,
            wait,
            no_wait,
            shell_command,
            conflict_exit_code,
            quiet,
            ttl,
            unique_window,
            command,
        } => {
            // `-c CMD` runs through the shell, as flock(1) runs it.
            let command = match shell_command {
                Some(script) => vec!["sh".to_owned(), "-c".to_owned(), script],
                None => command,
            };
            let locker = open()?;
            let guard = if no_wait || unique_window.is_some() {
                locker.try_lock(&key, Cbor::Null, ttl)
            } else {
                match wait {
                    Some(wait) => locker.try_lock_for(&key, Cbor::Null, ttl, wait),
                    None => locker.lock(&key, Cbor::Null, ttl).map(Some),
                }
            }
            .map_err(fail)?;
            let Some(mut guard) = guard else {
                // Busy is an expected outcome under cron: with -q it is
                // said by the exit code alone.
                if quiet {
                    return Ok(conflict_exit_code);
                }
                let why = if unique_window.is_some() {
                    "ran within its window or is running"
                } else {
                    "is held"
                };
                let message = format!("{key:?} {why}; not running the command");
                return Err(Failure::new(conflict_exit_code, message));
            };
            if let Some(ttl) = ttl {
                let interval = (ttl / 3).max(Duration::from_millis(10));
                guard.keep_alive(interval).map_err(fail)?;
            }
            let code = supervise(&locker, &guard, &command, ttl.is_some())?;
            if code == LEASE_LOST {
                // Said already; the lock is not this run's to release.
                drop(guard);
                return Ok(code);
            }
            match unique_window {
                Some(window) => drop(guard.hold_for(window).map_err(fail)?),
                None => drop(guard.unlock().map_err(fail)?),
            }
            // The lock is released and durable. Closing the storage engine
            // would cost a commit and two more syncs, for nothing: the
            // process ends here, and the kernel lets go of its locks of the
            // file as for any process that exits.
            let _ = std::io::stdout().flush();
            std::process::exit(i32::from(code))
        }
    }
}

/// How often `run` reads the lock while its command runs, so that a lock
/// file deleted, replaced or truncated under it stops the command.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The signals that would end `hostlock`, forwarded to the command instead.
const FORWARDED: [i32; 4] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT];

/// Runs the command with the lock's fence and token in its environment,
/// until it exits, and returns the exit code `run` ends with.
///
/// - The command inherits a descriptor of the lock file that keeps this
///   handle's session (and so the lock) alive while the command lives, even
///   if `hostlock` is killed: the lock is released only once the command has
///   ended, as with `flock(1)`.
/// - With a TTL the lease must be renewed, which only `hostlock` does: the
///   command is killed (SIGKILL) if `hostlock` dies, so it never runs on past
///   a lease that no one renews.
/// - SIGTERM, SIGINT, SIGHUP and SIGQUIT sent to `hostlock` are forwarded to
///   the command, and `run` waits for it to end.
/// - A lost lease (or a lock file replaced under it) stops the command with
///   SIGTERM, and `run` exits 76 once the command has ended.
fn supervise(
    locker: &FileLocker<Cbor>,
    guard: &LockGuard<FileLocker<Cbor>, Cbor>,
    command: &[String],
    leased: bool,
) -> Result<u8, Failure> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Failure::new(FAILED, "no command to run"))?;
    let system =
        |what: &str, e: std::io::Error| Failure::new(FAILED, format!("cannot {what}: {e}"));
    // Registered before the command starts, so that no signal is missed.
    let mut signals = Signals::new(FORWARDED).map_err(|e| system("catch signals", e))?;
    let hold = locker
        .inheritable_session()
        .map_err(|e| Failure::new(FAILED, e.to_string()))?;
    let mut process = Process::new(program);
    process
        .args(args)
        .env("HOSTLOCK_KEY", guard.key())
        .env("HOSTLOCK_FENCE", guard.fence().to_string())
        .env("HOSTLOCK_TOKEN", guard.token());
    if leased {
        die_with_parent(&mut process);
    }
    let spawned = process.spawn();
    drop(hold);
    let mut child =
        spawned.map_err(|e| Failure::new(FAILED, format!("cannot run {program:?}: {e}")))?;
    let pid = rustix::process::Pid::from_child(&child);
    // Signals go through a pidfd where the kernel has them (Linux 5.3): once
    // the command has been reaped, its pid may name another process, its
    // pidfd never does.
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok();
    let send = |signal: i32| {
        if let Some(signal) = rustix::process::Signal::from_named_raw(signal) {
            let _ = match &pidfd {
                Some(pidfd) => rustix::process::pidfd_send_signal(pidfd, signal),
                None => rustix::process::kill_process(pid, signal),
            };
        }
    };
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let signal_handle = signals.handle();
    let (status, lost) = thread::scope(|scope| {
        scope.spawn(|| {
            for signal in signals.forever() {
                send(signal);
            }
        });
        let watcher = scope.spawn(move || watch(guard, program, &stopped, send));
        // Waits for the command without polling: its exit is seen at once.
        let status = child.wait();
        signal_handle.close();
        drop(stop);
        let lost = watcher.join().unwrap_or(false);
        (status, lost)
    });
    let status = status.map_err(|e| system(&format!("wait for {program:?}"), e))?;
    if lost {
        return Ok(LEASE_LOST);
    }
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(FAILED),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(FAILED),
        (None, None) => FAILED,
    })
}

/// Watches the lease while the command runs, until `stopped` disconnects:
/// reads the lock every `CHECK_EVERY`, and on a loss says so and sends the
/// command SIGTERM. Returns whether the lease was lost.
fn watch(
    guard: &LockGuard<FileLocker<Cbor>, Cbor>,
    program: &str,
    stopped: &crossbeam_channel::Receiver<()>,
    send: impl Fn(i32),
) -> bool {
    let mut checked = std::time::Instant::now();
    loop {
        match stopped.recv_timeout(Duration::from_millis(20)) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            _ => return false,
        }
        if checked.elapsed() >= CHECK_EVERY {
            // A loss it finds shows in `lost()`; a busy file is looked at again.
            let _ = guard.check();
            checked = std::time::Instant::now();
        }
        if let Some(why) = guard.lost() {
            eprintln!(
                "hostlock: the lease on {:?} was lost ({why}); sending SIGTERM to {program:?}",
                guard.key()
            );
            send(SIGTERM);
            // Wait for the command to end; the caller reaps it.
            let _ = stopped.recv();
            return true;
        }
    }
}

/// Makes the command get SIGKILL when this process dies, however it dies
/// (Linux's parent-death signal), and not start at all if this process has
/// died already.
#[allow(unsafe_code)]
fn die_with_parent(process: &mut Process) {
    use std::os::unix::process::CommandExt;
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: it makes two system calls
    // (prctl and getppid, through rustix's raw system calls), and allocates
    // nothing but the error it may return.
    unsafe {
        process.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            Ok(())
        });
    }
}
