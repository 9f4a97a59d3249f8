//! Daemon and non-daemon processes: `join`, `join_timeout`, `terminate`, exit codes.
//!
//! A daemon process dies with its parent (even if the parent is SIGKILLed) and may not
//! start processes of its own; a non-daemon process outlives a killed parent, and a
//! parent returning from `main` waits for it, as in Python.
//!
//! Run: `cargo run --release --example daemons`

use std::time::Duration;

use supervisor::Process;

fn work(ms: u64) -> String {
    std::thread::sleep(Duration::from_millis(ms));
    format!("worked {ms} ms in process {}", std::process::id())
}
supervisor::task!(work);

/// Tries to start a child: a daemon is not allowed to.
fn try_child(_: ()) -> String {
    match Process::builder(work, 1).start() {
        Ok(mut p) => format!("started a child: {:?}", p.join().map_err(|e| e.to_string())),
        Err(e) => format!("refused: {e}"),
    }
}
supervisor::task!(try_child);

fn main() -> Result<(), supervisor::Error> {
    supervisor::init();

    let mut daemon = Process::builder(work, 300)
        .name("daemon")
        .daemon(true)
        .start()?;
    let mut plain = Process::builder(work, 100).name("non-daemon").start()?;
    println!(
        "started {} (pid {}, daemon: {})",
        daemon.name(),
        daemon.pid(),
        daemon.is_daemon()
    );
    println!(
        "started {} (pid {}, daemon: {})",
        plain.name(),
        plain.pid(),
        plain.is_daemon()
    );

    println!("join non-daemon: {}", plain.join()?);
    println!("  exitcode {:?}", plain.exitcode());

    match daemon.join_timeout(Duration::from_millis(50)) {
        None => println!(
            "join_timeout(50ms) on the daemon: still running (alive: {})",
            daemon.is_alive()
        ),
        Some(r) => println!("join_timeout(50ms) on the daemon: finished early: {r:?}"),
    }
    println!("join daemon: {}", daemon.join()?);

    let mut sleeper = Process::builder(work, 60_000).name("sleeper").start()?;
    sleeper.terminate()?;
    let _ = sleeper.join();
    println!(
        "terminate -> exitcode {:?} (minus SIGTERM, as in Python)",
        sleeper.exitcode()
    );

    let mut d = Process::builder(try_child, ()).daemon(true).start()?;
    println!("a daemon trying to start a child: {}", d.join()?);
    let mut n = Process::builder(try_child, ()).start()?;
    println!("a non-daemon trying to start a child: {}", n.join()?);
    Ok(())
}
