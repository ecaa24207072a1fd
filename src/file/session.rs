//! Sessions: each open handle holds one session slot of the file (a byte-range
//! lock, see `ranges.rs`) for as long as it is open, and its session id names
//! the slot and a random generation.
//!
//! A lock bound to a session counts only while another open of the file holds
//! the session's slot. The kernel drops the slot's lock when the handle closes
//! or its process dies, even by SIGKILL, so its locks are free at once;
//! liveness never looks at process ids, so a reused pid keeps nothing alive.
//!
//! A slot is reused by later handles. Its new holder first removes every lock
//! and wait that earlier sessions of the slot left in the file (they have
//! ended: the slot was free), so a session is never taken for its slot's
//! previous owner.

use std::sync::Arc;

use super::ranges::{Held, Ranges, SLOT_COUNT};
use crate::error::Result;

/// Bits of a session id below its slot.
const GENERATION_BITS: u32 = 48;

/// An open handle's session: its slot, held until the session drops.
#[derive(Debug)]
pub(crate) struct Session {
    id: u64,
    slot: Held,
}

impl Session {
    /// Takes a free slot of the file and a random generation in it.
    pub(crate) fn start(ranges: &Arc<Ranges>) -> Result<Session> {
        let random = crate::guard::random_u64();
        let slot = ranges.claim_slot(random % SLOT_COUNT)?;
        let generation = (random >> 16).max(1) & ((1 << GENERATION_BITS) - 1);
        let id = (slot.slot() << GENERATION_BITS) | generation.max(1);
        Ok(Session { id, slot })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn slot(&self) -> u64 {
        self.slot.slot()
    }

    /// Whether the session `id` has ended: its slot is free, or held by this
    /// session, which is not `id`.
    pub(crate) fn ended(&self, ranges: &Ranges, id: u64) -> Result<bool> {
        if id == self.id {
            return Ok(false);
        }
        let slot = slot_of(id);
        if slot == self.slot() {
            return Ok(true);
        }
        Ok(!ranges.slot_in_use(slot)?)
    }
}

/// The slot of the session `id`.
pub(crate) fn slot_of(id: u64) -> u64 {
    id >> GENERATION_BITS
}

/// The first and last session ids of `slot`.
pub(crate) fn range_of(slot: u64) -> (u64, u64) {
    let first = slot << GENERATION_BITS;
    (first, first | ((1 << GENERATION_BITS) - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_id_lies_in_its_slot_range() {
        for slot in [0, 1, 4242, SLOT_COUNT - 1] {
            let (first, last) = range_of(slot);
            assert_eq!(first >> GENERATION_BITS, slot);
            assert_eq!(last >> GENERATION_BITS, slot);
            assert_eq!(last - first, (1 << GENERATION_BITS) - 1);
        }
        assert_eq!(range_of(SLOT_COUNT - 1).1, u64::MAX);
    }
}
