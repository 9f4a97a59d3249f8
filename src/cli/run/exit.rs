//! The run's exit code (documented in `--help` and the README), from why it stopped
//! and what failed.

use super::super::halt::{Halt, What};
use super::stop::{
    STOP_CLUSTER, STOP_HALT, STOP_HALT_SOON, STOP_OUTPUT_ERROR, STOP_POOL_BROKEN, STOP_STDOUT,
};

/// Exit codes (documented in `--help` and the README).
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_SIGINT: i32 = 130;
pub const EXIT_SIGTERM: i32 = 143;
/// Exit code of a run stopped by SIGHUP (its terminal went away): as SIGTERM otherwise.
pub const EXIT_SIGHUP: i32 = 129;
/// Exit code of a run whose output could not be written (other than a closed pipe).
pub const EXIT_OUTPUT: i32 = 3;
/// Standard output was closed (for example `| head`): the run stopped quietly.
pub const EXIT_STDOUT_CLOSED: i32 = 141;

/// The exit code of a run that stopped for `why` (0: it did not stop early), with
/// `failed` tasks that failed, under `halt`.
pub(super) fn exit_code(why: i32, halt: Option<Halt>, failed: u64) -> i32 {
    match why {
        libc::SIGINT => EXIT_SIGINT,
        libc::SIGTERM => EXIT_SIGTERM,
        libc::SIGHUP => EXIT_SIGHUP,
        STOP_STDOUT => EXIT_STDOUT_CLOSED,
        STOP_OUTPUT_ERROR => EXIT_OUTPUT,
        STOP_CLUSTER => super::super::EXIT_CLUSTER,
        STOP_POOL_BROKEN => EXIT_FAILED,
        // parallel: a halt on successes exits 0, whatever failed before it.
        STOP_HALT | STOP_HALT_SOON if halt.is_some_and(|h| h.what == What::Success) => EXIT_OK,
        STOP_HALT | STOP_HALT_SOON if failed > 0 => EXIT_FAILED,
        _ if failed > 0 => EXIT_FAILED,
        _ => EXIT_OK,
    }
}
