//! Shared harness for process tests.
//!
//! - `boot` runs before `main` (ctor): `supervisor::init()`, so a re-executed worker
//!   becomes a worker, and scenario dispatch, so a test can run a named scenario in a
//!   separate process of this binary (as another user, or to be SIGKILLed).
//! - [`isolated`] runs a test body with a hard deadline and a leak check: no child,
//!   zombie, descriptor, bootstrap directory or temp entry may be left behind.
//! - The first process of a test binary gets a private `TMPDIR` (inherited by every
//!   process it starts, removed when it exits), so the temp entries it compares are its
//!   own tests' and no other program's.
#![allow(dead_code)]

mod host;
mod isolation;
mod procfs;
mod programs;
mod scenarios;
mod threads;

// Every test binary uses some of these, none uses all of them.
#[allow(unused_imports)]
pub use host::{
    bootstrap_dirs, own_cgroup_dir, require_cgroups, require_root, wait_new_bootstrap_dir,
};
#[allow(unused_imports)]
pub use isolation::{each_method, isolated, isolated_settling, process_tree_dump};
#[allow(unused_imports)]
pub use procfs::{
    children_of, has_exited, pid_written_to, stat_fields, stat_fields_of, status_kib, wait_exit,
    wait_stopped, zombies_of,
};
#[allow(unused_imports)]
pub use programs::{leave_a_chain_out_of_the_group, run_program, Ran};
#[allow(unused_imports)]
pub use scenarios::{scenario, scenario_output, Scenario, SCENARIOS, SCENARIO_ENV, TMPDIR_ENV};
pub use supervisor::StartMethod;
#[allow(unused_imports)]
pub use threads::{act_while_waiting, watch};
