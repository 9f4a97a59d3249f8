//! Results that came ahead of their turn, waiting to be handed out in input order.
//!
//! A ring of slots indexed by the distance from the next position to hand out: an
//! arrival is stored in place and the next one is taken from the front, with no
//! search and no values moved about (a `BTreeMap` here shifted every result it held
//! within its nodes, a tenth of the CLI's time over 100,000 tiny tasks). The span
//! from the next position to the furthest arrival is bounded by what the caller
//! lets wait (its read-ahead and its limit of results held for order), and so is the
//! ring.

use std::collections::VecDeque;

/// Values by position, handed out from position 0 on, each once.
pub(crate) struct Reorder<T> {
    /// `slots[k]` holds position `next + k`, if it has arrived.
    slots: VecDeque<Option<T>>,
    /// The position the front slot stands for: the next one to hand out.
    next: usize,
    /// How many slots hold a value.
    held: usize,
    /// How many slots from the front on hold a value with no gap: those can be handed
    /// out now; the others wait for an earlier position.
    ready: usize,
}

impl<T> Reorder<T> {
    pub(crate) fn new() -> Reorder<T> {
        Reorder {
            slots: VecDeque::new(),
            next: 0,
            held: 0,
            ready: 0,
        }
    }

    /// Stores the value of `position`. A position already handed out, or already held,
    /// is refused and the value given back (every position arrives once, so this is a
    /// caller's bug, not something to hide by overwriting).
    pub(crate) fn insert(&mut self, position: usize, value: T) -> Result<(), T> {
        let Some(k) = position.checked_sub(self.next) else {
            return Err(value);
        };
        if k >= self.slots.len() {
            self.slots.resize_with(k + 1, || None);
        }
        match &mut self.slots[k] {
            Some(_) => Err(value),
            slot => {
                *slot = Some(value);
                self.held += 1;
                if k == self.ready {
                    // A gap closed: everything up to the next gap is ready (each slot
                    // joins the ready run once, so this costs O(1) a value overall).
                    self.ready += 1;
                    while matches!(self.slots.get(self.ready), Some(Some(_))) {
                        self.ready += 1;
                    }
                }
                Ok(())
            }
        }
    }

    /// The value of the next position, if it has arrived; the position after it is
    /// then the next.
    pub(crate) fn take_next(&mut self) -> Option<T> {
        if !self.next_is_in() {
            return None;
        }
        // Moved out of the ring once (a result is a few hundred bytes).
        let value = self.slots.pop_front().flatten()?;
        self.next += 1;
        self.held -= 1;
        self.ready -= 1;
        Some(value)
    }

    /// Whether the next position has arrived.
    pub(crate) fn next_is_in(&self) -> bool {
        matches!(self.slots.front(), Some(Some(_)))
    }

    /// How many values are held.
    pub(crate) fn len(&self) -> usize {
        self.held
    }

    /// How many values wait for an earlier position that has not arrived (held for
    /// order, as opposed to ready to hand out).
    pub(crate) fn waiting(&self) -> usize {
        self.held - self.ready
    }

    /// Whether a value for `position` would wait for an earlier one (it is past the
    /// run of ready positions at the front).
    pub(crate) fn would_wait(&self, position: usize) -> bool {
        position > self.next + self.ready
    }
}

#[cfg(test)]
mod tests {
    use super::Reorder;
    use proptest::prelude::*;

    #[test]
    fn values_come_out_in_position_order_whatever_order_they_arrive_in() {
        let mut r = Reorder::new();
        assert!(r.would_wait(2));
        assert_eq!(r.insert(2, 'c'), Ok(()));
        assert_eq!(r.waiting(), 1);
        assert_eq!(r.take_next(), None);
        assert!(!r.next_is_in());
        assert!(!r.would_wait(0));
        assert_eq!(r.insert(0, 'a'), Ok(()));
        assert!(r.next_is_in());
        assert_eq!(r.len(), 2);
        assert_eq!(r.waiting(), 1);
        assert_eq!(r.take_next(), Some('a'));
        assert_eq!(r.take_next(), None);
        assert_eq!(r.insert(1, 'b'), Ok(()));
        assert_eq!(r.waiting(), 0);
        assert_eq!(r.take_next(), Some('b'));
        assert_eq!(r.take_next(), Some('c'));
        assert_eq!(r.len(), 0);
        assert_eq!(r.take_next(), None);
    }

    #[test]
    fn a_position_handed_out_or_held_is_refused() {
        let mut r = Reorder::new();
        assert_eq!(r.insert(0, 1), Ok(()));
        assert_eq!(r.insert(0, 2), Err(2));
        assert_eq!(r.take_next(), Some(1));
        assert_eq!(r.insert(0, 3), Err(3));
        assert_eq!(r.len(), 0);
    }

    proptest! {
        /// Any arrival order of 0..n gives 0..n back, taking whatever is ready after
        /// each arrival, and nothing is left held.
        #[test]
        fn every_arrival_order_gives_input_order(order in Just((0..200usize).collect::<Vec<_>>()).prop_shuffle()) {
            let mut r = Reorder::new();
            let mut out = Vec::new();
            let mut arrived = std::collections::HashSet::new();
            for &p in &order {
                prop_assert_eq!(r.would_wait(p), p > out.len());
                prop_assert_eq!(r.insert(p, p), Ok(()));
                arrived.insert(p);
                // Ready: the run of arrived positions from the next one on.
                let run = (out.len()..).take_while(|q| arrived.contains(q)).count();
                prop_assert_eq!(r.len() - r.waiting(), run);
                while let Some(v) = r.take_next() {
                    out.push(v);
                }
                prop_assert_eq!(r.waiting(), r.len());
            }
            prop_assert_eq!(out, (0..200).collect::<Vec<_>>());
            prop_assert_eq!(r.len(), 0);
        }
    }
}
