//! `supervisor run`: input lines in, one task per line through a supervised pool,
//! records out (text or JSON, input order or as they finish), with progress, job log,
//! fail-fast, per-worker stats, clean signal handling and a detached mode.
//!
//! A run's path: [`settings`] checks the options; [`driver`] opens the input, builds
//! the pool and wires the rest; [`jobs`] makes a task of each input record;
//! [`arrival`] logs each result as it arrives (job log, `--halt`); [`hold`] keeps
//! the memory and descriptors of those waiting for their turn bounded; [`output`]
//! prints the results in their turn; [`stop`] handles signals and other stop requests;
//! [`exit`] gives the exit code; [`progress`] and [`status`] report on the run.

mod arrival;
mod driver;
mod exit;
mod hold;
mod jobs;
mod output;
mod progress;
mod settings;
mod status;
mod stop;

pub use driver::run;
pub use exit::{EXIT_OUTPUT, EXIT_STDOUT_CLOSED};
