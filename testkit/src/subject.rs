//! The lockers a run checks against the model.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hostlock::{
    CleanableLocker, Faults, FileLocker, InspectableLocker, ManualClock, MemoryLocker,
    RenewableLocker, Result,
};

use crate::model::{Model, Outcome, Reply, Seen, reply};
use crate::ops::{Op, TOKENS, lock_of};
use crate::run::Step;

pub(crate) trait Checked:
    CleanableLocker<String> + RenewableLocker<String> + InspectableLocker<String>
{
}

impl<L: CleanableLocker<String> + RenewableLocker<String> + InspectableLocker<String>> Checked
    for L
{
}

/// A locker under test.
pub(crate) struct Subject {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    /// The greatest fence seen so far (row N1).
    pub(crate) last_fence: u64,
}

pub(crate) enum Kind {
    File {
        locker: Option<FileLocker<String>>,
        path: PathBuf,
        clock: ManualClock,
        faults: Faults,
    },
    Memory(MemoryLocker<String>),
}

impl Subject {
    pub(crate) fn file(path: PathBuf, clock: &ManualClock) -> Subject {
        Subject::file_with(path, clock, Faults::new())
    }

    /// A file locker whose storage fails as `faults` is armed.
    pub(crate) fn file_with(path: PathBuf, clock: &ManualClock, faults: Faults) -> Subject {
        let locker = open_model_file(&path, clock, &faults)
            .unwrap_or_else(|e| panic!("cannot open a new lock file: {e}"));
        Subject {
            name: "FileLocker",
            kind: Kind::File {
                locker: Some(locker),
                path,
                clock: clock.clone(),
                faults,
            },
            last_fence: 0,
        }
    }

    pub(crate) fn memory(clock: &ManualClock) -> Subject {
        Subject {
            name: "MemoryLocker",
            kind: Kind::Memory(MemoryLocker::with_clock(clock.clone())),
            last_fence: 0,
        }
    }

    pub(crate) fn locker(&self) -> &dyn Checked {
        match &self.kind {
            Kind::File { locker, .. } => locker.as_ref().expect("the file is open"),
            Kind::Memory(locker) => locker,
        }
    }

    /// Closes the file and opens it again; a memory locker has nothing to
    /// reopen.
    pub(crate) fn reopen(&mut self, here: &Step<'_>) {
        if let Kind::File {
            locker,
            path,
            clock,
            faults,
        } = &mut self.kind
        {
            drop(locker.take());
            let injected = faults.injected();
            let mut opened = open_model_file(path, clock, faults);
            // Opening may write (to recover the file) and fail as armed; once
            // the storage works again, the file must open.
            if opened.is_err() && faults.injected() > injected {
                faults.heal();
                opened = open_model_file(path, clock, faults);
            }
            match opened {
                Ok(opened) => *locker = Some(opened),
                Err(e) => here.fail(self.name, "reopen", &"Ok", &e),
            }
        }
    }

    /// Runs `op` when the clock reads `now`; clock moves and reopening are
    /// the caller's.
    pub(crate) fn perform(&self, op: &Op, now: SystemTime, keys: &[String; 3]) -> Reply {
        let locker = self.locker();
        match *op {
            Op::Acquire {
                key,
                value,
                expires,
                token,
            } => reply(
                locker.acquire(&keys[key], lock_of(value, expires, token, now)),
                Outcome::Bool,
            ),
            Op::Release(key) => reply(locker.release(&keys[key]), Outcome::Bool),
            Op::ForceRelease(key) => reply(locker.force_release(&keys[key]), |()| Outcome::Done),
            Op::Touch { key, token, at } => reply(
                locker.touch(&keys[key], TOKENS[token], at.at(now)),
                Outcome::Bool,
            ),
            Op::ReleaseIfOwner { key, token } => reply(
                locker.release_if_owner(&keys[key], TOKENS[token]),
                Outcome::Bool,
            ),
            Op::Get(key) => reply(locker.get(&keys[key]), Outcome::Lock),
            Op::Exists(key) => reply(locker.exists(&keys[key]), Outcome::Bool),
            Op::Info(key) => reply(locker.info(&keys[key]), |info| {
                Outcome::Info(info.map(|info| Seen::of(info, keys)))
            }),
            Op::List { include_expired } => {
                let all = locker
                    .list(include_expired)
                    .and_then(|all| all.into_iter().collect::<Result<Vec<_>>>());
                reply(all, |all| {
                    Outcome::List(all.into_iter().map(|info| Seen::of(info, keys)).collect())
                })
            }
            Op::Cleanup => reply(locker.cleanup(), Outcome::Count),
            Op::Advance(_) | Op::SetClock(_) | Op::Reopen => Ok(Outcome::Done),
        }
    }

