//! Results that came ahead of their turn, waiting to be handed out in input order.
//!
//! A ring of slots indexed by the distance from the next position to hand out: an
//! arrival is stored in place and the next one is taken from the front, with no
//! search and no values moved about (a `BTreeMap` here shifted every result it held
//! within its nodes, a tenth of the CLI's time over 100,000 tiny tasks). The span
//! from the next position to the furthest arrival is bounded by the caller's
//! read-ahead, and so is the ring.

use std::collections::VecDeque;

/// Values by position, handed out from position 0 on, each once.
pub(crate) struct Reorder<T> {
    /// `slots[k]` holds position `next + k`, if it has arrived.
    slots: VecDeque<Option<T>>,
    /// The position the front slot stands for: the next one to hand out.
    next: usize,
    /// How many slots hold a value.
    held: usize,
}

impl<T> Reorder<T> {
    pub(crate) fn new() -> Reorder<T> {
        Reorder {
            slots: VecDeque::new(),
            next: 0,
            held: 0,
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
                Ok(())
            }
        }
    }

    /// The value of the next position, if it has arrived; the position after it is
    /// then the next.
    pub(crate) fn take_next(&mut self) -> Option<T> {
        let value = self.slots.front_mut()?.take()?;
        self.slots.pop_front();
        self.next += 1;
        self.held -= 1;
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
}

#[cfg(test)]
mod tests {
    use super::Reorder;
    use proptest::prelude::*;

    #[test]
    fn values_come_out_in_position_order_whatever_order_they_arrive_in() {
        let mut r = Reorder::new();
        assert_eq!(r.insert(2, 'c'), Ok(()));
        assert_eq!(r.take_next(), None);
        assert!(!r.next_is_in());
        assert_eq!(r.insert(0, 'a'), Ok(()));
        assert!(r.next_is_in());
        assert_eq!(r.len(), 2);
        assert_eq!(r.take_next(), Some('a'));
        assert_eq!(r.take_next(), None);
        assert_eq!(r.insert(1, 'b'), Ok(()));
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
            for &p in &order {
                prop_assert_eq!(r.insert(p, p), Ok(()));
                while let Some(v) = r.take_next() {
                    out.push(v);
                }
            }
            prop_assert_eq!(out, (0..200).collect::<Vec<_>>());
            prop_assert_eq!(r.len(), 0);
        }
    }
}
