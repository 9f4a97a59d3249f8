//! `supervisor`: run built-in tasks or shell commands over many inputs in supervised
//! worker processes. See `supervisor --help` and the README.

#[macro_use]
mod cli;

use clap::Parser;

use cli::args::{Cli, Command};
use cli::tasks::BUILTINS;

use cli::EXIT_USAGE;

/// The least address space (`RLIMIT_AS`) a run starts with: below about 30 MiB, the
/// supervisor's threads and allocations fail at random (measured: 21-25 MiB aborted
/// with "memory allocation of N bytes failed", 16-18 MiB failed to start threads).
const MIN_ADDRESS_SPACE: u64 = 32 << 20;

fn main() {
    // First: a re-executed worker becomes a worker here and never returns.
    supervisor::init();
    if cli::stdout_was_closed() {
        say!("supervisor: cannot write the output: standard output is closed");
        std::process::exit(cli::run::EXIT_OUTPUT);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if !e.use_stderr() {
                // --help, --version: to stdout, whose failure is said.
                let text = e.render().to_string();
                std::process::exit(cli::print_out(&text).err().unwrap_or(0));
            }
            say!("{}", cli::short_usage_error(&e));
            std::process::exit(EXIT_USAGE);
        }
    };
    if matches!(cli.command, Command::Run(_) | Command::Worker(_)) {
        if let Some(limit) = cli::sys::address_space_limit().filter(|l| *l < MIN_ADDRESS_SPACE) {
            // Below it, threads fail to start (said as the process limit) or an
            // allocation aborts the run without a word on the cause.
            say!(
                "supervisor: the address-space limit (ulimit -v, RLIMIT_AS) is {} KiB; \
                 the supervisor needs at least {} KiB to run its threads and workers: \
                 raise ulimit -v",
                limit / 1024,
                MIN_ADDRESS_SPACE / 1024
            );
            std::process::exit(EXIT_USAGE);
        }
    }
    let result = match cli.command {
        Command::Run(args) => cli::run::run(*args),
        Command::Tasks => {
            let text: String = BUILTINS
                .iter()
                .map(|(name, input, output)| {
                    format!("{name:<14} input: {input}\n{:<14} output: {output}\n", "")
                })
                .collect();
            Ok(cli::print_out(&text).err().unwrap_or(0))
        }
        Command::Status { pidfile } => cli::control::status(&pidfile),
        Command::Stop {
            pidfile,
            wait,
            timeout,
        } => cli::control::stop(&pidfile, wait, timeout),
        #[cfg(feature = "cluster")]
        Command::Worker(args) => cli::worker::worker(*args),
        #[cfg(feature = "cluster")]
        Command::Workers { nats, format } => cli::worker::workers(&nats, format),
        #[cfg(not(feature = "cluster"))]
        Command::Worker(_) | Command::Workers { .. } => {
            say!("supervisor: this build has no `cluster` feature");
            Ok(EXIT_USAGE)
        }
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            say!("supervisor: {}", supervisor_worker::error_chain(e.as_ref()));
            EXIT_USAGE
        }
    };
    std::process::exit(code);
}
