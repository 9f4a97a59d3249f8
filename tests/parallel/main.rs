//! GNU parallel as the oracle: the same command lines given to `parallel` and to
//! `supervisor run` print the same bytes. GNU parallel is installed by `.ci/setup`,
//! which these tests run first (it does nothing when parallel is there); if it cannot
//! be installed, they fail, they never skip.

#[path = "../common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{isolated, Ran};

const BIN: &str = env!("CARGO_BIN_EXE_supervisor");
const DEADLINE: Duration = Duration::from_secs(120);

mod halt_and_slots;
mod output;
mod resume;
