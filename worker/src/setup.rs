//! What a new child does to itself before it runs anything: its own process group,
//! nice value, parent-death signal, signal dispositions.
//!
//! [`apply`] is async-signal-safe, so the parent can run it between `fork` and `exec`
//! (spawn) and a server can run it right after `fork` (fork, forkserver): one
//! implementation for every start method.

use serde::{Deserialize, Serialize};

use crate::os;

/// Set-up for one child, decided by the parent before the fork.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ChildSetup {
    /// Nice value to apply, if any.
    pub nice: Option<i32>,
    /// End the child (and, for a worker, its whole process group) when the thread that
    /// forked it exits (daemons, pool workers): SIGHUP as the parent-death signal.
    pub die_with_parent: bool,
    /// The pid the child must see as its parent; checked right after the parent-death
    /// signal is armed, so a parent that died before that is still noticed.
    pub expected_parent: i32,
    /// Mark every descriptor above stdio close-on-exec (spawn only).
    pub cloexec_above_stdio: bool,
}

/// The set-up step that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetupStep {
    /// `setpgid(0, 0)`.
    ProcessGroup,
    /// `setpriority`.
    Nice,
    /// `prctl(PR_SET_PDEATHSIG)`.
    ParentDeathSignal,
    /// The parent was already gone.
    ParentGone,
    /// Resetting signal dispositions.
    Signals,
    /// Marking descriptors close-on-exec.
    Descriptors,
}

/// A failed set-up step and its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupError {
    /// Which step.
    pub step: SetupStep,
    /// The errno it failed with (0 for [`SetupStep::ParentGone`]).
    pub errno: i32,
}

/// Applies `setup` to the calling process. Async-signal-safe.
pub fn apply(setup: &ChildSetup) -> Result<(), SetupError> {
    let fail = |step| move |errno| SetupError { step, errno };
    os::new_process_group().map_err(fail(SetupStep::ProcessGroup))?;
    if let Some(nice) = setup.nice {
        os::set_nice(nice).map_err(fail(SetupStep::Nice))?;
    }
    os::reset_signals().map_err(fail(SetupStep::Signals))?;
    if setup.die_with_parent {
        os::hang_up_when_parent_dies().map_err(fail(SetupStep::ParentDeathSignal))?;
        if os::parent_pid() != setup.expected_parent {
            return Err(SetupError {
                step: SetupStep::ParentGone,
                errno: 0,
            });
        }
    }
    if setup.cloexec_above_stdio {
        os::cloexec_above_stdio().map_err(fail(SetupStep::Descriptors))?;
    }
    Ok(())
}
