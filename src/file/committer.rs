//! Group commit: the writes of a handle's threads share write transactions,
//! and each caller gets its own result.
//!
//! A lone caller's operation starts at once: a caller that finds no batch
//! running runs its own operation (with whatever is queued) on its own
//! thread. Otherwise it queues the operation and sleeps; the committer
//! thread takes what is queued once the running batch ends. Under load, the
//! operations that arrive while a commit is syncing queue up and share the
//! next one, so one commit (and its syncs) serves many callers. A batch waits
//! briefly only for callers that recent batches say are about to come back
//! (see [`Shared::fill`]).

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, TryLockError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};

use super::schema::Tables;
use super::store::Store;
use crate::error::{Error, Result};

/// The most operations one transaction takes.
const MAX_BATCH: usize = 256;

/// The longest a batch waits for callers expected back.
const MAX_LINGER: Duration = Duration::from_micros(500);

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

/// Where a caller waits for its result.
///
/// A mutex and a condition variable rather than a channel: a waiting caller
/// sleeps at once instead of spinning first, which leaves the cores to the
/// transaction and to the callers that are about to queue the next batch.
struct Reply<R> {
    slot: Mutex<Answer<R>>,
    ready: Condvar,
    /// The task awaiting the answer, for an operation sent from async code.
    #[cfg(feature = "tokio")]
    waker: Mutex<Option<std::task::Waker>>,
}

enum Answer<R> {
    Waiting,
    Given(Result<R>),
    /// The operation was dropped without an answer: the thread that held it
    /// is gone.
    Lost,
}

impl<R> Reply<R> {
    fn new() -> Arc<Reply<R>> {
        Arc::new(Reply {
            slot: Mutex::new(Answer::Waiting),
            ready: Condvar::new(),
            #[cfg(feature = "tokio")]
            waker: Mutex::new(None),
        })
    }

