//! The inputs of `imap_reports` packed as they are read: consecutive inputs encoded
//! back to back into one timed [`Chunk`] (one buffer and one message for up to
//! [`PACK_MAX`] calls, no [`super::job::Job`] per call), answered with each call's own
//! timing. The dispatcher hands a chunk out in fair shares to workers for a task known
//! to be fast, and as single calls otherwise (`dispatcher/assign.rs`), so packing
//! changes how the calls travel, never what a call sees.

use serde::Serialize;
use supervisor_worker::codec::{self, CodecError, BATCH_BYTES};

use super::job::{Chunk, Delivery, Unit};
use super::{wake, Shared};
use crate::sync::shipped;

/// Most calls packed into one chunk: what the dispatcher merges into one message.
pub(crate) const PACK_MAX: usize = 256;

/// Packs the inputs of one result stream.
pub(crate) struct Packer {
    task: &'static str,
    stream: u64,
    tx: wake::Sender<Delivery>,
    current: Option<Chunk>,
}

impl Packer {
    pub(crate) fn new(task: &'static str, stream: u64, tx: wake::Sender<Delivery>) -> Packer {
        Packer {
            task,
            stream,
            tx,
            current: None,
        }
    }

    /// Calls in the chunk being packed.
    pub(crate) fn len(&self) -> usize {
        self.current.as_ref().map_or(0, Chunk::len)
    }

    /// Whether the chunk being packed takes no more calls.
    pub(crate) fn full(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|c| c.len() >= PACK_MAX || c.data.len() > BATCH_BYTES)
    }

    /// Packs `item`, the input at position `index` (the one after the last packed,
    /// else the chunk must have been taken). An item that cannot be encoded is not
    /// packed: its error is returned.
    pub(crate) fn push<T: Serialize>(
        &mut self,
        shared: &Shared,
        index: usize,
        item: &T,
    ) -> Result<(), CodecError> {
        let chunk = self.current.get_or_insert_with(|| {
            let first_id = shared.next_ids(PACK_MAX);
            Chunk::new(self.task, first_id, index, self.stream, self.tx.clone()).with_timings()
        });
        debug_assert_eq!(
            chunk.next_index() + chunk.len(),
            index,
            "packed out of order"
        );
        let start = chunk.data.len();
        // The objects the argument ships handles of stay with the chunk (a retried
        // call decodes its argument again).
        let (n, shipped) =
            shipped::collecting(|| codec::encode_value_append(item, &mut chunk.data));
        chunk.shipped.add(shipped);
        let n = n.and_then(|n| {
            // A chunk records each argument's length in 32 bits.
            u32::try_from(n).map_err(|_| CodecError::TooLong {
                type_name: std::any::type_name::<T>(),
                len: n,
            })
        });
        match n {
            Ok(n) => {
                chunk.lens.push(n);
                Ok(())
            }
            Err(e) => {
                chunk.data.truncate(start);
                Err(e)
            }
        }
    }

    /// The chunk packed so far, as a unit (`None` if it holds no call).
    pub(crate) fn take(&mut self) -> Option<Unit> {
        let chunk = self.current.take()?;
        if chunk.len() == 0 {
            chunk.forget();
            return None;
        }
        Some(Unit::chunk(chunk))
    }
}
