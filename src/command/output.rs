//! [`CommandOutput`]: how a command ended and what it wrote.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::Captured;
use crate::ExitStatus;

/// How a [`crate::Command`] ended and what it wrote.
#[derive(Debug, Serialize, Deserialize)]
pub struct CommandOutput {
    /// Its exit code, or the signal that ended it (a timeout or a stop kills it with
    /// the worker's group: then the pool reports the task's error instead).
    pub status: ExitStatus,
    /// What it wrote on standard output, byte for byte.
    pub stdout: Captured,
    /// What it wrote on standard error, byte for byte.
    pub stderr: Captured,
    /// The command's own pid (not the worker's).
    pub pid: u32,
    /// When it was started.
    pub started: SystemTime,
    /// From its start until it ended and both streams were closed.
    pub duration: Duration,
}
