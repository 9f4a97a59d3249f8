//! The objects an encoded value ships handles of, kept open for as long as those bytes
//! may be decoded: the pool decodes a job's argument again when it retries the job, and
//! the objects its handles name must still be there then, whether or not the caller
//! kept a handle of its own (the in-transit keeping of `region/transit.rs` lets go once each
//! handle was opened once).

use std::cell::RefCell;
use std::sync::Arc;

use super::region::Region;

thread_local! {
    /// What the serialisations on this thread ship, while someone collects it.
    static COLLECTING: RefCell<Option<Vec<Arc<Region>>>> = const { RefCell::new(None) };
}

/// The objects some encoded bytes ship handles of; dropping it lets them go. Clones
/// share one list (the calls of a chunk share their chunk's).
#[derive(Clone, Default)]
pub(crate) struct Shipped(Option<Arc<Vec<Arc<Region>>>>);

impl Shipped {
    /// Adds what `other` keeps.
    pub(crate) fn add(&mut self, other: Shipped) {
        let Some(theirs) = other.0 else { return };
        match &mut self.0 {
            None => self.0 = Some(theirs),
            Some(mine) => Arc::make_mut(mine).extend(theirs.iter().cloned()),
        }
    }
}

/// Runs `encode` and returns what it returned with the objects whose handles it
/// serialised on this thread. If `encode` panics (an input iterator or a `Serialize`
/// of the caller's), the thread's collecting state is put back as it was while the
/// panic unwinds: otherwise every handle serialised on this thread afterwards would be
/// kept open for ever in a list nobody reads.
pub(crate) fn collecting<T>(encode: impl FnOnce() -> T) -> (T, Shipped) {
    /// Puts the outer collection back when dropped, on return or unwind.
    struct Restore(Option<Option<Vec<Arc<Region>>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(outer) = self.0.take() {
                // Ignored when the thread's locals are being destroyed.
                let _ = COLLECTING.try_with(|c| *c.borrow_mut() = outer);
            }
        }
    }
    let mut restore = Restore(Some(
        COLLECTING.with(|c| c.borrow_mut().replace(Vec::new())),
    ));
    let out = encode();
    let outer = restore.0.take().unwrap_or_default();
    let mine = COLLECTING.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    let mine = mine.unwrap_or_default();
    // An encode inside another ships for the outer one too.
    if !mine.is_empty() {
        COLLECTING.with(|c| {
            if let Some(outer) = c.borrow_mut().as_mut() {
                outer.extend(mine.iter().cloned());
            }
        });
    }
    let shipped = Shipped((!mine.is_empty()).then(|| Arc::new(mine)));
    (out, shipped)
}

/// Notes that a handle of `region` was serialised (by `Attachment::to_wire`).
pub(crate) fn note(region: &Arc<Region>) {
    COLLECTING.with(|c| {
        if let Some(list) = c.borrow_mut().as_mut() {
            if !list.iter().any(|r| Arc::ptr_eq(r, region)) {
                list.push(region.clone());
            }
        }
    });
}
