//! `hostlock run` with the habits of flock(1) users: durations in bare or
//! fractional seconds, `-w`, `-n`, `-c`, `-E` and `-q`, and durations that
//! make no sense refused as usage errors, never a panic.

mod common;

use common::{BUSY, Env, stderr};

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const USAGE: i32 = 2;

impl Env {
    /// A `run` holding `key` until [`Holder::release`] or drop.
    fn hold(&self, key: &str) -> Holder {
        let release = self.dir.path().join(format!("release-{key}"));
        let script = format!("while [ ! -e {} ]; do sleep 0.02; done", release.display());
        let child = self
            .command(&["run", key, "--", "sh", "-c", &script])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.run(&["get", key]).status.success() {
            assert!(Instant::now() < deadline, "the holder never took {key:?}");
            thread::sleep(Duration::from_millis(10));
        }
        Holder { child, release }
    }

    /// A file whose existence says a command ran.
    fn marker(&self) -> (PathBuf, String) {
        let marker = self.dir.path().join("ran");
        let script = format!("touch {}", marker.display());
        (marker, script)
    }
}

struct Holder {
    child: Child,
    release: PathBuf,
}

impl Holder {
    fn release(mut self) {
        std::fs::write(&self.release, "").unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.release, "");
        let _ = self.child.wait();
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `args`, which must find the key busy after waiting `at_least`;
/// returns how long it took.
fn waits_then_gives_up(env: &Env, args: &[&str], at_least: Duration) -> Duration {
    let started = Instant::now();
    let out = env.run(args);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(BUSY), "{args:?}: {}", stderr(&out));
    assert!(took >= at_least, "{args:?} gave up after {took:?}");
    // Only a loose bound: a busy machine may be slow to start a process.
    assert!(
        took < at_least + Duration::from_secs(20),
        "{args:?}: {took:?}"
    );
    took
}

#[test]
fn waits_take_bare_and_fractional_seconds() {
    let env = Env::new();
    let _holder = env.hold("job");
    for (wait, at_least) in [
        ("0.3", 300),
        ("1", 1000),
        ("0.25s", 250),
        ("400ms", 400),
        (".2", 200),
    ] {
        let at_least = Duration::from_millis(at_least);
        let took = waits_then_gives_up(&env, &["run", "job", "-w", wait, "--", "true"], at_least);
        eprintln!("-w {wait}: gave up after {took:?}");
    }
    let at_least = Duration::from_millis(300);
    for args in [
        &["run", "job", "--wait", "0.3", "--", "true"][..],
        &["run", "job", "--timeout", "0.3", "--", "true"],
        &["acquire", "job", "-w", "0.3"],
    ] {
        waits_then_gives_up(&env, args, at_least);
    }
}

#[test]
fn a_wait_ends_as_soon_as_the_key_is_free() {
    let env = Env::new();
    let holder = env.hold("job");
    let (marker, script) = env.marker();
    let waiter = env
        .command(&["run", "job", "-w", "30", "-c", &script])
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(200));
    assert!(!marker.exists(), "the waiter waits");
    holder.release();
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(marker.exists());
}

