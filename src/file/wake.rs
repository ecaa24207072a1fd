//! Wake-ups between processes: a waiter's handle listens on a Unix datagram
//! socket in the abstract namespace (no file anywhere), named after the lock
//! file's incarnation and the handle's session; a handle that frees a key
//! sends a datagram to the sessions first in that key's queue once its
//! commit is on disk. The listener then wakes the handle's waiters, as its
//! own commits do. A wake-up is a hint: the waiter reads the store to see
//! whether its turn has come, and still looks every few milliseconds, so a
//! lost datagram (a full socket buffer, another network namespace, a name
//! someone else took) only makes a hand-off slower.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

/// The socket name of `session`'s handle on the file of `incarnation`.
fn name(incarnation: u64, session: u64) -> Vec<u8> {
    format!("hostlock/{incarnation:016x}/{session:016x}").into_bytes()
}

fn address(incarnation: u64, session: u64) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(name(incarnation, session))
}

/// A handle's listening socket and the thread that waits on it.
#[derive(Debug)]
pub(crate) struct Listener {
    socket: Arc<UnixDatagram>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Binds the name of `session` on the file of `incarnation`, and calls
    /// `woken` for each datagram that arrives.
    pub(crate) fn start(
        incarnation: u64,
        session: u64,
        woken: impl Fn() + Send + 'static,
    ) -> io::Result<Listener> {
        let socket = Arc::new(UnixDatagram::bind_addr(&address(incarnation, session)?)?);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (socket, stop) = (Arc::clone(&socket), Arc::clone(&stop));
            thread::Builder::new()
                .name("hostlock-wake".into())
                .spawn(move || {
                    let mut buf = [0u8; 16];
                    while socket.recv(&mut buf).is_ok() && !stop.load(Ordering::SeqCst) {
                        woken();
                    }
                })?
        };
        Ok(Listener {
            socket,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // A datagram to itself ends the thread's wait.
        if let Ok(addr) = self.socket.local_addr() {
            let _ = self.socket.send_to_addr(b"stop", &addr);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends a wake-up to the handle of `session` on the file of `incarnation`,
/// if it listens; never blocks.
pub(crate) fn send(incarnation: u64, session: u64) {
    let Ok(addr) = address(incarnation, session) else {
        return;
    };
    thread_local! {
        static SOCKET: Option<UnixDatagram> = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .ok();
    }
    SOCKET.with(|socket| {
        if let Some(socket) = socket {
            let _ = socket.send_to_addr(b"w", &addr);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::{Listener, send};
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_datagram_wakes_the_listener_and_a_drop_stops_it() {
        let (woke, woken) = mpsc::channel();
        let incarnation = 0x5eed_0000_0000_0001;
        let listener = Listener::start(incarnation, 7, move || {
            let _ = woke.send(());
        })
        .expect("bind");
        send(incarnation, 7);
        woken
            .recv_timeout(Duration::from_secs(30))
            .expect("woken by the datagram");
        // No listener under another session's name: nothing happens.
        send(incarnation, 8);
        drop(listener);
    }

    #[test]
    fn a_release_wakes_a_waiting_handle_that_commits_nothing() {
        use crate::file::FileLocker;
        use crate::guard::{LeaseLocker, RawLeaseLocker};
        use std::time::Instant;

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("locks.redb");
        let open = || {
            FileLocker::<u32>::builder(&path)
                .background_cleanup(false)
                .open()
                .expect("open")
        };
        let (holder, waiter) = (open(), open());
        let guard = holder.try_lock("k", 1, None).expect("try").expect("free");
        let ticket = waiter.enqueue("k", None).expect("enqueue");
        assert!(waiter.store().listening_for_wakeups());
        let seen = waiter.store().commits();
        assert!(guard.unlock().expect("unlock"));
        // Only a wake-up moves the waiting handle's count: it committed
        // nothing, and looking on its own changes nothing.
        let deadline = Instant::now() + Duration::from_secs(30);
        while waiter.store().commits() == seen {
            assert!(Instant::now() < deadline, "never woken");
            std::thread::sleep(Duration::from_millis(1));
        }
        waiter.dequeue("k", ticket).expect("dequeue");
    }
}
