//! `supervisor`: run built-in tasks or shell commands over many inputs in supervised
//! worker processes. See `supervisor --help` and the README.

mod cli;

use clap::Parser;

use cli::args::{Cli, Command};
use cli::tasks::BUILTINS;

use cli::EXIT_USAGE;

fn main() {
    // First: a re-executed worker becomes a worker here and never returns.
    supervisor::init();
    if cli::stdout_was_closed() {
        eprintln!("supervisor: cannot write the output: standard output is closed");
        std::process::exit(cli::run::EXIT_OUTPUT);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            if let Some(hint) = cli::hint_for(&e) {
                eprintln!("\n  supervisor: {hint}");
            }
            std::process::exit(code);
        }
    };
    let result = match cli.command {
        Command::Run(args) => cli::run::run(*args),
        Command::Tasks => {
            for (name, input, output) in BUILTINS {
                println!("{name:<14} input: {input}\n{:<14} output: {output}", "");
            }
            Ok(0)
        }
        Command::Status { pidfile } => cli::control::status(&pidfile),
        Command::Stop {
            pidfile,
            wait,
            timeout,
        } => cli::control::stop(&pidfile, wait, timeout),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("supervisor: {e:#}");
            EXIT_USAGE
        }
    };
    std::process::exit(code);
}
