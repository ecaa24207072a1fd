//! The waiting rooms of an [`AsyncLocker`](super::AsyncLocker): of the
//! tasks that wait for one key through one locker, only the first in line
//! (the lowest ticket) asks the locker whether its turn has come; the others
//! sleep until they are first. A release then costs one look, not one per
//! waiting task.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// Per key, the tickets of the tasks waiting in this room, in queue order,
/// with the waker of each that sleeps until it is first.
#[derive(Debug, Default)]
pub(super) struct Rooms {
    keys: Mutex<HashMap<String, BTreeMap<u64, Option<Waker>>>>,
}

impl Rooms {
    fn keys(&self) -> MutexGuard<'_, HashMap<String, BTreeMap<u64, Option<Waker>>>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn enter(&self, key: &str, ticket: u64) {
        self.keys()
            .entry(key.to_owned())
            .or_default()
            .insert(ticket, None);
    }

    /// Takes `ticket` out of `key`'s room, and wakes the task that is first
    /// in it now.
    pub(super) fn leave(&self, key: &str, ticket: u64) {
        let mut keys = self.keys();
        let Some(room) = keys.get_mut(key) else {
            return;
        };
        room.remove(&ticket);
        match room.first_entry() {
            Some(mut first) => {
                if let Some(waker) = first.get_mut().take() {
                    waker.wake();
                }
            }
            None => {
                keys.remove(key);
            }
        }
    }

    /// Resolves once `ticket` is first in `key`'s room.
    pub(super) fn first<'a>(&'a self, key: &'a str, ticket: u64) -> First<'a> {
        First {
            rooms: self,
            key,
            ticket,
        }
    }
}

/// The future of [`Rooms::first`].
#[derive(Debug)]
pub(super) struct First<'a> {
    rooms: &'a Rooms,
    key: &'a str,
    ticket: u64,
}

impl Future for First<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut keys = self.rooms.keys();
        let Some(room) = keys.get_mut(self.key) else {
            return Poll::Ready(());
        };
        if room.keys().next().is_none_or(|&first| first == self.ticket) {
            return Poll::Ready(());
        }
        match room.get_mut(&self.ticket) {
            Some(slot) => {
                *slot = Some(cx.waker().clone());
                Poll::Pending
            }
            // Not in the room: nothing to wait for.
            None => Poll::Ready(()),
        }
    }
}
