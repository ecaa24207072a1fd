//! Operation sequences run on the lockers and the model side by side.

use std::fmt;
use std::path::Path;
use std::time::SystemTime;

use hostlock::{Clock, Fault, Faults, MAX_KEY_LEN, ManualClock};

use crate::model::Model;
use crate::ops::{Op, decode_ops, start};
use crate::subject::Subject;

/// Decodes `bytes` into a sequence of operations (see [`decode_ops`]) and
/// runs it as [`run_ops`] does.
pub fn ops_model(dir: &Path, bytes: &[u8]) {
    run_ops(dir, &decode_ops(bytes));
}

/// Runs `ops`, on three keys (two short ones and one of [`MAX_KEY_LEN`]
/// bytes), on a `FileLocker` in `dir` (which must not hold a file named
/// `model.redb`), on a `MemoryLocker`, and on the model of
/// `docs/semantics.md`.
///
/// Panics, naming the step and both results, when a locker's result differs
/// from the model's, or when after a step a locker's `exists`, `get` and
/// `list` of every key differ from the model's state.
pub fn run_ops(dir: &Path, ops: &[Op]) {
    let keys = ["a".to_owned(), "b".to_owned(), "k".repeat(MAX_KEY_LEN)];
    let clock = ManualClock::new(start());
    let mut subjects = [
        Subject::file(dir.join("model.redb"), &clock),
        Subject::memory(&clock),
    ];
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        let here = Step {
            index: step,
            op,
            ops,
        };
        let reading = clock.now();
        let expected = model.apply(op, reading);
        for (i, subject) in subjects.iter_mut().enumerate() {
            let want = expected.reply(&model, op, reading, i);
            let got = subject.perform(op, reading, &keys);
            if got != want {
                here.fail(subject.name, "result", &want, &got);
            }
        }
        move_clock(&clock, op, reading);
        if let Op::Reopen = op {
            for subject in &mut subjects {
                subject.reopen(&here);
            }
        }
        let reading = clock.now();
        for (i, subject) in subjects.iter_mut().enumerate() {
            subject.check_state(&mut model, i, reading, &keys, &here);
        }
    }
}

/// Like [`ops_model`] on a `FileLocker` alone, whose storage fails before
/// some steps: the first byte seeds the choice of steps, and of the write or
/// sync that fails (as a full disk or an I/O error). The storage works again
/// after each step.
///
/// A step whose storage failed must return an error, and leave the state the
/// model had before it (for an acquire, the expired entry it would replace
/// may be gone); a release, renewal or cleanup may instead have taken effect
/// whole (`docs/design.md`, "Storage failures"). Reopening under a
/// failure may fail, and must then succeed once the storage works. Every
/// other step must agree with the model, as in [`ops_model`].
pub fn ops_faults(dir: &Path, bytes: &[u8]) {
    let Some((&seed, rest)) = bytes.split_first() else {
        return;
    };
    let ops = decode_ops(rest);
    let keys = ["a".to_owned(), "b".to_owned(), "k".repeat(MAX_KEY_LEN)];
    let clock = ManualClock::new(start());
    let faults = Faults::new();
    let mut subject = Subject::file_with(dir.join("faults.redb"), &clock, faults.clone());
    let mut model = Model::default();
    let mut dice = Dice(u64::from(seed) << 32 | 0x9e37_79b9);
    for (step, op) in ops.iter().enumerate() {
        let here = Step {
            index: step,
            op,
            ops: &ops,
        };
        let reading = clock.now();
        let before = model.clone();
        let expected = model.apply(op, reading);
        let injected = faults.injected();
        dice.arm(&faults);
        let got = subject.perform(op, reading, &keys);
        if let Op::Reopen = op {
            subject.reopen(&here);
        }
        faults.heal();
        let failed = faults.injected() > injected && !matches!(op, Op::Reopen);
        if failed && got.is_err() {
            let may_have_landed = !matches!(op, Op::Acquire { .. });
            // A failed acquire's lock is taken out again should it have
            // landed, and with it may go the expired entry it replaced: as
            // good as none.
            let mut expired_gone = before.clone();
            if let Op::Acquire { key, .. } = *op
                && before.live(key, reading).is_none()
            {
                expired_gone.entries.remove(&key);
            }
            if subject.agrees(&before, 0, reading, &keys) {
                model = before;
            } else if subject.agrees(&expired_gone, 0, reading, &keys) {
                model = expired_gone;
            } else if !may_have_landed || !subject.agrees(&model, 0, reading, &keys) {
                here.fail(
                    subject.name,
                    "state after a storage failure",
                    &"the state before the step, or (not for an acquire) after it",
                    &got,
                );
            }
        } else {
            let want = expected.reply(&model, op, reading, 0);
            if got != want {
                here.fail(subject.name, "result", &want, &got);
            }
        }
        move_clock(&clock, op, reading);
        let reading = clock.now();
        subject.check_state(&mut model, 0, reading, &keys, &here);
    }
}

/// Moves the clock as `op` says, if it is a clock move; the clock read
/// `reading` before the step.
pub(crate) fn move_clock(clock: &ManualClock, op: &Op, reading: SystemTime) {
    match op {
        Op::Advance(by) => clock.advance(*by),
        Op::SetClock(when) => clock.set(when.at(reading)),
        _ => {}
    }
}

/// The choice of failures in [`ops_faults`]: a small xorshift generator.
pub(crate) struct Dice(u64);

impl Dice {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Before one step in three, arms the failure of one of the next writes
    /// or syncs.
    pub(crate) fn arm(&mut self, faults: &Faults) {
        let roll = self.next();
        if !roll.is_multiple_of(3) {
            return;
        }
        let fault = if roll & 8 == 0 {
            Fault::DiskFull
        } else {
            Fault::Io
        };
        let after = (roll >> 8) % 16;
        if roll & 16 == 0 {
            faults.fail_writes_after(after, fault);
        } else {
            faults.fail_syncs_after(after % 4, fault);
        }
    }
}

/// Where a run of [`ops_model`] is, for the message of a mismatch.
pub(crate) struct Step<'a> {
    pub(crate) index: usize,
    pub(crate) op: &'a Op,
    pub(crate) ops: &'a [Op],
}

impl Step<'_> {
    pub(crate) fn fail(
        &self,
        subject: &str,
        what: &str,
        want: &dyn fmt::Debug,
        got: &dyn fmt::Debug,
    ) -> ! {
        panic!(
            "step {} ({:?}), {subject} {what}: the model says {want:?}, the locker returned \
             {got:?}; the steps up to here: {:?}",
            self.index,
            self.op,
            &self.ops[..=self.index]
        )
    }
}
