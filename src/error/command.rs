//! Why a command could not be run or captured ([`CommandError`]). It travels from the
//! worker that ran the command to the caller, so its cause is carried as data.

use serde::{Deserialize, Serialize};

/// A command could not be started, or its output could not be captured. (A command
/// that runs and fails is not an error: see [`crate::CommandOutput::status`].)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CommandError {
    /// The program could not be started (not found, not executable, a bad directory).
    #[error("cannot start `{program}`{}", limit_note(source))]
    Start {
        /// The program (lossy where it is not UTF-8).
        program: String,
        /// What the system said.
        #[source]
        source: OsError,
    },
    /// Reading the command's output, or spooling it to a file, failed.
    #[error("cannot capture the output of `{program}`")]
    Capture {
        /// The program (lossy where it is not UTF-8).
        program: String,
        /// What the system said.
        #[source]
        source: OsError,
    },
}

/// ` (the resource limit ...)` when `e` is the want of processes or descriptors.
fn limit_note(e: &OsError) -> String {
    e.limit()
        .map(|limit| format!(" ({limit})"))
        .unwrap_or_default()
}

impl OsError {
    /// The resource limit its error number says was reached, if any.
    pub(crate) fn limit(&self) -> Option<super::ResourceLimit> {
        self.errno.and_then(super::facts::limit_of_errno)
    }
}

/// An operating-system error met in another process: its message and error number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct OsError {
    /// The message, as `std::io::Error` prints it.
    pub message: String,
    /// The `errno` value, if there was one.
    pub errno: Option<i32>,
}

impl From<std::io::Error> for OsError {
    fn from(e: std::io::Error) -> OsError {
        OsError {
            message: e.to_string(),
            errno: e.raw_os_error(),
        }
    }
}
