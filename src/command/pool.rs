//! Running commands with a [`Pool`] or a [`Process`]: shorthands for the registered
//! task [`run_command`].

use super::{run_command, Command, CommandOutput};
use crate::error::CommandError;
use crate::{Imap, Pool, Process, ProcessBuilder, TaskHandle};

/// What a command task returns: how it ran, or why it could not be started.
pub type CommandResult = Result<CommandOutput, CommandError>;

impl Pool {
    /// Runs `cmd` in a worker, with the pool's timeout, retries, nice value and group
    /// kill (see [`Command`]). `wait()` gives `Ok(Ok(output))` for a command that ran
    /// (whatever its exit status), `Ok(Err(e))` if it could not be started, and
    /// `Err(e)` for what the pool reports (a timeout, a dead worker).
    pub fn submit_command(&self, cmd: Command) -> TaskHandle<CommandResult> {
        self.submit(run_command, cmd)
    }

    /// Runs each command in a worker, lazily, yielding results in input order
    /// ([`Pool::imap`] of [`run_command`]).
    pub fn map_commands<I>(&self, commands: I) -> Imap<CommandResult, I::IntoIter>
    where
        I: IntoIterator<Item = Command>,
    {
        self.imap(run_command, commands)
    }
}

impl Process<CommandResult> {
    /// Describes a process that runs `cmd` ([`run_command`]) and returns its output.
    pub fn command(cmd: Command) -> ProcessBuilder<CommandResult> {
        Process::builder(run_command, cmd)
    }
}
