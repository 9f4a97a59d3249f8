//! The `supervisor` command line.

/// Writes a line to stderr; an unwritable stderr (a full disk) loses the message, never
/// the run (`eprintln!` panics then).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod args;
pub mod control;
mod halt;
mod hints;
mod input;
mod joblog;
mod json_bytes;
#[cfg(test)]
mod json_cost;
mod json_lines;
mod lines;
mod pidfile;
mod replace;
pub mod report;
pub mod run;
mod source;
mod sources;
mod specs;
pub(crate) mod sys;
mod task_wire;
pub mod tasks;
#[cfg(feature = "cluster")]
pub mod worker;

/// Whether standard output was closed when the program started (`>&-`).
pub fn stdout_was_closed() -> bool {
    sys::was_closed_at_start(1)
}

/// What to use instead of a GNU parallel or xargs option clap did not know.
pub fn hint_for(e: &clap::Error) -> Option<&'static str> {
    if e.kind() != clap::error::ErrorKind::UnknownArgument {
        return None;
    }
    match e.get(clap::error::ContextKind::InvalidArg) {
        Some(clap::error::ContextValue::String(arg)) => hints::for_option(arg),
        _ => None,
    }
}

/// A usage error of clap's in two lines at most: its own message (without the tip,
/// the usage and the pointer to `--help` that take four more), then what to use
/// instead of a GNU parallel or xargs option, or where the options are listed.
pub fn short_usage_error(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments");
    let message = first.strip_prefix("error: ").unwrap_or(first);
    // `Usage: supervisor run [OPTIONS] ...`: the command whose --help lists the options.
    let command: Vec<&str> = rendered
        .lines()
        .find_map(|l| l.strip_prefix("Usage: "))
        .map(|u| {
            u.split_whitespace()
                .take_while(|w| !w.starts_with(['[', '<', '-']))
                .collect()
        })
        .unwrap_or_default();
    let command = if command.is_empty() {
        // No usage line (a missing value): the subcommand given, if it is one.
        use clap::CommandFactory as _;
        let given = std::env::args().nth(1).unwrap_or_default();
        let known = args::Cli::command()
            .get_subcommands()
            .any(|c| c.get_name() == given);
        if known {
            format!("supervisor {given}")
        } else {
            "supervisor".to_string()
        }
    } else {
        command.join(" ")
    };
    match hint_for(e) {
        Some(hint) => format!("supervisor: {message}\nsupervisor: {hint}"),
        None => format!("supervisor: {message}; see `{command} --help`"),
    }
}

/// Writes `text` to stdout; on failure says why and gives the exit code: 141 for a
/// closed pipe (silently), 3 otherwise (a full disk).
pub fn print_out(text: &str) -> Result<(), i32> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(run::EXIT_STDOUT_CLOSED),
        Err(e) => {
            say!("supervisor: cannot write the output: {e}");
            Err(run::EXIT_OUTPUT)
        }
    }
}

/// Exit code of a usage or configuration error.
pub const EXIT_USAGE: i32 = 2;

/// Exit code of a cluster run (`run --nats`) whose server stayed unreachable past
/// `--nats-timeout`.
pub const EXIT_CLUSTER: i32 = 4;

/// A usage or configuration error: exit code 2, nothing started.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}
