//! Group commit: every write of a handle goes to one committer thread, which
//! runs whatever has queued up meanwhile in one write transaction and gives
//! each caller its own result.
//!
//! A lone caller's operation starts at once: a caller that finds no batch
//! running runs its own operation (with whatever is queued) on its own
//! thread, and the thread takes what is queued when it is free, never
//! waiting for more. Under load, the operations that arrive while a commit is
//! syncing queue up and share the next one, so one commit (and its syncs)
//! serves many callers.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::schema::Tables;
use super::store::Store;
use crate::error::{Error, Result};

/// The most operations one transaction takes.
const MAX_BATCH: usize = 256;

/// Where an operation is: queued, taken into a transaction, or given up on
/// by its caller before that.
const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

/// One queued operation, as the committer sees it.
pub(crate) trait Job: Send {
    /// Runs the operation in the transaction; `Ok(true)` if it changed
    /// something. May run more than once (in a new transaction, after
    /// another operation of the batch failed), and must give the same result
    /// for the same state.
    fn run(&mut self, store: &Store, tables: &mut Tables<'_>) -> Result<bool>;

    /// Gives the caller its result: the last run's, if `outcome` (the
    /// transaction's end) is `Ok`.
    fn finish(self: Box<Self>, outcome: Result<()>);

    /// When the caller stops waiting for the write lock.
    fn deadline(&self) -> Instant;

    /// When the caller submitted it.
    fn submitted(&self) -> Instant;

    /// Claims the operation for a transaction; `false` if its caller gave up.
    fn take(&self) -> bool;
}

/// An operation with its result type and the way back to its caller.
struct Typed<R, F> {
    op: F,
    result: Option<R>,
    reply: Sender<Result<R>>,
    state: Arc<AtomicU8>,
    submitted: Instant,
    deadline: Instant,
}

impl<R, F> Job for Typed<R, F>
where
    R: Send,
    F: FnMut(&Store, &mut Tables<'_>) -> Result<(R, bool)> + Send,
{
    fn run(&mut self, store: &Store, tables: &mut Tables<'_>) -> Result<bool> {
        let (result, changed) = (self.op)(store, tables)?;
        self.result = Some(result);
        Ok(changed)
    }

    fn finish(self: Box<Self>, outcome: Result<()>) {
        let Typed { result, reply, .. } = *self;
        let result = outcome.and_then(|()| {
            result.ok_or_else(|| Error::Storage {
                path: Default::default(),
                detail: "an operation ended without a result".to_owned(),
            })
        });
        // A caller that is gone no longer needs it.
        let _ = reply.send(result);
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }

    fn submitted(&self) -> Instant {
        self.submitted
    }

    fn take(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, TAKEN, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

/// The sending end, held by the store.
#[derive(Debug)]
pub(crate) struct Committer {
    jobs: Sender<Box<dyn Job>>,
    queue: Receiver<Box<dyn Job>>,
    // Held by whoever runs a batch: the committer thread, or a caller that
    // found no one committing and runs its own operation (and whatever is
    // queued) without a hand-off.
    role: Arc<Mutex<()>>,
}

impl Committer {
    /// Starts the thread for `store`. It holds the store only while it works
    /// on a batch, so it never keeps it open, and stops once the store is
    /// gone.
    pub(crate) fn start(store: Weak<Store>) -> std::io::Result<Committer> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Box<dyn Job>>();
        let role = Arc::new(Mutex::new(()));
        let (thread_queue, thread_role) = (queue.clone(), Arc::clone(&role));
        thread::Builder::new()
            .name("hostlock-commit".into())
            .spawn(move || run(&store, &thread_queue, &thread_role))?;
        Ok(Committer { jobs, queue, role })
    }

    /// Queues `op` and waits for its result. Waits at most `busy_timeout`
    /// for the write lock; once its transaction has begun, until it ends.
    pub(crate) fn submit<R, F>(
        &self,
        store: &Store,
        path: &std::path::Path,
        busy_timeout: Duration,
        op: F,
    ) -> Result<R>
    where
        R: Send + 'static,
        F: FnMut(&Store, &mut Tables<'_>) -> Result<(R, bool)> + Send + 'static,
    {
        let submitted = Instant::now();
        let deadline = submitted + busy_timeout;
        let (reply, result) = crossbeam_channel::bounded(1);
        let state = Arc::new(AtomicU8::new(QUEUED));
        let job = Typed {
            op,
            result: None,
            reply,
            state: Arc::clone(&state),
            submitted,
            deadline,
        };
        let closed = || Error::Storage {
            path: path.to_owned(),
            detail: "the handle's commit thread has stopped".to_owned(),
        };
        // No one committing: run it here, with whatever queued meanwhile,
        // saving the hand-off to the thread and back.
        let role = match self.role.try_lock() {
            Ok(role) => Some(role),
            Err(TryLockError::Poisoned(role)) => Some(role.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        if let Some(role) = role {
            let mut batch: Vec<Box<dyn Job>> = vec![Box::new(job)];
            drain(&self.queue, &mut batch);
            let finished = store.run_batch(batch);
            drop(role);
            for (job, outcome) in finished {
                job.finish(outcome);
            }
            return result.recv().unwrap_or_else(|_| Err(closed()));
        }
        self.jobs.send(Box::new(job)).map_err(|_| closed())?;
        // The committer answers by the deadline unless the transaction has
        // begun; a little slack covers its own lateness.
        match result.recv_timeout(busy_timeout + Duration::from_millis(50)) {
            Ok(result) => return result,
            Err(RecvTimeoutError::Disconnected) => return Err(closed()),
            Err(RecvTimeoutError::Timeout) => {}
        }
        let gave_up = state
            .compare_exchange(QUEUED, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if gave_up {
            return Err(Error::Busy {
                path: path.to_owned(),
                waited: submitted.elapsed(),
            });
        }
        result.recv().unwrap_or_else(|_| Err(closed()))
    }
}

/// Adds what is queued to `batch`, up to its limit.
fn drain(queue: &Receiver<Box<dyn Job>>, batch: &mut Vec<Box<dyn Job>>) {
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

fn run(store: &Weak<Store>, queue: &Receiver<Box<dyn Job>>, role: &Mutex<()>) {
    while let Ok(first) = queue.recv() {
        let turn = role.lock().unwrap_or_else(PoisonError::into_inner);
        let mut batch = vec![first];
        drain(queue, &mut batch);
        let Some(strong) = store.upgrade() else {
            return;
        };
        let finished = strong.run_batch(batch);
        drop(turn);
        // Let go of the store before answering: a caller that drops its
        // last handle on hearing back closes the file at once.
        drop(strong);
        for (job, outcome) in finished {
            job.finish(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::time::Duration;

    use crate::file::FileLocker;
    use crate::value::Record;
    use crate::{Error, LockValue, Locker};

    fn record(value: &[u8]) -> Record<'_> {
        Record {
            fence: 1,
            acquired: 0,
            pid: 0,
            expires: None,
            session: None,
            token: None,
            value,
        }
    }

    /// Operations queued while the committer is busy share its next
    /// transaction; one that fails there leaves no trace, and the others
    /// commit all the same.
    #[test]
    fn a_failing_operation_leaves_its_batch_intact() {
        let dir = tempfile::tempdir().unwrap();
        let locker: FileLocker<String> = FileLocker::builder(dir.path().join("locks.redb"))
            .background_cleanup(false)
            .open()
            .unwrap();
        let store = locker.store();
        let started = Barrier::new(2);
        std::thread::scope(|s| {
            // Keeps the committer busy while the others queue up.
            s.spawn(|| {
                store
                    .submit(|_, _| {
                        std::thread::sleep(Duration::from_millis(200));
                        Ok(((), false))
                    })
                    .unwrap();
            });
            std::thread::sleep(Duration::from_millis(50));
            let failing = s.spawn(|| {
                started.wait();
                store.submit(|_, tables| {
                    tables.insert("half-done", &record(b"x"))?;
                    Err::<((), bool), _>(Error::invalid("test", "fails after a change"))
                })
            });
            let others: Vec<_> = (0..4)
                .map(|i| {
                    s.spawn(move || {
                        store.submit(move |_, tables| {
                            let key = format!("k{i}");
                            tables.insert(&key, &record(b"v"))?;
                            Ok(((), true))
                        })
                    })
                })
                .collect();
            started.wait();
            let err = failing.join().unwrap().unwrap_err();
            assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
            for other in others {
                other.join().unwrap().unwrap();
            }
        });
        assert!(!locker.exists("half-done").unwrap());
        for i in 0..4 {
            assert!(locker.exists(&format!("k{i}")).unwrap());
        }
        // All of them in fewer commits than operations.
        assert!(locker.store().commits() < 5, "{}", locker.store().commits());
        assert!(
            locker
                .acquire("after", LockValue::new(String::new()))
                .unwrap()
        );
    }
}
