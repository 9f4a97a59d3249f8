//! The command runner of command mode (`supervisor run -- COMMAND`): grouped output
//! through the library's runner, or streamed (`-u`, `--line-buffer`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use supervisor::{Captured, Command, ExitStatus};

use super::{cannot_start, failed, Failure, Job, Outcome, Output, Stream};

/// Bytes of each stream of a command kept in memory (in the worker, in transit and
/// in the run's reorder buffer); past it the stream is spooled to a private file.
pub const INLINE_LIMIT: u64 = 64 << 10;

/// Runs a command (command mode) with the library's command runner
/// ([`supervisor::run_command`]); its stdout is the output.
/// A failed run is run again by the pool (`--retries`: `PoolBuilder::retry_errors`),
/// within the budget a timeout or a dead worker uses.
pub fn exec(job: Job) -> Outcome {
    run_once(&job)
}

fn run_once(job: &Job) -> Outcome {
    // `{%}`: this worker's slot, known now that it runs the job.
    let seat = supervisor::worker_context().and_then(|c| c.seat);
    let slot = seat.map_or(0, |s| s + 1);
    let filled: Vec<Vec<u8>>;
    let argv: Vec<&[u8]> = if job.slots.is_empty() {
        job.argv.iter().map(|a| a.as_slice()).collect()
    } else {
        let mut argv: Vec<Vec<u8>> = job.argv.iter().map(|a| a.to_vec()).collect();
        super::super::replace::put_slot(&mut argv, &job.slots, u64::from(slot));
        filled = argv;
        filled.iter().map(Vec::as_slice).collect()
    };
    let Some((program, args)) = argv.split_first() else {
        return Err(Failure::Decode("empty command".into()));
    };
    if job.stream != Stream::Group {
        return run_streamed(job, program, args, slot);
    }
    let cmd = Command::new(OsStr::from_bytes(program))
        .args(args.iter().map(|a| OsStr::from_bytes(a)))
        .inline_limit(INLINE_LIMIT);
    let out = supervisor::run_command(cmd).map_err(|e| {
        let errno = match &e {
            supervisor::CommandError::Start { source, .. } => source.errno,
            _ => None,
        };
        cannot_start(supervisor_worker::error_chain(&e), errno)
    })?;
    let name = String::from_utf8_lossy(program);
    match out.status {
        ExitStatus::Code(0) => Ok(Output {
            text: out.stdout,
            stderr: out.stderr,
            json: false,
            pid: out.pid,
            slot,
        }),
        status => Err(Failure::Failed {
            message: match status {
                ExitStatus::Code(c) => format!("{name} exited with code {c}"),
                ExitStatus::Signal { signal, .. } => {
                    format!("{name} was killed by signal {}", signal.number())
                }
                ExitStatus::Unknown => format!("{name} failed"),
            },
            exit_code: match status {
                ExitStatus::Code(c) => Some(c),
                _ => None,
            },
            signal: match status {
                ExitStatus::Signal { signal, .. } => Some(signal.number()),
                _ => None,
            },
            stdout: out.stdout,
            stderr: out.stderr,
            pid: out.pid,
            slot,
            start_errno: None,
        }),
    }
}
supervisor::task!("command" => exec);

/// Runs a command whose output goes to the run's as it comes (`-u`) or line by line
/// (`--line-buffer`): the worker's stdout and stderr are the run's.
fn run_streamed(job: &Job, program: &[u8], args: &[&[u8]], slot: u32) -> Outcome {
    use std::process::Stdio;
    let name = String::from_utf8_lossy(program).into_owned();
    let lines = job.stream == Stream::Lines;
    let pipe_or_inherit = || {
        if lines {
            Stdio::piped()
        } else {
            Stdio::inherit()
        }
    };
    let started = std::process::Command::new(OsStr::from_bytes(program))
        .args(args.iter().map(|a| OsStr::from_bytes(a)))
        .stdin(Stdio::null())
        .stdout(pipe_or_inherit())
        .stderr(pipe_or_inherit())
        .spawn();
    let mut child = started
        .map_err(|e| cannot_start(format!("cannot start `{name}`: {e}"), e.raw_os_error()))?;
    let pid = child.id();
    let copied = if lines {
        let lock = job
            .lock
            .as_ref()
            .map(|p| std::path::PathBuf::from(OsStr::from_bytes(p)));
        let tag = job.tag.as_deref().map(|t| t.as_slice());
        let (out, err) = (child.stdout.take(), child.stderr.take());
        std::thread::scope(|scope| {
            let lock = lock.as_deref();
            let on_stderr = scope.spawn(move || match err {
                Some(pipe) => super::super::lines::copy(pipe, std::io::stderr(), tag, lock),
                None => Ok(()),
            });
            let on_stdout = match out {
                Some(pipe) => super::super::lines::copy(pipe, std::io::stdout(), tag, lock),
                None => Ok(()),
            };
            let on_stderr = on_stderr
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the stderr copier panicked")));
            on_stdout.and(on_stderr)
        })
    } else {
        Ok(())
    };
    if let Err(e) = copied {
        // Nothing takes its output any more: stop it.
        let _ = child.kill();
        let _ = child.wait();
        return Err(Failure::Output {
            // The run says "cannot write the output: " before it.
            message: e.to_string(),
            broken_pipe: e.kind() == std::io::ErrorKind::BrokenPipe,
        });
    }
    let status = child
        .wait()
        .map_err(|e| failed(format!("cannot wait for {name}: {e}")))?;
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(Output {
            text: Captured::default(),
            stderr: Captured::default(),
            json: false,
            pid,
            slot,
        }),
        (code, signal) => Err(Failure::Failed {
            message: match (code, signal) {
                (Some(c), _) => format!("{name} exited with code {c}"),
                (None, Some(s)) => format!("{name} was killed by signal {s}"),
                _ => format!("{name} failed"),
            },
            exit_code: code,
            signal,
            stdout: Captured::default(),
            stderr: Captured::default(),
            pid,
            slot,
            start_errno: None,
        }),
    }
}
