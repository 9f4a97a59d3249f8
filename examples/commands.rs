//! Commands as tasks: a pool runs programs with its timeout, retries, nice value and
//! group kill, and hands back their exit status and output as bytes.
//!
//! Run: `cargo run --example commands`

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use supervisor::{shell_quote, Command, ErrorKind, Pool, Process};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    supervisor::init(); // first in main: a re-executed worker never returns from it

    let pool = Pool::builder()
        .procs(2)
        .nice(5)
        .retries(1)
        .task_timeout(Duration::from_secs(2))
        .build()?;

    // Standard input in, bytes out: binary data survives the trip.
    let gz = pool.submit_command(Command::shell("gzip -c")).wait()??;
    println!(
        "gzip -c of nothing: {} bytes, {}",
        gz.stdout.len(),
        gz.status
    );
    let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let out = pool
        .submit_command(Command::new("cat").stdin(data.clone()))
        .wait()??;
    println!(
        "cat: {} bytes back, identical: {}",
        out.stdout.len(),
        out.stdout.to_vec()? == data
    );

    // Many commands, results in input order; exit codes and stderr are data.
    let commands = ["true", "false", "nice"].map(Command::new);
    for (cmd, result) in ["true", "false", "nice"]
        .iter()
        .zip(pool.map_commands(commands))
    {
        let out = result??;
        let stdout = String::from_utf8_lossy(&out.stdout.to_vec()?)
            .trim()
            .to_string();
        println!(
            "{cmd}: {} (pid {}, {:?}) {stdout}",
            out.status, out.pid, out.duration
        );
    }

    // Data into a script: as positional parameters, or quoted. Never pasted raw.
    let hostile = "x; echo INJECTED";
    let out = pool
        .submit_command(Command::shell("printf '%s\\n' \"$1\"").arg(hostile))
        .wait()??;
    print!(
        "positional: {}",
        String::from_utf8_lossy(&out.stdout.to_vec()?)
    );
    let script = [
        b"printf '%s\\n' ".as_slice(),
        &shell_quote(hostile.as_bytes()),
    ]
    .concat();
    let out = pool
        .submit_command(Command::shell(OsStr::from_bytes(&script)))
        .wait()??;
    print!("quoted: {}", String::from_utf8_lossy(&out.stdout.to_vec()?));

    // A huge output is spooled to a private file, not held in memory.
    let big = pool
        .submit_command(Command::new("head").args(["-c", "50M", "/dev/zero"]))
        .wait()??;
    println!(
        "head -c 50M: {} bytes, spooled to a file: {}",
        big.stdout.len(),
        big.stdout.is_spooled()
    );

    // The pool's timeout kills the worker's group, the command with it.
    match pool.submit_command(Command::new("sleep").arg("60")).wait() {
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut { .. }) => println!("sleep 60: {e}"),
        other => println!("sleep 60: unexpected {other:?}"),
    }

    // A program that cannot start is an error value, not a crash.
    match pool
        .submit_command(Command::new("/no/such/program"))
        .wait()?
    {
        Err(e) => println!("/no/such/program: {}", chain(&e)),
        Ok(out) => println!("/no/such/program ran?! {}", out.status),
    }

    // One command in a process of its own.
    let mut p = Process::command(Command::new("uname").arg("-s")).start()?;
    let out = p.join()??;
    print!(
        "Process::command uname -s: {}",
        String::from_utf8_lossy(&out.stdout.to_vec()?)
    );
    pool.join();
    Ok(())
}

/// An error with its causes.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
