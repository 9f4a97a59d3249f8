//! What happens when `main` forgets `supervisor::init()`.
//!
//! A spawned worker is this very program started again: it runs `main` from the top
//! until `supervisor::init()` turns it into a worker. Without `init()` it would go on
//! to build a pool of its own, whose workers would do the same, and so on: a fork
//! bomb. Instead, starting a `Process` or a `Pool` without `init()` fails at once with a
//! message that says to call `supervisor::init()` first in `main`, and a spawned
//! worker that gets there exits before starting anything: there is never more than one
//! generation of workers.
//!
//! Run: `cargo run --example forgot_init` (main never calls `init()`: the process and
//! the pool are refused), or `cargo run --example forgot_init -- --late` (`init()` only
//! runs when the program has arguments, as if argument parsing came first; spawned
//! workers start without arguments and skip it, and the error names the worker that got
//! there without it). Both end with exit code 1. Each process that runs `main` says so.

use std::process::ExitCode;

use supervisor::{Pool, Process};

fn square(x: u64) -> u64 {
    x * x
}
supervisor::task!(square);

fn main() -> ExitCode {
    println!(
        "main runs in process {} (parent {})",
        std::process::id(),
        std::os::unix::process::parent_id()
    );
    // The mistake: `supervisor::init()` belongs first in main, unconditionally.
    if std::env::args().len() > 1 {
        supervisor::init();
    }
    let process = Process::builder(square, 7)
        .start()
        .and_then(|mut p| p.join());
    let pool = Pool::new(4).and_then(|pool| pool.apply(square, 7));
    let mut failed = false;
    for (what, result) in [("process", process), ("pool", pool)] {
        match result {
            Ok(v) => println!("{what}: square(7) = {v}"),
            Err(e) => {
                failed = true;
                println!("{what}: error: {}", chain(&e));
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// An error and its sources, joined with ": ".
fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    message
}
