//! The real `hostlock` binary: every command, the JSON shapes, the exit
//! codes, and `run` holding its lock for the command's lifetime.

mod common;

use common::{BUSY, Env, stderr};

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const NOT_HELD: i32 = 3;
const LEASE_LOST: i32 = 76;

impl Env {
    /// Runs a command that must succeed, and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

/// Checks a failure: its exit code, and one line on stderr that names `what`.
fn fails(out: &Output, code: i32, what: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", stderr(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(what), "{err:?} should name {what:?}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

fn token_and_fence(text: &str) -> (String, u64) {
    let mut token = None;
    let mut fence = None;
    for part in text.split_whitespace() {
        if let Some(t) = part.strip_prefix("token=") {
            token = Some(t.to_owned());
        }
        if let Some(f) = part.strip_prefix("fence=") {
            fence = Some(f.parse().unwrap());
        }
    }
    (token.unwrap(), fence.unwrap())
}

#[test]
fn acquire_get_list_release() {
    let env = Env::new();
    let (token, fence) = token_and_fence(&env.ok(&[
        "acquire",
        "job",
        "--ttl",
        "30s",
        "--value",
        r#"{"who":"worker-1","n":3}"#,
    ]));
    assert_eq!(token.len(), 32);
    let busy = env.run(&["acquire", "job"]);
    fails(&busy, BUSY, "job");

    let got = env.json(&["get", "job", "--json"]);
    assert_eq!(got["key"], "job");
    assert_eq!(got["value"], serde_json::json!({"who": "worker-1", "n": 3}));
    assert_eq!(got["state"], "live");
    assert_eq!(got["fence"], fence);
    assert_eq!(got["has_token"], true);
    assert!(got["expires_at_ms"].as_u64().unwrap() > got["acquired_at_ms"].as_u64().unwrap());
    assert!(got["holder"]["pid"].as_u64().unwrap() > 0);
    assert_eq!(
        got["holder"]["alive"],
        Value::Null,
        "an acquire outlives its process"
    );

    env.ok(&["acquire", "other"]);
    let list = env.json(&["list", "--json"]);
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["job", "other"]);
    let table = env.ok(&["list"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["KEY", "PID", "ALIVE", "EXPIRES", "IN", "FENCE", "VALUE"]
    );
    assert!(table.contains(r#"{"n":3,"who":"worker-1"}"#), "{table}");
    assert!(table.contains("never"), "{table}");

    fails(
        &env.run(&["release", "job", "--token", "not-mine"]),
        NOT_HELD,
        "job",
    );
    env.ok(&["renew", "job", "--token", &token, "--ttl", "5m"]);
    let renewed = env.json(&["get", "job", "--json"]);
    assert!(renewed["expires_at_ms"].as_u64() > got["expires_at_ms"].as_u64());
    env.ok(&["release", "job", "--token", &token]);
    fails(&env.run(&["get", "job"]), NOT_HELD, "job");
    fails(
        &env.run(&["renew", "job", "--token", &token, "--ttl", "5m"]),
        NOT_HELD,
        "job",
    );

    env.ok(&["force-release", "other"]);
    env.ok(&["force-release", "never-was"]);
    assert_eq!(env.json(&["list", "--json"]), serde_json::json!([]));
}

#[test]
fn acquire_prints_json_and_waits() {
    let env = Env::new();
    let first = env.json(&["acquire", "k", "--ttl", "400ms", "--json"]);
    assert_eq!(first["key"], "k");
    assert!(first["token"].as_str().unwrap().len() == 32);
    assert!(first["expires_at_ms"].is_u64());
    // Waits for the first lease to expire.
    let second = env.json(&["acquire", "k", "--wait", "30s", "--json"]);
    assert!(second["fence"].as_u64() > first["fence"].as_u64());
    assert_eq!(second["expires_at_ms"], Value::Null);
    fails(&env.run(&["acquire", "k", "--wait", "50ms"]), BUSY, "k");
}

#[test]
fn cleanup_and_list_all() {
    let env = Env::new();
    env.ok(&["acquire", "short", "--ttl", "1ms"]);
    env.ok(&["acquire", "long"]);
    thread::sleep(Duration::from_millis(20));
    assert_eq!(env.json(&["list", "--json"]).as_array().unwrap().len(), 1);
    let all = env.json(&["list", "--all", "--json"]);
    let short = &all.as_array().unwrap()[1];
    assert_eq!(
        (short["key"].as_str(), short["state"].as_str()),
        (Some("short"), Some("expired"))
    );
    assert_eq!(env.ok(&["cleanup"]).trim(), "removed 1");
    assert_eq!(env.ok(&["cleanup"]).trim(), "removed 0");
}

#[test]
fn run_exports_the_lock_and_exits_with_the_command() {
    let env = Env::new();
    let out = env.run(&[
        "run",
        "job",
        "--",
        "sh",
        "-c",
        "echo $HOSTLOCK_KEY $HOSTLOCK_FENCE ${#HOSTLOCK_TOKEN}; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(fields[0], "job");
    assert!(fields[1].parse::<u64>().unwrap() > 0);
    assert_eq!(fields[2], "32");
    assert_eq!(
        env.json(&["list", "--json"]),
        serde_json::json!([]),
        "released after"
    );
    fails(
        &env.run(&["run", "job", "--", "/no/such/program"]),
        1,
        "/no/such/program",
    );
}

fn spawn_holder(env: &Env, args: &[&str]) -> Child {
    env.command(args).stdout(Stdio::null()).spawn().unwrap()
}

fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn held(env: &Env, key: &str) -> bool {
    env.run(&["get", key]).status.success()
}

#[test]
fn run_holds_the_lock_while_the_command_runs() {
    let env = Env::new();
    let marker = env.dir.path().join("release");
    let script = format!("while [ ! -e {} ]; do sleep 0.02; done", marker.display());
    let mut holder = spawn_holder(
        &env,
        &["run", "job", "--ttl", "2s", "--", "sh", "-c", &script],
    );
    eventually("the run holds the key", || held(&env, "job"));
    let busy = env.run(&["run", "job", "--no-wait", "--", "true"]);
    fails(&busy, BUSY, "job");
    // A waiting run goes once the first ends.
    let mut waiter = spawn_holder(&env, &["run", "job", "--wait", "30s", "--", "true"]);
    std::fs::write(&marker, "").unwrap();
    assert!(holder.wait().unwrap().success());
    assert!(waiter.wait().unwrap().success());
    assert!(!held(&env, "job"));
}

#[test]
fn run_stops_the_command_when_the_lease_is_lost() {
    let env = Env::new();
    let holder = spawn_holder(&env, &["run", "job", "--ttl", "300ms", "--", "sleep", "30"]);
    eventually("the run holds the key", || held(&env, "job"));
    env.ok(&["force-release", "job"]);
    let out = holder.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(LEASE_LOST));
}

#[test]
fn unique_window_runs_once_per_window() {
    let env = Env::new();
    env.ok(&["run", "digest", "--unique-window", "1h", "--", "true"]);
    fails(
        &env.run(&["run", "digest", "--unique-window", "1h", "--", "true"]),
        BUSY,
        "digest",
    );
    let got = env.json(&["get", "digest", "--json"]);
    assert_eq!(got["state"], "live", "held for the window after the run");
}

#[test]
fn bad_input_is_one_line_naming_the_file() {
    let env = Env::new();
    let file = env.file.display().to_string();
    fails(&env.run(&["list"]), 1, &file); // missing file
    // A bad duration is a usage error, which the argument parser reports.
    let out = env.run(&["acquire", "k", "--ttl", "3q"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("'3q' for '--ttl <D>'"),
        "{}",
        stderr(&out)
    );
    fails(&env.run(&["acquire", "k", "--value", "{bad"]), 1, &file);
    fails(&env.run(&["acquire", "", "--ttl", "1s"]), 1, "key");
    let foreign = env.dir.path().join("notes.txt");
    std::fs::write(&foreign, "not a lock file").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hostlock"))
        .args(["--file", foreign.to_str().unwrap(), "list"])
        .output()
        .unwrap();
    fails(&out, 1, "notes.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_hostlock"))
        .arg("list")
        .env_remove("HOSTLOCK_FILE")
        .output()
        .unwrap();
    fails(&out, 1, "HOSTLOCK_FILE");
    assert!(
        !Path::new(&env.file).exists(),
        "nothing created by bad input"
    );
}

#[test]
fn check_and_compact() {
    let env = Env::new();
    env.ok(&["acquire", "k", "--value", "\"kept\""]);
    for i in 0..50 {
        let key = format!("tmp{i}");
        env.ok(&["acquire", &key]);
        env.ok(&["force-release", &key]);
    }
    assert_eq!(env.ok(&["check"]).trim(), "ok: 1 locks");
    let said = env.ok(&["compact"]);
    assert!(
        ["compacted", "nothing to compact"].contains(&said.trim()),
        "{said}"
    );
    assert_eq!(env.json(&["get", "k", "--json"])["value"], "kept");
}

/// One file, two paths: a run through a hard link or a symlink sees the lock
/// a run through the file's own path holds.
#[test]
fn a_hard_link_or_symlink_to_the_file_shares_its_locks() {
    let env = Env::new();
    let mut holder = spawn_holder(&env, &["run", "k", "--", "sleep", "30"]);
    eventually("the run holds the key", || held(&env, "k"));
    let hard = env.dir.path().join("hard.redb");
    let soft = env.dir.path().join("soft.redb");
    std::fs::hard_link(&env.file, &hard).unwrap();
    std::os::unix::fs::symlink(&env.file, &soft).unwrap();
    for other in [&hard, &soft] {
        let out = Command::new(env!("CARGO_BIN_EXE_hostlock"))
            .arg("--file")
            .arg(other)
            .args(["run", "k", "--no-wait", "--", "true"])
            .output()
            .unwrap();
        fails(&out, BUSY, "\"k\"");
    }
    holder.kill().unwrap();
    holder.wait().unwrap();
    // Nothing but the file and its two names.
    assert_eq!(std::fs::read_dir(env.dir.path()).unwrap().count(), 3);
}

/// A lock file deleted or replaced under `run` stops its command: another
/// process opening the path gets another lock space.
#[test]
fn run_stops_the_command_when_the_file_is_replaced() {
    for replace in ["delete", "rename"] {
        let env = Env::new();
        let started = Instant::now();
        let holder = env
            .command(&["run", "job", "--", "sleep", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        eventually("the run holds the key", || held(&env, "job"));
        match replace {
            "delete" => std::fs::remove_file(&env.file).unwrap(),
            _ => {
                let other = env.dir.path().join("other.redb");
                let out = Command::new(env!("CARGO_BIN_EXE_hostlock"))
                    .arg("--file")
                    .arg(&other)
                    .args(["acquire", "x"])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{}", stderr(&out));
                std::fs::rename(&other, &env.file).unwrap();
            }
        }
        let replaced = Instant::now();
        let out = holder.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(LEASE_LOST), "{replace}");
        assert!(stderr(&out).contains("replaced"), "{}", stderr(&out));
        eprintln!(
            "{replace}: stopped {:?} after the change ({:?} in all)",
            replaced.elapsed(),
            started.elapsed()
        );
    }
}

#[test]
fn mode_sets_the_permissions_of_a_new_file() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.ok(&["--mode", "660", "acquire", "k"]);
    let mode = std::fs::metadata(&env.file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
    let out = env.run(&["--mode", "9x", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("octal"), "{}", stderr(&out));
}

/// `list`, `get` and `check` need only read access: a file marked read-only
/// (or another user's) is looked at read-only, and nothing is written.
#[test]
fn looking_needs_only_read_access() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.ok(&["acquire", "k", "--value", "\"v\""]);
    std::fs::set_permissions(&env.file, std::fs::Permissions::from_mode(0o444)).unwrap();
    let before = std::fs::read(&env.file).unwrap();
    assert_eq!(env.json(&["list", "--json"])[0]["key"], "k");
    assert_eq!(env.json(&["get", "k", "--json"])["value"], "v");
    let checked = env.ok(&["check"]);
    assert!(
        checked.contains("read-only") && checked.contains("ok: 1 locks"),
        "{checked}"
    );
    fails(&env.run(&["acquire", "j"]), 1, "read-only");
    assert_eq!(std::fs::read(&env.file).unwrap(), before);
}

/// A zero TTL is a usage error before anything runs or is created.
#[test]
fn a_zero_ttl_is_a_usage_error_before_anything_runs() {
    let env = Env::new();
    let marker = env.dir.path().join("ran");
    let script = format!("touch {}", marker.display());
    for args in [
        &["run", "k", "--ttl", "0s", "--", "sh", "-c", script.as_str()][..],
        &["acquire", "k", "--ttl", "0ms"],
        &["renew", "k", "--token", "t", "--ttl", "0s"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("longer than zero"),
            "{}",
            stderr(&out)
        );
    }
    assert!(!marker.exists(), "the command did not run");
    assert!(!env.file.exists(), "nothing was created");
    // A huge TTL says when the latest storable expiry is, as a date.
    env.ok(&["acquire", "k"]);
    let out = env.run(&["renew", "k", "--token", "t", "--ttl", "99999999999d"]);
    assert!(stderr(&out).contains("2554-07-21"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("tv_sec"), "{}", stderr(&out));
}

/// A key with a newline or an escape sequence neither forges a row nor
/// reaches the terminal raw in `list`; `--json` keeps it exact.
#[test]
fn list_escapes_control_characters_in_keys() {
    let env = Env::new();
    let evil = "job\nforged  1  yes  never  1  null\u{1b}[2J";
    env.ok(&["acquire", evil]);
    env.ok(&["acquire", "ok", "--ttl", "3d"]);
    let table = env.ok(&["list"]);
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(!table.contains('\u{1b}'), "{table:?}");
    assert!(table.contains("job\\nforged"), "{table}");
    assert!(table.contains("\\u{1b}[2J"), "{table}");
    assert!(
        table.contains(" 3d "),
        "a lease of three days shows as 3d: {table}"
    );
    let json = env.json(&["list", "--json"]);
    let keys: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&evil), "{keys:?}");
}

/// Sends `signal` (as kill(1) names it) to `pid`.
fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal} {pid}");
}

/// A command that says (in `marker`) when SIGTERM reached it, takes a
/// second to stop, and then exits 7.
fn slow_to_stop(marker: &Path) -> String {
    format!(
        "trap 'echo term > {m}; sleep 1; exit 7' TERM INT HUP QUIT; echo up > {m}; \
         while :; do sleep 0.05; done",
        m = marker.display()
    )
}

/// `run` forwards SIGTERM, SIGINT, SIGHUP and SIGQUIT to its command and
/// keeps the lock until the command has ended: no second copy can start
/// while the first is still stopping.
#[test]
fn run_forwards_signals_and_holds_the_lock_until_the_command_ends() {
    for sig in ["-TERM", "-INT", "-HUP", "-QUIT"] {
        let env = Env::new();
        let marker = env.dir.path().join("marker");
        let script = slow_to_stop(&marker);
        let holder = spawn_holder(&env, &["run", "job", "--", "sh", "-c", &script]);
        eventually("the command runs", || {
            std::fs::read_to_string(&marker).is_ok_and(|m| m.starts_with("up"))
        });
        signal(holder.id(), sig);
        eventually("the command got the signal", || {
            std::fs::read_to_string(&marker).is_ok_and(|m| m.starts_with("term"))
        });
        // Still stopping: the key is still held.
        let second = env.run(&["run", "job", "--no-wait", "--", "true"]);
        assert_eq!(
            second.status.code(),
            Some(BUSY),
            "{sig}: {}",
            stderr(&second)
        );
        let out = holder.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(7), "{sig}: the command's own exit");
        assert!(!held(&env, "job"), "{sig}: released once the command ended");
    }
}

/// Killing `hostlock` itself leaves the command holding the lock, as with
/// flock(1): the command inherits the hold and frees it when it ends.
#[test]
fn a_killed_run_leaves_its_command_holding_the_lock() {
    let env = Env::new();
    let marker = env.dir.path().join("marker");
    let release = env.dir.path().join("release");
    let script = format!(
        "echo up > {}; while [ ! -e {} ]; do sleep 0.02; done",
        marker.display(),
        release.display()
    );
    let mut holder = spawn_holder(&env, &["run", "job", "--", "sh", "-c", &script]);
    eventually("the command runs", || marker.exists());
    holder.kill().unwrap();
    holder.wait().unwrap();
    for _ in 0..3 {
        let second = env.run(&["run", "job", "--no-wait", "--", "true"]);
        assert_eq!(second.status.code(), Some(BUSY), "{}", stderr(&second));
    }
    std::fs::write(&release, "").unwrap();
    eventually("the lock is free once the command ends", || {
        env.run(&["run", "job", "--no-wait", "--", "true"])
            .status
            .success()
    });
}

/// A run that waited in line gets its key handed over by the release that
/// frees it; killed, it still leaves its command holding the key, past the
/// second in which an unclaimed hand-off would pass to the next waiter.
#[test]
fn a_killed_run_that_waited_for_its_key_leaves_its_command_holding_it() {
    let env = Env::new();
    let dir = env.dir.path();
    let (first_up, first_go) = (dir.join("first-up"), dir.join("first-go"));
    let (second_up, second_go) = (dir.join("second-up"), dir.join("second-go"));
    // Each command ends within a minute on its own, so that a failing test
    // leaves nothing running.
    let script = |up: &Path, go: &Path| {
        format!(
            "echo up > {}; for i in $(seq 3000); do [ -e {} ] && break; sleep 0.02; done",
            up.display(),
            go.display()
        )
    };
    let first_script = script(&first_up, &first_go);
    let mut first = spawn_holder(&env, &["run", "job", "--", "sh", "-c", &first_script]);
    eventually("the first command runs", || first_up.exists());
    let second_script = script(&second_up, &second_go);
    let mut second = spawn_holder(
        &env,
        &[
            "run",
            "job",
            "--wait",
            "60",
            "--",
            "sh",
            "-c",
            &second_script,
        ],
    );
    let watcher: hostlock::FileLocker<serde_json::Value> =
        hostlock::FileLocker::open(&env.file).unwrap();
    eventually("the second run waits in line", || {
        hostlock::RawLeaseLocker::waiters(&watcher, "job").unwrap() == 1
    });
    drop(watcher);
    std::fs::write(&first_go, "").unwrap();
    assert!(first.wait().unwrap().success());
    eventually("the second command runs", || second_up.exists());
    second.kill().unwrap();
    second.wait().unwrap();
    // Longer than the grace of an unclaimed hand-off.
    let third = env.run(&["run", "job", "--wait", "2", "--", "true"]);
    assert_eq!(third.status.code(), Some(BUSY), "{}", stderr(&third));
    std::fs::write(&second_go, "").unwrap();
    eventually("the lock is free once the command ends", || {
        env.run(&["run", "job", "--no-wait", "--", "true"])
            .status
            .success()
    });
}

/// With a lease (--ttl) only `hostlock` renews it, so its command dies with
/// it rather than run on past the lease.
#[test]
fn a_killed_leased_run_takes_its_command_with_it() {
    let env = Env::new();
    let marker = env.dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 30", marker.display());
    let mut holder = spawn_holder(
        &env,
        &["run", "job", "--ttl", "30s", "--", "sh", "-c", &script],
    );
    eventually("the command runs", || {
        std::fs::read_to_string(&marker).is_ok_and(|p| p.ends_with('\n'))
    });
    let pid = std::fs::read_to_string(&marker).unwrap().trim().to_owned();
    holder.kill().unwrap();
    holder.wait().unwrap();
    eventually("the command died with hostlock", || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.contains(") Z "))
    });
    eventually("the lock is free", || {
        env.run(&["run", "job", "--no-wait", "--", "true"])
            .status
            .success()
    });
}

/// `timeout 1 hostlock run …` whose command takes 2 s to stop: the lock is
/// held until the command has stopped.
#[test]
fn run_under_timeout_keeps_the_lock_while_the_command_stops() {
    let env = Env::new();
    let marker = env.dir.path().join("marker");
    let script = format!(
        "trap 'echo term > {m}; sleep 2; exit 0' TERM; echo up > {m}; \
         while :; do sleep 0.05; done",
        m = marker.display()
    );
    let mut timed = Command::new("timeout")
        .arg("1")
        .arg(env!("CARGO_BIN_EXE_hostlock"))
        .env("HOSTLOCK_FILE", &env.file)
        .args(["run", "job", "--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    eventually("the command got SIGTERM", || {
        std::fs::read_to_string(&marker).is_ok_and(|m| m.starts_with("term"))
    });
    let second = env.run(&["run", "job", "--no-wait", "--", "true"]);
    assert_eq!(second.status.code(), Some(BUSY), "{}", stderr(&second));
    timed.wait().unwrap();
    assert!(!held(&env, "job"));
}
