//! What an [`ErrorKind`] says beyond its message: its one word (the CLI's records),
//! how its process ended, its pid, and the resource limit behind an error.

use std::io;

use super::{BrokenCall, ErrorKind, ResourceLimit};

/// Every word [`ErrorKind::word`] gives.
const WORDS: [&str; 11] = [
    "panicked",
    "crashed",
    "oom_killed",
    "memory_exceeded",
    "exited",
    "timed_out",
    "lost",
    "decode",
    "cancelled",
    "stopped",
    "failed",
];

/// The word of a kind that travelled as its word (a cluster agent's error): the
/// same mapping as [`ErrorKind::word`], `failed` for a word it does not give.
pub(crate) fn known_word(word: &str) -> &'static str {
    WORDS
        .iter()
        .find(|w| **w == word)
        .copied()
        .unwrap_or("failed")
}

impl ErrorKind {
    /// The kind in one word, as the CLI's JSON records and job logs name it: failed,
    /// panicked, crashed, oom_killed, exited, timed_out, memory_exceeded, lost, decode,
    /// stopped (running when the run was stopped, or when the pool broke) or cancelled
    /// (never started, also when the pool broke before it started).
    pub fn word(&self) -> &'static str {
        match self {
            ErrorKind::Panicked { .. } => "panicked",
            ErrorKind::Crashed { .. } => "crashed",
            ErrorKind::OomKilled { .. } => "oom_killed",
            ErrorKind::MemoryExceeded { .. } => "memory_exceeded",
            ErrorKind::Exited { .. } => "exited",
            ErrorKind::TimedOut { .. } => "timed_out",
            ErrorKind::Lost { .. } | ErrorKind::ResultLost { .. } | ErrorKind::Protocol { .. } => {
                "lost"
            }
            ErrorKind::PoolBroken { call, .. } => match call {
                BrokenCall::NotStarted => "cancelled",
                BrokenCall::Stopped { .. } => "stopped",
            },
            ErrorKind::EncodeArgument { .. }
            | ErrorKind::DecodeArgument { .. }
            | ErrorKind::EncodeResult { .. }
            | ErrorKind::DecodeResult { .. } => "decode",
            ErrorKind::Cancelled { .. } | ErrorKind::Terminated { .. } | ErrorKind::PoolClosed => {
                "cancelled"
            }
            ErrorKind::Stopped { .. } => "stopped",
            ErrorKind::Remote { kind, .. } => known_word(kind),
            ErrorKind::DeliveryLimit { kind, .. } => kind,
            _ => "failed",
        }
    }

    /// How the task's process ended, where the error says: the signal number that
    /// killed it, its exit code, and its peak memory in KiB (a job log's `Signal` and
    /// `Exitval` columns). Carried over for a cluster agent's error.
    pub fn exit_facts(&self) -> (Option<i32>, Option<i32>, Option<u64>) {
        match self {
            ErrorKind::Crashed {
                signal,
                peak_rss_kib,
                ..
            } => (Some(signal.number()), None, Some(*peak_rss_kib)),
            ErrorKind::Exited {
                code, peak_rss_kib, ..
            } => (None, Some(*code), Some(*peak_rss_kib)),
            ErrorKind::OomKilled { peak_rss_kib, .. }
            | ErrorKind::MemoryExceeded {
                peak_rss_kib,
                killed: true,
                ..
            } => (Some(libc::SIGKILL), None, Some(*peak_rss_kib)),
            // A spike: nothing was killed, and what the task returned (a command's
            // exit status with it) was dropped.
            ErrorKind::MemoryExceeded {
                peak_rss_kib,
                killed: false,
                ..
            } => (None, None, Some(*peak_rss_kib)),
            ErrorKind::Remote {
                signal,
                exit_code,
                peak_rss_kib,
                ..
            } => (*signal, *exit_code, *peak_rss_kib),
            ErrorKind::DeliveryLimit {
                signal, exit_code, ..
            } => (signal.map(|s| s.number()), *exit_code, None),
            _ => (None, None, None),
        }
    }

    /// The pid of the process the error is about, when there is one.
    pub fn pid(&self) -> Option<u32> {
        match self {
            ErrorKind::Panicked { pid, .. }
            | ErrorKind::Crashed { pid, .. }
            | ErrorKind::Exited { pid, .. }
            | ErrorKind::MemoryExceeded { pid, .. }
            | ErrorKind::OomKilled { pid, .. }
            | ErrorKind::Lost { pid, .. }
            | ErrorKind::UnknownTask { pid, .. }
            | ErrorKind::DecodeArgument { pid, .. }
            | ErrorKind::EncodeResult { pid, .. }
            | ErrorKind::DecodeResult { pid, .. }
            | ErrorKind::HeldResult { pid, .. }
            | ErrorKind::Protocol { pid, .. }
            | ErrorKind::Bootstrap { pid, .. }
            | ErrorKind::Setup { pid, .. }
            | ErrorKind::AlreadyJoined { pid }
            | ErrorKind::Remote { pid, .. }
            | ErrorKind::Signal { pid, .. }
            | ErrorKind::OpenShared { pid, .. }
            | ErrorKind::PeerDied { pid, .. } => Some(*pid),
            ErrorKind::NotInitialised { worker } => *worker,
            ErrorKind::PoolBroken {
                call: BrokenCall::Stopped { pid, .. },
                ..
            } => Some(*pid),
            _ => None,
        }
    }
}

/// Names the resource limit behind `e`, if an operating-system error in its chain is one
/// (processes, descriptors, memory): the fragment to add to a report.
pub(crate) fn resource_limit(e: &(dyn std::error::Error + 'static)) -> Option<ResourceLimit> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(limit) = err
            .downcast_ref::<super::OsError>()
            .and_then(super::OsError::limit)
        {
            return Some(limit);
        }
        if let Some(limit) = err
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
            .and_then(limit_of_errno)
        {
            return Some(limit);
        }
        next = err.source();
    }
    None
}

/// The resource limit an error number says was reached, if any.
pub(crate) fn limit_of_errno(errno: i32) -> Option<ResourceLimit> {
    match errno {
        libc::EAGAIN => Some(ResourceLimit::Processes),
        libc::EMFILE | libc::ENFILE => Some(ResourceLimit::Descriptors),
        libc::ENOMEM => Some(ResourceLimit::Memory),
        _ => None,
    }
}
