//! Running a pool worker's units call by call, and answering them.
//!
//! Each call is claimed on the progress page before it runs (see [`crate::progress`]),
//! so the parent knows which call runs and since when, and can take unstarted calls
//! back at any moment. Finished calls' answers are kept by the main thread and written
//! to the page's answer log; one message answers them all when the unit ends. If one
//! call runs long, a flusher thread sends, from the log, the answers of the calls that
//! finished before it, so no result waits behind a slow batch-mate. The main thread
//! takes no lock per call: the log is append-only between the unit's ends, and the
//! send lock is taken only to send (the unit's end, a full log, the flusher).
//!
//! - `answers`: [`Answers`], running units call by call and answering them.
//! - `pending`: what finished calls yielded, and the messages that answer them.
//! - `flusher`: the thread that sends finished calls' answers early.
//! - `shared`: the send side both threads use.
//! - `spike`: each call judged against `memory_limit` by the memory's high-water marks.

mod answers;
mod flusher;
mod pending;
mod shared;
mod spike;
#[cfg(test)]
mod tests;

pub(crate) use answers::Answers;