    fn answer(&self, answer: Answer<R>) {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*slot, Answer::Waiting) {
            *slot = answer;
        }
        drop(slot);
        self.ready.notify_one();
        #[cfg(feature = "tokio")]
        if let Some(waker) = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            waker.wake();
        }
    }

    /// The answer, if it has come; otherwise registers the task to wake.
    #[cfg(feature = "tokio")]
    fn poll_answer(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Answer<R>> {
        // The waker first, then the look: an answer given in between finds
        // the waker, or shows in the look.
        *self.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*slot, Answer::Waiting) {
            return std::task::Poll::Pending;
        }
        std::task::Poll::Ready(std::mem::replace(&mut *slot, Answer::Lost))
    }

    /// Waits until the answer comes or `until` passes (`None`: for good).
    /// `None` if it has not come by then.
    fn wait(&self, until: Option<Instant>) -> Option<Answer<R>> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if !matches!(*slot, Answer::Waiting) {
                return Some(std::mem::replace(&mut *slot, Answer::Lost));
            }
            slot = match until {
                None => self
                    .ready
                    .wait(slot)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(until) => {
                    let left = until.checked_duration_since(Instant::now())?;
                    self.ready
                        .wait_timeout(slot, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

/// An operation with its result type and the way back to its caller.
struct Typed<R, F> {
    op: F,
    result: Option<R>,
    reply: Option<Arc<Reply<R>>>,
    state: Arc<AtomicU8>,
    submitted: Instant,
    deadline: Instant,
}

impl<R, F> Typed<R, F> {
    /// The job of `op`, submitted now, with the reply its caller waits on
    /// and the state its caller may abandon it through.
    fn new(op: F, busy_timeout: Duration) -> (Typed<R, F>, Arc<Reply<R>>, Arc<AtomicU8>) {
        let submitted = Instant::now();
        let reply = Reply::new();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let job = Typed {
            op,
            result: None,
            reply: Some(Arc::clone(&reply)),
            state: Arc::clone(&state),
            submitted,
            deadline: submitted + busy_timeout,
        };
        (job, reply, state)
    }
}

/// The error of an operation whose answer never came.
fn stopped(path: &std::path::Path) -> Error {
    Error::Storage {
        path: path.to_owned(),
        detail: "the handle's commit thread has stopped".to_owned(),
    }
}

impl<R, F> Job for Typed<R, F>
where
    R: Send,
    F: FnMut(&Store, &mut Tables<'_>) -> Result<(R, bool)> + Send,
{
    fn run(&mut self, store: &Store, tables: &mut Tables<'_>) -> Result<bool> {
        // An operation runs the caller's code (its clock): a panic there
        // fails that operation alone, and the batch and the thread go on.
        let op = &mut self.op;
        let ran = panic::catch_unwind(AssertUnwindSafe(|| op(store, tables)));
        let (result, changed) = ran.unwrap_or_else(|payload| {
            Err(Error::Panicked {
                detail: panic_message(&*payload),
            })
        })?;
        self.result = Some(result);
        Ok(changed)
    }

    fn finish(mut self: Box<Self>, outcome: Result<()>) {
        let result = self.result.take();
        let result = outcome.and_then(|()| {
            result.ok_or_else(|| Error::Storage {
                path: Default::default(),
                detail: "an operation ended without a result".to_owned(),
            })
        });
        if let Some(reply) = self.reply.take() {
            reply.answer(Answer::Given(result));
        }
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

impl<R, F> Drop for Typed<R, F> {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            reply.answer(Answer::Lost);
        }
    }
}

/// What a panic said, for an error message.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// The sending end, held by the store. Dropping it (with the store) stops
/// the thread and joins it, so no thread of a closed handle touches the file.
#[derive(Debug)]
pub(crate) struct Committer {
    jobs: Option<Sender<Box<dyn Job>>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Disconnecting the queue wakes the thread, which then returns.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            // The thread itself may drop the last reference to the store
            // (after its batch); it is on its way out, and cannot join itself.
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// What the callers and the committer thread share.
#[derive(Debug)]
struct Shared {
    queue: Receiver<Box<dyn Job>>,
    // Held by whoever runs a batch: the committer thread, or a caller that
    // found no one committing and runs its own operation (and whatever is
    // queued) without a hand-off.
    role: Mutex<()>,
    // Callers between the start and the end of `submit`.
    inside: AtomicUsize,
    // How many callers the recent batches served or saw waiting: how many
    // may come back for the next one.
    expected: AtomicUsize,
    // How long the last batch took, in nanoseconds, waits for the write lock
    // included.
    last_batch: AtomicU64,
}

impl Shared {
    /// Fills `batch` from the queue. When recent batches served more callers
    /// than are here, it waits a little for them: a caller that has just had
    /// its answer often comes straight back with its next operation, and one
    /// transaction for all of them costs less than one for each. The wait is
    /// bounded by a fraction of the last batch's time, and a lone caller
    /// never waits.
    fn fill(&self, batch: &mut Vec<Box<dyn Job>>) {
        drain(&self.queue, batch);
        let inside = self.inside.load(Ordering::SeqCst);
        let expected = self.expected.load(Ordering::SeqCst).max(inside);
        if batch.len() < expected && batch.len() < MAX_BATCH {
            let last = Duration::from_nanos(self.last_batch.load(Ordering::SeqCst));
            let until = Instant::now() + (last / 4).min(MAX_LINGER);
            while batch.len() < expected && Instant::now() < until {
                thread::yield_now();
                drain(&self.queue, batch);
            }
        }
        // Forgets a caller per batch that did not come back, so a load that
        // has gone stops costing waits within a few transactions.
        let seen = batch.len().max(self.inside.load(Ordering::SeqCst));
        self.expected
            .store(seen.max(expected.saturating_sub(1)), Ordering::SeqCst);
    }

    fn run_batch(
        &self,
        store: &Store,
        batch: Vec<Box<dyn Job>>,
    ) -> Vec<(Box<dyn Job>, Result<()>)> {
        let started = Instant::now();
        let finished = store.run_batch(batch);
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_batch.store(took, Ordering::SeqCst);
        finished
    }
}

/// Counts a caller in `submit` while it lives.
struct Inside<'a>(&'a AtomicUsize);

impl<'a> Inside<'a> {
    fn enter(count: &'a AtomicUsize) -> Inside<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Inside(count)
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Committer {
    /// Starts the thread for `store`. It holds the store only while it works
    /// on a batch, so it never keeps it open, and stops once the store is
    /// gone.
    pub(crate) fn start(store: Weak<Store>) -> std::io::Result<Committer> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Box<dyn Job>>();
        let shared = Arc::new(Shared {
            queue,
            role: Mutex::new(()),
            inside: AtomicUsize::new(0),
            expected: AtomicUsize::new(0),
            last_batch: AtomicU64::new(0),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("hostlock-commit".into())
            .spawn(move || run(&store, &thread_shared))?;
        Ok(Committer {
            jobs: Some(jobs),
            shared,
            thread: Some(thread),
        })
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
        let _inside = Inside::enter(&self.shared.inside);
        let (job, reply, state) = Typed::new(op, busy_timeout);
        let (submitted, deadline) = (job.submitted, job.deadline);
        let closed = || stopped(path);
        let answered = |answer| match answer {
            Answer::Given(result) => result,
            Answer::Waiting | Answer::Lost => Err(closed()),
        };
        // No one committing: run it here, with whatever queued meanwhile,
        // saving the hand-off to the thread and back.
        let role = match self.shared.role.try_lock() {
            Ok(role) => Some(role),
            Err(TryLockError::Poisoned(role)) => Some(role.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        if let Some(role) = role {
            let mut batch: Vec<Box<dyn Job>> = vec![Box::new(job)];
            self.shared.fill(&mut batch);
            let finished = self.shared.run_batch(store, batch);
            drop(role);
            for (job, outcome) in finished {
                job.finish(outcome);
            }
            return reply.wait(None).map_or_else(|| Err(closed()), answered);
        }
        let jobs = self.jobs.as_ref().ok_or_else(closed)?;
        jobs.send(Box::new(job)).map_err(|_| closed())?;
        // The committer answers by the deadline unless the transaction has
        // begun; a little slack covers its own lateness.
        if let Some(answer) = reply.wait(Some(deadline + Duration::from_millis(50))) {
            return answered(answer);
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
        reply.wait(None).map_or_else(|| Err(closed()), answered)
    }
}

/// An operation sent from async code, whose answer is awaited rather than
/// waited for. Dropping it leaves the operation to run all the same.
#[cfg(feature = "tokio")]
pub(crate) struct Pending<R> {
    reply: Arc<Reply<R>>,
    state: Arc<AtomicU8>,
    submitted: Instant,
    deadline: Instant,
    path: std::path::PathBuf,
}

#[cfg(feature = "tokio")]
impl<R> Pending<R> {
    /// The operation's result. Like [`Committer::submit`], gives up with
    /// [`Error::Busy`] if the operation's transaction has not begun by the
    /// busy timeout.
    pub(crate) async fn answer(self) -> Result<R> {
        let slack = tokio::time::Instant::from_std(self.deadline + Duration::from_millis(50));
        tokio::select! {
            answer = Answered(&self.reply) => return self.answered(answer),
            () = tokio::time::sleep_until(slack) => {}
        }
        let gave_up = self
            .state
            .compare_exchange(QUEUED, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if gave_up {
            return Err(Error::Busy {
                path: self.path.clone(),
                waited: self.submitted.elapsed(),
            });
        }
        let answer = Answered(&self.reply).await;
        self.answered(answer)
    }

    fn answered(&self, answer: Answer<R>) -> Result<R> {
        match answer {
            Answer::Given(result) => result,
            Answer::Waiting | Answer::Lost => Err(stopped(&self.path)),
        }
    }
}

/// The future of a [`Reply`]'s answer.
#[cfg(feature = "tokio")]
struct Answered<'a, R>(&'a Reply<R>);

#[cfg(feature = "tokio")]
impl<R> std::future::Future for Answered<'_, R> {
    type Output = Answer<R>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Answer<R>> {
        self.0.poll_answer(cx)
    }
}

#[cfg(feature = "tokio")]
impl Committer {
    /// Runs `op` here, at once, if no batch is running and none is queued
    /// (a lone caller); otherwise gives it back. What `submit` does for a
    /// lone blocking caller, for an async one whose thread may block (the
    /// caller makes sure of that).
    pub(crate) fn run_if_alone<R, F>(
        &self,
        store: &Store,
        path: &std::path::Path,
        busy_timeout: Duration,
        op: F,
    ) -> std::result::Result<Result<R>, F>
    where
        R: Send + 'static,
        F: FnMut(&Store, &mut Tables<'_>) -> Result<(R, bool)> + Send + 'static,
    {
        let role = match self.shared.role.try_lock() {
            Ok(role) => role,
            Err(TryLockError::Poisoned(role)) => role.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(op),
        };
        if !self.shared.queue.is_empty() {
            return Err(op);
        }
        let (job, reply, _) = Typed::new(op, busy_timeout);
        let finished = self.shared.run_batch(store, vec![Box::new(job)]);
        drop(role);
        for (job, outcome) in finished {
            job.finish(outcome);
        }
        Ok(match reply.wait(None) {
            Some(Answer::Given(result)) => result,
            _ => Err(stopped(path)),
        })
    }

    /// Whether a batch is running or queued: a caller would wait.
    pub(crate) fn busy(&self) -> bool {
        !self.shared.queue.is_empty() || self.shared.role.try_lock().is_err()
    }

    /// Queues `op` for the committer thread and returns at once: the caller
    /// awaits the answer, or drops it and lets the operation run regardless.
    /// Never runs a batch on the caller's thread, which may be a runtime's.
    pub(crate) fn send<R, F>(
        &self,
        path: &std::path::Path,
        busy_timeout: Duration,
        op: F,
    ) -> Result<Pending<R>>
    where
        R: Send + 'static,
        F: FnMut(&Store, &mut Tables<'_>) -> Result<(R, bool)> + Send + 'static,
    {
        let (job, reply, state) = Typed::new(op, busy_timeout);
        let (submitted, deadline) = (job.submitted, job.deadline);
        let closed = || stopped(path);
        let jobs = self.jobs.as_ref().ok_or_else(closed)?;
        jobs.send(Box::new(job)).map_err(|_| closed())?;
        Ok(Pending {
            reply,
            state,
            submitted,
            deadline,
            path: path.to_owned(),
        })
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

fn run(store: &Weak<Store>, shared: &Shared) {
    let queue = &shared.queue;
    let mut ready = Select::new();
    ready.recv(queue);
    loop {
        // Waits for work without taking it: until this thread has the role,
        // a caller that runs a batch of its own takes everything queued.
        ready.ready();
        let turn = shared.role.lock().unwrap_or_else(PoisonError::into_inner);
        let mut batch = match queue.try_recv() {
            Ok(first) => vec![first],
            // A caller with a batch of its own took it all first.
            Err(TryRecvError::Empty) => continue,
            Err(TryRecvError::Disconnected) => return,
        };
        shared.fill(&mut batch);
        let Some(strong) = store.upgrade() else {
            return;
        };
        let finished = shared.run_batch(&strong, batch);
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
    use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier, Mutex};
    use std::time::{Duration, Instant};

    use super::{Job, MAX_BATCH, QUEUED, Reply, Shared, Typed};
    use crate::file::FileLocker;
    use crate::value::Record;
    use crate::{Error, LockValue, Locker};

    fn shared(expected: usize) -> (crossbeam_channel::Sender<Box<dyn Job>>, Shared) {
        let (jobs, queue) = crossbeam_channel::unbounded();
        let shared = Shared {
            queue,
            role: Mutex::new(()),
            inside: AtomicUsize::new(0),
            expected: AtomicUsize::new(expected),
            last_batch: AtomicU64::new(0),
        };
        (jobs, shared)
    }

    type Op = fn(
        &crate::file::store::Store,
        &mut crate::file::schema::Tables<'_>,
    ) -> Result<((), bool), Error>;

    fn typed(reply: Arc<Reply<()>>, deadline: Instant) -> Typed<(), Op> {
        Typed {
            op: |_, _| Ok(((), false)),
            result: None,
            reply: Some(reply),
            state: Arc::new(AtomicU8::new(QUEUED)),
            submitted: Instant::now(),
            deadline,
        }
    }

    fn job() -> Box<dyn Job> {
        Box::new(typed(Reply::new(), Instant::now() + Duration::from_secs(1)))
    }

    /// A batch takes everything queued, and remembers how many callers it
    /// served; the expectation then falls by one per batch that finds fewer.
    #[test]
    fn batches_expect_the_callers_of_recent_ones() {
        let (jobs, shared) = shared(0);
        for _ in 0..7 {
            jobs.send(job()).unwrap();
        }
        let mut batch = vec![job()];
        shared.fill(&mut batch);
        assert_eq!(batch.len(), 8);
        assert_eq!(shared.expected.load(Ordering::SeqCst), 8);
        for left in (1..8).rev() {
            let mut lone = vec![job()];
            shared.fill(&mut lone);
            assert_eq!(lone.len(), 1);
            assert_eq!(shared.expected.load(Ordering::SeqCst), left);
        }
        // Callers still inside `submit` count as expected too.
        shared.inside.store(3, Ordering::SeqCst);
        let mut batch = vec![job()];
        shared.fill(&mut batch);
        assert_eq!(shared.expected.load(Ordering::SeqCst), 3);
    }

    /// A caller whose operation is dropped unanswered (its thread gone)
    /// hears so instead of waiting for good.
    #[test]
    fn a_dropped_operation_answers_its_caller() {
        let reply = Reply::new();
        let typed = typed(Arc::clone(&reply), Instant::now());
        assert!(reply.wait(Some(Instant::now())).is_none(), "no answer yet");
        drop(typed);
        assert!(matches!(reply.wait(None), Some(super::Answer::Lost)));
    }

    /// No batch is larger than the limit, however many callers are queued.
    #[test]
    fn a_batch_stops_at_its_limit() {
        let (jobs, shared) = shared(0);
        for _ in 0..MAX_BATCH + 10 {
            jobs.send(job()).unwrap();
        }
        let mut batch = vec![job()];
        shared.fill(&mut batch);
        assert_eq!(batch.len(), MAX_BATCH);
        assert_eq!(shared.queue.len(), 11);
    }

    fn record(value: &[u8]) -> Record<'_> {
        Record {
            fence: 1,
            acquired: 0,
            pid: 0,
            expires: None,
            session: None,
            origin: None,
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