    /// Whether `exists`, `get` and `list` of every key agree with `model`,
    /// whose entries all have this locker's fences.
    pub(crate) fn agrees(
        &self,
        model: &Model,
        subject: usize,
        now: SystemTime,
        keys: &[String; 3],
    ) -> bool {
        let locker = self.locker();
        keys.iter().enumerate().all(|(key, name)| {
            let live = model.live(key, now).map(|entry| entry.lock.clone());
            reply(locker.exists(name), Outcome::Bool) == Ok(Outcome::Bool(live.is_some()))
                && reply(locker.get(name), Outcome::Lock) == Ok(Outcome::Lock(live))
        }) && [false, true].into_iter().all(|include_expired| {
            let op = Op::List { include_expired };
            self.perform(&op, now, keys) == model.inspect(&op, now, subject)
        })
    }

    /// Learns the fence of a lock the last step stored, checking that it is
    /// greater than every fence before (row N1); then compares `exists` and
    /// `get` of every key, and `list` with and without expired entries, with
    /// the model.
    pub(crate) fn check_state(
        &mut self,
        model: &mut Model,
        subject: usize,
        now: SystemTime,
        keys: &[String; 3],
        here: &Step<'_>,
    ) {
        let new: Vec<usize> = model
            .entries
            .iter()
            .filter(|(_, entry)| entry.fences[subject].is_none())
            .map(|(&key, _)| key)
            .collect();
        for key in new {
            let info = self.locker().info(&keys[key]);
            let fence = match &info {
                Ok(Some(info)) if info.fence > self.last_fence => info.fence,
                _ => {
                    let got = reply(info, |info| {
                        Outcome::Info(info.map(|info| Seen::of(info, keys)))
                    });
                    let want = format!("a lock with a fence over {}", self.last_fence);
                    here.fail(self.name, "info of the lock just taken", &want, &got)
                }
            };
            self.last_fence = fence;
            if let Some(entry) = model.entries.get_mut(&key) {
                entry.fences[subject] = Some(fence);
            }
        }
        let locker = self.locker();
        for (key, name) in keys.iter().enumerate() {
            let live = model.live(key, now).map(|entry| entry.lock.clone());
            let want = Ok(Outcome::Bool(live.is_some()));
            let got = reply(locker.exists(name), Outcome::Bool);
            if got != want {
                here.fail(
                    self.name,
                    &format!("exists(key {key}) after the step"),
                    &want,
                    &got,
                );
            }
            let want = Ok(Outcome::Lock(live));
            let got = reply(locker.get(name), Outcome::Lock);
            if got != want {
                here.fail(
                    self.name,
                    &format!("get(key {key}) after the step"),
                    &want,
                    &got,
                );
            }
        }
        for include_expired in [false, true] {
            let op = Op::List { include_expired };
            let want = model.inspect(&op, now, subject);
            let got = self.perform(&op, now, keys);
            if got != want {
                let what = format!("list({include_expired}) after the step");
                here.fail(self.name, &what, &want, &got);
            }
        }
    }
}

pub(crate) fn open_model_file(
    path: &Path,
    clock: &ManualClock,
    faults: &Faults,
) -> Result<FileLocker<String>> {
    FileLocker::builder(path)
        .clock(clock.clone())
        .background_cleanup(false)
        .faults(faults.clone())
        .open()
}
