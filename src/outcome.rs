//! What a child's answer (or its silence) means for its task: the value's bytes or a
//! typed error. Shared by `Process` and the pool.

use supervisor_worker::protocol::TaskOutcome;

use crate::error::{Error, ErrorKind};
use crate::exit::ExitStatus;
use crate::reaper::Exit;

/// Turns a worker's outcome into a job result (bytes of the value, or a typed error).
pub(crate) fn outcome_to_result(
    task: &str,
    pid: u32,
    outcome: TaskOutcome,
) -> Result<Vec<u8>, Error> {
    // No allocation on the common path: the task's name is copied only into errors.
    let kind = match outcome {
        TaskOutcome::Returned { value, .. } => return Ok(value),
        TaskOutcome::Panicked {
            message,
            location,
            backtrace,
        } => ErrorKind::Panicked {
            task: task.to_string(),
            pid,
            message,
            location,
            backtrace,
        },
        TaskOutcome::UnknownTask { name } => ErrorKind::UnknownTask { task: name, pid },
        TaskOutcome::BadArgument { message } => ErrorKind::DecodeArgument {
            task: task.to_string(),
            pid,
            message,
        },
        TaskOutcome::BadResult { message } => ErrorKind::EncodeResult {
            task: task.to_string(),
            pid,
            message,
        },
        TaskOutcome::MemoryExceeded {
            limit,
            peak_rss_kib,
        } => ErrorKind::MemoryExceeded {
            task: task.to_string(),
            pid,
            limit,
            peak_rss_kib,
            killed: false,
        },
    };
    Err(kind.into())
}

/// The error for a child that ended without answering.
pub(crate) fn no_result(task: String, pid: u32, exit: Exit) -> Error {
    let kind = match exit.status {
        ExitStatus::Signal { .. } if exit.oom_killed => ErrorKind::OomKilled {
            task,
            pid,
            peak_rss_kib: exit.peak_rss_kib,
        },
        ExitStatus::Signal {
            signal,
            core_dumped,
        } => ErrorKind::Crashed {
            task,
            pid,
            signal,
            core_dumped,
            peak_rss_kib: exit.peak_rss_kib,
        },
        ExitStatus::Code(code) => ErrorKind::Exited {
            task,
            pid,
            code,
            peak_rss_kib: exit.peak_rss_kib,
        },
        ExitStatus::Unknown => ErrorKind::Lost { task, pid },
    };
    kind.into()
}
