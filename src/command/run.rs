//! Running a [`Command`] in this process: the task a worker runs for
//! [`crate::Pool::submit_command`] and the CLI's command mode.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::{Instant, SystemTime};

use super::{Captured, Command, CommandOutput};
use crate::error::{CommandError, OsError};
use crate::os;

/// Size of one read from a command's pipe.
const CHUNK: usize = 64 << 10;

impl Command {
    /// Runs the command in the calling process and waits for it, capturing its
    /// standard output and error (spooled past [`Command::inline_limit`]).
    pub fn output(&self) -> Result<CommandOutput, CommandError> {
        run_command(self.clone())
    }
}

/// The registered task behind [`crate::Pool::submit_command`]: runs `cmd` in the
/// worker and returns what it did. Usable with any pool or process method
/// (`pool.imap(supervisor::run_command, commands)`).
pub fn run_command(cmd: Command) -> Result<CommandOutput, CommandError> {
    super::captured::release_received();
    let program = cmd.program_name();
    let capture_error = |e: io::Error| CommandError::Capture {
        program: program.clone(),
        source: OsError::from(e),
    };
    let (mut std_cmd, input, limit) = cmd.into_std();
    std_cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = SystemTime::now();
    let t0 = Instant::now();
    let mut child = std_cmd.spawn().map_err(|e| CommandError::Start {
        program: program.clone(),
        source: OsError::from(e),
    })?;
    let pid = child.id();
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let streams = std::thread::scope(|scope| {
        let r = read_streams(scope, stdin, input, stdout, stderr, limit);
        if r.is_err() {
            // Nothing reads its output any more: end it, so the stdin writer ends too.
            os::kill_pid(pid as i32, crate::Signal::KILL.number());
        }
        r
    });
    let (stdout, stderr) = match streams {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(capture_error(e));
        }
    };
    let status = child.wait().map_err(capture_error)?;
    let duration = t0.elapsed();
    use std::os::unix::process::ExitStatusExt;
    Ok(CommandOutput {
        status: crate::ExitStatus::from_raw(status.into_raw()),
        stdout,
        stderr,
        pid,
        started,
        duration,
    })
}

/// Feeds standard input (on a thread, when there is any) and reads both output
/// streams at once on this thread (`poll`), so that a command blocked on one pipe never
/// stalls the other.
fn read_streams<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    stdin: Option<std::process::ChildStdin>,
    input: Option<Vec<u8>>,
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
    limit: u64,
) -> io::Result<(Captured, Captured)> {
    if let (Some(mut pipe), Some(input)) = (stdin, input) {
        std::thread::Builder::new()
            .name("supervisor-stdin".into())
            .spawn_scoped(scope, move || {
                // A command that does not read it all is not an error (EPIPE).
                let _ = pipe.write_all(&input);
            })?;
    }
    let mut sinks = [Sink::new(limit), Sink::new(limit)];
    let mut open: Vec<(std::fs::File, usize)> = Vec::with_capacity(2);
    open.extend(stdout.map(|p| (std::fs::File::from(OwnedFd::from(p)), 0)));
    open.extend(stderr.map(|p| (std::fs::File::from(OwnedFd::from(p)), 1)));
    let mut buf = vec![0u8; CHUNK];
    while !open.is_empty() {
        let fds: Vec<&std::fs::File> = open.iter().map(|(f, _)| f).collect();
        let ready = os::poll_readable(&fds, None)?;
        let mut closed = Vec::new();
        for (k, (file, which)) in open.iter().enumerate() {
            if !ready[k] {
                continue;
            }
            let n = match (&*file).read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                closed.push(k);
            } else {
                sinks[*which].push(&buf[..n])?;
            }
        }
        for k in closed.into_iter().rev() {
            open.remove(k);
        }
    }
    let [out, err] = sinks;
    Ok((out.finish(), err.finish()))
}

/// One output stream being captured: in memory up to `limit` bytes, then in a spool.
struct Sink {
    limit: u64,
    mem: Vec<u8>,
    spool: Option<(std::fs::File, u64)>,
}

impl Sink {
    fn new(limit: u64) -> Sink {
        Sink {
            limit,
            mem: Vec::new(),
            spool: None,
        }
    }

    fn push(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.spool {
            Some((file, len)) => {
                file.write_all(data)?;
                *len += data.len() as u64;
            }
            None if (self.mem.len() + data.len()) as u64 > self.limit => {
                let mut file = Captured::new_spool()?;
                file.write_all(&self.mem)?;
                file.write_all(data)?;
                self.spool = Some((file, (self.mem.len() + data.len()) as u64));
                self.mem = Vec::new();
            }
            None => self.mem.extend_from_slice(data),
        }
        Ok(())
    }

    fn finish(self) -> Captured {
        match self.spool {
            Some((file, len)) => Captured::spooled(file, len),
            None => Captured::from_bytes(self.mem),
        }
    }
}

supervisor_worker::task!("supervisor::command" => run_command);
