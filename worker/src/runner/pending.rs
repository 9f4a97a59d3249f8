//! What finished calls of the running unit have yielded, and the messages that answer
//! them.

use crate::codec;
use crate::progress::Logged;
use crate::protocol::{FromChild, TaskOutcome, Timing};

use super::shared::OpenUnit;

/// What finished calls of the running unit have yielded (from position `from` on),
/// kept by the main thread.
pub(super) enum Pending {
    Outcomes {
        outcomes: Vec<TaskOutcome>,
        timings: Vec<Timing>,
    },
    Packed {
        lens: Vec<u32>,
        data: Vec<u8>,
        /// Positions relative to `from`.
        others: Vec<(u32, TaskOutcome)>,
        /// Each call's timing (a timed unit's; else empty).
        timings: Vec<Timing>,
    },
}

impl Pending {
    pub(super) fn len(&self) -> usize {
        match self {
            Pending::Outcomes { outcomes, .. } => outcomes.len(),
            Pending::Packed { lens, .. } => lens.len(),
        }
    }

    /// The message answering calls `skip..` of these (positions counted from `from`),
    /// which are taken out.
    pub(super) fn message(&mut self, seq: u64, from: u32, skip: usize) -> FromChild {
        let first = from + skip as u32;
        match self {
            Pending::Outcomes { outcomes, timings } => {
                let skip = skip.min(outcomes.len());
                let sent = outcomes.split_off(skip);
                let times = timings.split_off(skip.min(timings.len()));
                FromChild::BatchDone {
                    first_id: seq,
                    from: first,
                    outcomes: sent,
                    timings: times,
                }
            }
            Pending::Packed {
                lens,
                data,
                others,
                timings,
            } => {
                let skip = skip.min(lens.len());
                let byte: usize = lens[..skip].iter().map(|l| *l as usize).sum();
                let sent_lens = lens.split_off(skip);
                let sent_data = data.split_off(byte.min(data.len()));
                let sent_others = others
                    .drain(..)
                    .filter(|(pos, _)| *pos as usize >= skip)
                    .map(|(pos, o)| (pos - skip as u32, o))
                    .collect();
                FromChild::PackedDone {
                    first_id: seq,
                    from: first,
                    lens: sent_lens,
                    data: serde_bytes::ByteBuf::from(sent_data),
                    others: sent_others,
                    timings: timings.split_off(skip.min(timings.len())),
                }
            }
        }
    }
}

/// A finished call's answer, for the log.
pub(super) enum LogEntry<'a> {
    Value(&'a [u8]),
    Outcome(&'a TaskOutcome, &'a Timing),
}

/// Builds the message answering the logged calls from position `from` on, if any.
pub(super) fn logged_message(
    open: OpenUnit,
    logged: Vec<(u32, Logged)>,
    from: u32,
) -> Option<(FromChild, u32)> {
    let mut next = from;
    let mut outcomes = Vec::new();
    let mut timings = Vec::new();
    let mut lens = Vec::new();
    let mut data = Vec::new();
    let mut others = Vec::new();
    for (position, record) in logged {
        if position < next {
            continue;
        }
        if position > next {
            break;
        }
        match (open.packed, record) {
            (true, Logged::Value(value)) if open.timed => {
                let Some((value, timing)) = Timing::split_from(&value) else {
                    break;
                };
                lens.push(value.len() as u32);
                data.extend_from_slice(value);
                timings.push(timing);
            }
            (true, Logged::Value(value)) => {
                lens.push(value.len() as u32);
                data.extend_from_slice(&value);
            }
            (true, Logged::Outcome(bytes)) => {
                let Ok((outcome, timing)) = codec::decode::<(TaskOutcome, Timing)>(&bytes) else {
                    break;
                };
                lens.push(0);
                others.push((position - from, outcome));
                if open.timed {
                    timings.push(timing);
                }
            }
            (false, Logged::Outcome(bytes)) => {
                let Ok((outcome, timing)) = codec::decode::<(TaskOutcome, Timing)>(&bytes) else {
                    break;
                };
                outcomes.push(outcome);
                timings.push(timing);
            }
            (false, Logged::Value(_)) => break,
        }
        next += 1;
    }
    if next == from {
        return None;
    }
    let msg = if open.packed {
        FromChild::PackedDone {
            first_id: open.seq,
            from,
            lens,
            data: serde_bytes::ByteBuf::from(data),
            others,
            timings,
        }
    } else {
        FromChild::BatchDone {
            first_id: open.seq,
            from,
            outcomes,
            timings,
        }
    };
    Some((msg, next))
}
