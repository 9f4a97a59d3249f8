//! Results as a result iterator receives them: a packed chunk's values stay in the
//! chunk's one buffer (shared), rather than each copied into a buffer of its own.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use super::job::{Delivery, JobMeta, Part};
use crate::error::Error;

/// A result's value bytes: a buffer of its own, or a range of a chunk's shared data.
pub(crate) enum Payload {
    Own(Vec<u8>),
    Shared(Arc<Vec<u8>>, Range<usize>),
}

impl Payload {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Own(bytes) => bytes,
            // In range: checked when the chunk was split into parts.
            Payload::Shared(data, range) => data.get(range.clone()).unwrap_or_default(),
        }
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        match self {
            Payload::Own(bytes) => bytes,
            Payload::Shared(..) => self.as_slice().to_vec(),
        }
    }
}

/// One received result: input position, value or error, record.
pub(crate) type Arrival = (usize, Result<Payload, Error>, JobMeta);

/// Appends the results of `delivery` to `out`, in their order.
pub(crate) fn receive(delivery: Delivery, out: &mut VecDeque<Arrival>) {
    match delivery {
        Delivery::Items(items) => out.extend(
            items
                .into_iter()
                .map(|(index, result, meta)| (index, result.map(Payload::Own), meta)),
        ),
        Delivery::Packed(packed) => {
            let (data, parts) = packed.into_parts();
            let data = Arc::new(data);
            out.extend(parts.into_iter().map(|(index, part, meta)| {
                let payload = part.map(|part| match part {
                    Part::Data(range) => Payload::Shared(data.clone(), range),
                    Part::Own(bytes) => Payload::Own(bytes),
                });
                (index, payload, meta)
            }));
        }
    }
}
