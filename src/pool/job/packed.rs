//! A chunk's results as they come from its worker: plain values back to back in one
//! buffer, and where each item's value is.

use crate::error::{Error, ErrorKind, Violation};

use super::{JobMeta, JobResult};

/// The results of a chunk: plain values back to back in `data` (item `i`'s being
/// `lens[i]` bytes long), every other outcome in `others` by position.
pub(crate) struct PackedResults {
    pub(crate) first_index: usize,
    pub(crate) lens: Vec<u32>,
    pub(crate) data: Vec<u8>,
    pub(crate) others: Vec<(u32, JobResult)>,
    /// How the chunk ran (its duration shared evenly by its items), for the items
    /// without a record of their own in `each`.
    pub(crate) meta: JobMeta,
    /// A timed chunk's: how each item ran, by position (its own start and duration).
    pub(crate) each: Vec<JobMeta>,
}

/// Where a packed item's value is: a range of the chunk's data, or bytes of its own.
pub(crate) enum Part {
    Data(std::ops::Range<usize>),
    Own(Vec<u8>),
}

/// A packed item: input position, where its value is (or its error), record.
pub(crate) type PackedItem = (usize, Result<Part, Error>, JobMeta);

impl PackedResults {
    /// Gives `f` each item's input position, value (or error) and record, with the
    /// data its ranges index, and returns the data; every range lies within it (an
    /// item whose length would reach past it is an error: a worker lied about it).
    fn walk(self, mut f: impl FnMut(&[u8], PackedItem)) -> Vec<u8> {
        let PackedResults {
            first_index,
            lens,
            data,
            others,
            meta,
            each,
        } = self;
        let mut others = others.into_iter().peekable();
        let mut at = 0usize;
        for (i, len) in lens.iter().enumerate() {
            let end = at.saturating_add(*len as usize);
            let index = first_index + i;
            let own = each.get(i).copied().unwrap_or(meta);
            let part = match others.next_if(|(pos, _)| *pos as usize == i) {
                Some((_, Err(e))) => Err(e),
                Some((_, Ok(bytes))) => Ok(Part::Own(bytes)),
                None if end <= data.len() => Ok(Part::Data(at..end)),
                None => Err(ErrorKind::Protocol {
                    pid: meta.pid,
                    violation: Violation::ChunkBeyond { position: i },
                }
                .into()),
            };
            f(&data, (index, part, own));
            at = end;
        }
        data
    }

    /// Its data, and each item's input position, value (a range of the data, or
    /// bytes of its own) or error, and record.
    pub(crate) fn into_parts(self) -> (Vec<u8>, Vec<PackedItem>) {
        let mut parts = Vec::with_capacity(self.lens.len());
        let data = self.walk(|_, item| parts.push(item));
        (data, parts)
    }

    /// Calls `f` with each item's input position, value bytes (or its error) and
    /// record.
    pub(crate) fn for_each(self, mut f: impl FnMut(usize, Result<&[u8], Error>, JobMeta)) {
        self.walk(|data, (index, part, meta)| match part {
            Ok(Part::Data(range)) => f(index, Ok(&data[range]), meta),
            Ok(Part::Own(bytes)) => f(index, Ok(&bytes), meta),
            Err(e) => f(index, Err(e), meta),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk's results from a worker that lies about their lengths: every item gets
    /// a result, the ones beyond the data an error, nothing panics.
    #[test]
    fn packed_results_beyond_their_data_are_errors_not_panics() {
        let packed = PackedResults {
            first_index: 10,
            lens: vec![2, 1, u32::MAX, 1],
            data: vec![1, 2, 3],
            others: vec![(1, Ok(vec![9])), (7, Ok(vec![8]))],
            meta: JobMeta::default(),
            each: Vec::new(),
        };
        let mut seen = Vec::new();
        packed.for_each(|i, r, _| {
            let r = r.map(<[u8]>::to_vec);
            seen.push((i, r.map_err(|e| supervisor_worker::error_chain(&e))));
        });
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[0], (10, Ok(vec![1, 2])));
        assert_eq!(seen[1], (11, Ok(vec![9])));
        assert!(seen[2].1.as_ref().is_err_and(|e| e.contains("beyond")));
        assert!(seen[3].1.as_ref().is_err_and(|e| e.contains("beyond")));
    }
}