#[test]
fn no_wait_exits_with_the_conflict_code() {
    let env = Env::new();
    let _holder = env.hold("job");
    let (marker, script) = env.marker();
    for flag in ["-n", "--no-wait", "--nonblock", "--nb"] {
        let out = env.run(&["run", "job", flag, "-c", &script]);
        assert_eq!(out.status.code(), Some(BUSY), "{flag}: {}", stderr(&out));
        assert!(stderr(&out).contains("\"job\" is held"), "{}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
    // -E sets the code, with -n or after a wait.
    for (args, code) in [
        (&["-n", "-E", "0"][..], 0),
        (&["-n", "-E", "9"], 9),
        (&["--no-wait", "--conflict-exit-code", "1"], 1),
        (&["-w", "0.1", "-E", "42"], 42),
    ] {
        let mut all = vec!["run", "job"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-c", &script]);
        let out = env.run(&all);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
    }
    assert!(!marker.exists(), "no busy run ran its command");
    // A code beyond what a process can exit with is a usage error.
    for bad in ["256", "-1", "x"] {
        let out = env.run(&["run", "job", "-n", "-E", bad, "--", "true"]);
        assert_eq!(out.status.code(), Some(USAGE), "-E {bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--conflict-exit-code"),
            "{}",
            stderr(&out)
        );
    }
}

/// -E also sets the code of a `--unique-window` run within its window.
#[test]
fn conflict_exit_code_covers_the_unique_window() {
    let env = Env::new();
    let once = ["run", "digest", "--unique-window", "1h"];
    assert!(
        env.command(&once)
            .args(["--", "true"])
            .status()
            .unwrap()
            .success()
    );
    let out = env
        .command(&once)
        .args(["-E", "0", "-q", "--", "false"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

#[test]
fn quiet_silences_busy_and_nothing_else() {
    let env = Env::new();
    let _holder = env.hold("job");
    for args in [
        &["run", "job", "-n", "-q", "--", "true"][..],
        &["run", "job", "--quiet", "-w", "0.1", "--", "true"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(BUSY), "{args:?}");
        assert_eq!(stderr(&out), "", "{args:?}: nothing on stderr");
        assert_eq!(stdout(&out), "", "{args:?}: nothing on stdout");
    }
    // Real errors are still said: a lock file that cannot be, a bad
    // duration, a command that cannot start.
    let unreachable = env.dir.path().join("no/such/dir/locks.redb");
    let out = Command::new(env!("CARGO_BIN_EXE_hostlock"))
        .arg("--file")
        .arg(&unreachable)
        .args(["run", "job", "-q", "-n", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no/such/dir"), "{}", stderr(&out));
    let out = env.run(&["run", "job", "-q", "-w", "abc", "--", "true"]);
    assert_eq!(out.status.code(), Some(USAGE));
    assert!(stderr(&out).contains("--wait"), "{}", stderr(&out));
    let out = env.run(&["run", "free", "-q", "--", "/no/such/program"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/no/such/program"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn command_option_runs_through_sh_with_the_lock_in_its_environment() {
    let env = Env::new();
    let out = env.run(&[
        "run",
        "job",
        "-c",
        "echo \"$HOSTLOCK_KEY $HOSTLOCK_FENCE ${#HOSTLOCK_TOKEN}\"; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let said = stdout(&out);
    let fields: Vec<&str> = said.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{said:?}");
    assert_eq!(fields[0], "job");
    assert!(fields[1].parse::<u64>().unwrap() > 0, "{said:?}");
    assert_eq!(fields[2], "32", "a 32-character token");
    // The shell's own syntax works: a pipeline, a redirection.
    let out = env.run(&["run", "job", "--command", "echo a b c | wc -w 1>&2"]);
    assert!(out.status.success());
    assert_eq!(stderr(&out).trim(), "3");
    assert!(!env.run(&["get", "job"]).status.success(), "released after");
}

#[test]
fn command_option_and_a_command_after_dashes_exclude_each_other() {
    let env = Env::new();
    let (marker, script) = env.marker();
    let out = env.run(&["run", "job", "-c", &script, "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(USAGE), "{}", stderr(&out));
    assert!(stderr(&out).contains("--command"), "{}", stderr(&out));
    // Neither is a usage error too.
    let out = env.run(&["run", "job"]);
    assert_eq!(out.status.code(), Some(USAGE), "{}", stderr(&out));
    assert!(!marker.exists(), "nothing ran");
    assert!(!env.file.exists(), "nothing was created");
}

#[test]
fn durations_that_make_no_sense_are_usage_errors() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (&["run", "k", "-w", "-1", "--", "true"], "--wait"),
        (&["run", "k", "-w", "abc", "--", "true"], "--wait"),
        (&["run", "k", "-w", "1e400", "--", "true"], "--wait"),
        (&["run", "k", "-w", "NaN", "--", "true"], "--wait"),
        (&["run", "k", "-w", "inf", "--", "true"], "--wait"),
        (&["run", "k", "-w", "1.5.2", "--", "true"], "--wait"),
        (
            &["run", "k", "-w", "99999999999999999999d", "--", "true"],
            "--wait",
        ),
        (&["run", "k", "--wait=-0.5", "--", "true"], "--wait"),
        (&["run", "k", "--ttl", "-5", "--", "true"], "--ttl"),
        (&["run", "k", "--ttl", "0", "--", "true"], "--ttl"),
        (&["run", "k", "--ttl", "0.0", "--", "true"], "--ttl"),
        (
            &["run", "k", "--unique-window", "soon", "--", "true"],
            "--unique-window",
        ),
        (&["acquire", "k", "--wait", "-1"], "--wait"),
        (&["acquire", "k", "--ttl", "0"], "--ttl"),
        (&["renew", "k", "--token", "t", "--ttl", "1e3"], "--ttl"),
    ];
    for (args, names) in cases {
        let out = env.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(USAGE), "{args:?}: {err}");
        assert!(err.contains(names), "{args:?} should name {names}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let negative = env.run(&["run", "k", "-w", "-1", "--", "true"]);
    assert!(
        stderr(&negative).contains("negative"),
        "{}",
        stderr(&negative)
    );
    let zero = env.run(&["run", "k", "--ttl", "0", "--", "true"]);
    assert!(
        stderr(&zero).contains("longer than zero"),
        "{}",
        stderr(&zero)
    );
    assert!(!env.file.exists(), "nothing was created");
}

/// Every duration takes bare and fractional seconds, not only `-w`.
#[test]
fn ttls_take_bare_and_fractional_seconds() {
    let env = Env::new();
    let out = env.run(&["acquire", "k", "--ttl", "90", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = got["token"].as_str().unwrap().to_owned();
    let lasts = |env: &Env| {
        let out = env.run(&["get", "k", "--json"]);
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        info["expires_at_ms"].as_i64().unwrap() - now
    };
    let left = lasts(&env);
    assert!((60_000..=90_000).contains(&left), "{left} ms left of 90 s");
    let out = env.run(&["renew", "k", "--token", &token, "--ttl", "1.5h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let left = lasts(&env);
    assert!(
        (5_300_000..=5_400_000).contains(&left),
        "{left} ms left of 1.5 h"
    );
    // A lease of half a second runs out.
    let out = env.run(&["acquire", "short", "--ttl", "0.5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["run", "short", "-w", "30", "--ttl", "0.5", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
