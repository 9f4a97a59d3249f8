//! Running programs with a deadline, and leaving processes out of a worker's group.

use std::time::{Duration, Instant};

use super::wait_exit;

/// What a program run by [`run_program`] gave.
pub struct Ran {
    /// Its exit code (-1 if a signal ended it).
    pub code: i32,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `program` in `dir` with `stdin`, both outputs drained as bytes; kills it and
/// fails if it outlives 60 s. `watch` is called with its pid every 10 ms while it runs.
pub fn run_program(
    program: &str,
    args: &[&std::ffi::OsStr],
    dir: &std::path::Path,
    stdin: &[u8],
    mut watch: impl FnMut(i32),
) -> Ran {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let text = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&text);
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id() as i32;
    let until = Instant::now() + Duration::from_secs(60);
    let mut finished = false;
    while Instant::now() < until {
        watch(pid);
        if wait_exit(pid, Duration::from_millis(10)) {
            finished = true;
            break;
        }
    }
    if !finished {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    writer.join().unwrap();
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    assert!(
        finished,
        "{program} {args:?} did not finish within 60 s; stderr: {stderr}"
    );
    Ran {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// Leaves a chain of `levels` shells, each ignoring SIGTERM in a session of its own
/// (`setsid`), the last one a `sleep` that ignores SIGTERM too; returns that sleep's
/// pid. Only the first shell is the task's child: each later one becomes the worker's
/// (its subreaper's) only once the one before it is dead.
#[expect(
    clippy::zombie_processes,
    reason = "the chain must outlive the task; the worker reaps what it ends"
)]
pub fn leave_a_chain_out_of_the_group(levels: u32) -> i32 {
    let dir = std::env::temp_dir();
    let tag = format!("chain-{}-{levels}", std::process::id());
    let script = dir.join(format!("{tag}.sh"));
    let pid_file = dir.join(format!("{tag}.pid"));
    std::fs::write(
        &script,
        "trap '' TERM\n\
         if [ \"$1\" -gt 0 ]; then setsid sh \"$0\" $(($1 - 1)) \"$2\" & \
         while :; do sleep 1; done; fi\n\
         echo $$ > \"$2.tmp\" && mv \"$2.tmp\" \"$2\"\n\
         exec sleep 3600\n",
    )
    .unwrap();
    let _first = std::process::Command::new("sh")
        .arg(&script)
        .arg(levels.to_string())
        .arg(&pid_file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sh");
    let until = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            break text.trim().parse().expect("a pid");
        }
        assert!(Instant::now() < until, "the chain did not start");
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(&script);
    pid
}
