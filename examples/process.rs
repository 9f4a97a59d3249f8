//! The Process API end to end: start, join, exit codes, typed failures, timeouts,
//! terminate and kill, daemons and nice, under each start method.
//!
//! Run: `cargo run --release --example process`

use std::time::{Duration, Instant};

use supervisor::{Error, Process, StartMethod};

/// An ordinary function; one line below makes it runnable in a worker process.
fn square(x: u64) -> u64 {
    x * x
}
supervisor::task!(square);

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
supervisor::task!(sleep_ms);

/// Reports the worker's pid and nice value.
fn whoami(_: ()) -> (u32, i32) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let nice = after_name
        .split_whitespace()
        .nth(16)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (std::process::id(), nice)
}
supervisor::task!(whoami);

/// A task that crashes in different ways, to show isolation.
fn misbehave(how: String) -> u64 {
    match how.as_str() {
        "panic" => panic!("something went wrong"),
        "segfault" => {
            // SAFETY: none: crashing the worker on purpose.
            unsafe { std::ptr::null_mut::<u64>().write_volatile(0) };
            0
        }
        "abort" => std::process::abort(),
        _ => std::process::exit(3),
    }
}
supervisor::task!(misbehave);

fn main() -> Result<(), Error> {
    // First in main: in a worker process this call never returns.
    supervisor::init();

    println!("== start and join, per start method");
    for method in StartMethod::ALL {
        let t = Instant::now();
        let mut p = Process::builder(square, 12).start_method(method).start()?;
        let value = p.join()?;
        println!(
            "  {method:<10} square(12) = {value} in pid {} (exitcode {:?}) after {:?}",
            p.pid(),
            p.exitcode(),
            t.elapsed()
        );
    }

    println!("== failures are typed values; the parent carries on");
    for how in ["panic", "segfault", "abort", "exit"] {
        let mut p = Process::builder(misbehave, how.to_string()).start()?;
        match p.join() {
            Ok(v) => println!("  {how:<9} returned {v}?!"),
            Err(e) => println!("  {how:<9} exitcode {:>4?}: {e}", p.exitcode().unwrap_or(0)),
        }
    }

    println!("== join_timeout, terminate, kill");
    let mut p = Process::builder(sleep_ms, 60_000).name("sleeper").start()?;
    let t = Instant::now();
    let waited = p.join_timeout(Duration::from_millis(100));
    println!(
        "  join_timeout(100ms) on {} -> {} after {:?}; alive: {}",
        p.name(),
        if waited.is_none() {
            "still running"
        } else {
            "finished"
        },
        t.elapsed(),
        p.is_alive()
    );
    p.terminate()?;
    let _ = p.join();
    println!("  terminate -> exitcode {:?}", p.exitcode());
    let mut p = Process::builder(sleep_ms, 60_000).start()?;
    p.kill()?;
    let _ = p.join();
    println!("  kill      -> exitcode {:?}", p.exitcode());

    println!("== daemon and nice");
    let mut p = Process::builder(whoami, ()).daemon(true).nice(10).start()?;
    let (pid, nice) = p.join()?;
    println!("  daemon worker {pid} ran at nice {nice}; a daemon dies with its parent");
    match Process::builder(square, 1).nice(-10).start() {
        Ok(mut p) => println!("  nice -10 allowed here (privileged): {:?}", p.join()),
        Err(e) => println!("  nice -10 refused: {e}"),
    }

    println!("== dropped handles are reaped, never zombies");
    for i in 0..100 {
        drop(
            Process::builder(square, i)
                .start_method(StartMethod::Fork)
                .start()?,
        );
    }
    println!("  100 processes started and dropped without join");
    Ok(())
}
