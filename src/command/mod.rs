//! Commands as tasks: [`Command`] (what to run), [`run_command`] (the registered task
//! that runs it in a worker), [`CommandOutput`] and [`Captured`] (what came back).

mod captured;
mod output;
mod pool;
mod quote;
mod run;
mod spec;

pub(crate) use captured::linger as linger_spools;
pub(crate) use captured::{claim_spools, refers_to_spool};
pub use captured::{Captured, SpillFile};
pub use output::CommandOutput;
pub use pool::CommandResult;
pub use quote::shell_quote;
pub use run::run_command;
pub use spec::{Command, DEFAULT_INLINE_LIMIT};
