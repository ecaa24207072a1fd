//! A `redis-server` of the test's own, and the re-executed test binary as a
//! child process.

#![allow(dead_code, unreachable_pub)]

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A `redis-server` on a free loopback port, in a temporary directory,
/// writing every change to its append-only file before answering; killed
/// when dropped.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server and waits until it answers `PING`.
    ///
    /// # Panics
    /// If `redis-server` cannot be started: the tests need it.
    pub fn start() -> Server {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let mut server = Server {
            child: None,
            port,
            dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--logfile", "redis.log", "--daemonize", "no"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}); these tests need a real server: install \
                     the Debian package `redis-server` (apt-get install redis-server)"
                )
            });
        self.child = Some(child);
        self.wait_until_ready();
    }

    fn wait_until_ready(&mut self) {
        let started = Instant::now();
        loop {
            if self.ping() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let mut stderr = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = err.read_to_string(&mut stderr);
                }
                panic!(
                    "redis-server exited ({status}) before answering: {stderr}\n{}; install the \
                     Debian package `redis-server` if it is missing",
                    self.log()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "redis-server did not answer PING within 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
            return false;
        };
        redis::cmd("PING").query::<String>(&mut c).is_ok()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<port>`, as errors name the server.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A plain connection, to plant or look at keys.
    pub fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("a connection to the test server")
    }

    /// Stops the server with SIGTERM (it finishes writing its append-only
    /// file), and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "-TERM");
            let _ = child.wait();
        }
    }

    /// Starts the server again, on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A prefix no other locker of this process uses.
pub fn prefix(name: &str) -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    format!("{name}{}:", COUNT.fetch_add(1, Ordering::Relaxed))
}

/// The environment variable that tells a re-executed test binary its role.
pub const ROLE: &str = "HOSTLOCK_REDIS_TEST_ROLE";
/// The URL of the server a child uses.
pub const URL: &str = "HOSTLOCK_REDIS_TEST_URL";
/// The prefix a child uses.
pub const PREFIX: &str = "HOSTLOCK_REDIS_TEST_PREFIX";
/// The file a child appends its records to.
pub const LOG: &str = "HOSTLOCK_REDIS_TEST_LOG";

/// A command that runs this test binary's test `entry` as `role`.
pub fn child(entry: &str, role: &str, url: &str, prefix: &str, log: &Path) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args([entry, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(URL, url)
        .env(PREFIX, prefix)
        .env(LOG, log)
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

/// The log named by [`LOG`], opened for appending: each record written
/// whole lands whole and in order.
pub fn shared_log() -> std::fs::File {
    std::fs::OpenOptions::new()
        .append(true)
        .open(setting(LOG))
        .expect("open the shared log")
}

/// A child process killed when this value drops, so a failing test leaves
/// no process behind.
#[derive(Debug)]
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether the process that started this child has exited.
pub fn orphaned(parent: u32) -> bool {
    std::os::unix::process::parent_id() != parent
}

/// Sends `signal` (as `kill` takes it, e.g. `-KILL`) to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// Waits until `done` holds, for at most `limit`.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}
