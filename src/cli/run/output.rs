//! Printing the results, in input order or as they finish (text, `--tag` or JSON,
//! `--results` files), and `--dry-run`'s command lines.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use anyhow::Context;
use serde::Serialize;
use supervisor::ErrorKind;

use super::super::args::{Format, RunArgs};
use super::super::replace::{Fill, Template};
use super::super::report::Record;
use super::super::source::Source;
use super::super::sources::Records;
use super::super::tasks::{Failure, Stream};
use super::exit::{EXIT_OK, EXIT_OUTPUT, EXIT_STDOUT_CLOSED};
use super::hold::Holding;
use super::jobs::Inputs;
use super::progress::Meter;
use super::stop::{stopped_error, StoppedByRun, STOP_OUTPUT_ERROR, STOP_STDOUT};

/// Stops the run after stdout failed: quietly if it was closed (`| head`), with the
/// cause (kept in `first`) otherwise (a full disk).
pub(super) fn output_failed(
    e: std::io::Error,
    first: &mut Option<std::io::Error>,
    request_stop: &dyn Fn(i32),
) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        request_stop(STOP_STDOUT);
    } else {
        request_stop(STOP_OUTPUT_ERROR);
        first.get_or_insert(e);
    }
}

/// What [`print`] reads and counts.
pub(super) struct Printing<'a> {
    pub args: &'a RunArgs,
    pub task: &'a str,
    pub command_mode: bool,
    pub output_stream: Stream,
    pub inputs: &'a RefCell<Inputs>,
    /// What the results waiting for their turn keep.
    pub holding: &'a RefCell<Holding>,
    pub stopped_by_run: &'a RefCell<StoppedByRun>,
    pub stop: &'a AtomicI32,
    pub request_stop: &'a dyn Fn(i32),
    pub done: &'a AtomicU64,
    pub failed: &'a AtomicU64,
    /// Writes out the job logs' buffered lines (called before each write of stdout).
    pub flush_logs: &'a dyn Fn(),
}

/// What [`print`] counted besides the successes and failures.
pub(super) struct Printed {
    /// Never started: the run was stopped, or the pool broke, before they started.
    pub cancelled: u64,
    /// Stopped while they ran: by the run, or with the workers of a broken pool.
    pub stopped: u64,
    /// Stopped or never started although nobody stopped the run (the pool broke):
    /// they make it fail.
    pub unfinished: u64,
    /// Why the output could not be written, if it could not (other than a closed pipe).
    pub output_error: Option<std::io::Error>,
}

/// Prints each report of `reports` as it comes.
pub(super) fn print<I: Iterator>(
    reports: &mut Source<I>,
    progress: &mut Meter,
    printing: Printing<'_>,
) -> anyhow::Result<Printed>
where
    I::Item: Serialize,
{
    let Printing {
        args,
        task,
        command_mode,
        output_stream,
        inputs,
        holding,
        stopped_by_run,
        stop,
        request_stop,
        done,
        failed,
        flush_logs,
    } = printing;
    let mut cancelled = 0u64;
    let mut stopped = 0u64;
    let mut unfinished = 0u64;
    let mut output_error: Option<std::io::Error> = None;
    let stdout = std::io::stdout();
    // Buffered, and flushed whenever the next result is not in yet: one write per
    // burst of results instead of one per line, and nothing held back while waiting.
    // The job logs' lines go first: a task's output is never printed before its line.
    let mut out = std::io::BufWriter::with_capacity(
        64 * 1024,
        LogsFirst {
            out: stdout.lock(),
            flush_logs,
        },
    );
    while let Some((mut report, host)) = reports.next() {
        holding.borrow_mut().printed(report.index);
        let pending = inputs.borrow_mut().remove(report.index);
        let seq = pending.as_ref().map_or(report.index as u64 + 1, |p| p.seq);
        let pending = pending.unwrap_or_default();
        let stopped_here = {
            let mut stopped = stopped_by_run.borrow_mut();
            if stopped.is_empty() {
                None
            } else {
                stopped.remove(&report.index)
            }
        };
        if let Some(broken) = stopped_here {
            report.result = Err(stopped_error(task, report.meta.pid, broken));
        }
        // `-u` / `--line-buffer`: a worker could not write a command's output to ours
        // (with `-u`, a command killed by SIGPIPE: it wrote to our closed stdout).
        let output_broke = match &report.result {
            Ok(Err(Failure::Output {
                message,
                broken_pipe,
            })) => Some((message.clone(), *broken_pipe)),
            Ok(Err(Failure::Failed {
                signal: Some(libc::SIGPIPE),
                ..
            })) if output_stream == Stream::Ungroup => Some(("broken pipe".to_string(), true)),
            _ => None,
        };
        if let Some((message, broken_pipe)) = output_broke {
            let kind = if broken_pipe {
                std::io::ErrorKind::BrokenPipe
            } else {
                std::io::ErrorKind::Other
            };
            output_failed(
                std::io::Error::new(kind, message),
                &mut output_error,
                request_stop,
            );
            progress.inc();
            continue;
        }
        let broke =
            matches!(&report.result, Err(e) if matches!(e.kind(), ErrorKind::PoolBroken { .. }));
        let mut record = Record::new(seq, pending.input, report.meta, report.result);
        record.host = host;
        let stopped_run = stop.load(Ordering::SeqCst) != 0;
        let never_started = matches!(&record.result, Err(e) if e.kind == "cancelled");
        // Not run because the run was stopped: counted, not said task by task.
        let not_run = never_started && stopped_run;
        let was_stopped = matches!(&record.result, Err(e) if e.kind == "stopped");
        if record.ok() {
            done.fetch_add(1, Ordering::Relaxed);
        } else if never_started && (stopped_run || broke) {
            cancelled += 1;
        } else if was_stopped {
            stopped += 1;
        } else {
            // Not run although nobody stopped the run (the pool ended under it): a
            // failure, never a quiet success.
            failed.fetch_add(1, Ordering::Relaxed);
        }
        // Stopped or never run although nobody stopped the run (the pool broke under
        // it): the run failed (exit 1), whatever column counts them.
        if (never_started || was_stopped) && !stopped_run {
            unfinished += 1;
        }
        if let Some(dir) = &args.results {
            if !(not_run || was_stopped) {
                // A full disk is an output error (exit 3), as for stdout.
                let values = match &pending.values {
                    Some(values) => &values[..],
                    None => std::slice::from_ref(&record.input),
                };
                if let Err(e) = record.write_results(dir, values) {
                    let e =
                        std::io::Error::other(format!("the results under {}: {e}", dir.display()));
                    output_failed(e, &mut output_error, request_stop);
                }
            }
        }
        let written = progress.suspend(|| -> std::io::Result<()> {
            match args.format {
                // The output is in the files, the command's stderr too (parallel
                // prints neither); failures are still said, in one line each.
                Format::Text if args.results.is_some() => {
                    if !not_run && record.result.is_err() {
                        flush_logs();
                        let _ = record.write_failure(&mut std::io::stderr().lock());
                    }
                }
                Format::Json => {
                    record.write_json(&mut out, command_mode)?;
                    // A command's own stderr still reaches ours, grouped per task.
                    if !record.command_stderr().is_empty() {
                        out.flush()?;
                        flush_logs();
                        let _ = record.write_command_stderr(&mut std::io::stderr().lock());
                    }
                }
                Format::Text if args.tag => {
                    let mut tagged = super::super::report::Tagged::new(&mut out, &record.input);
                    record.write_stdout(&mut tagged, command_mode)?;
                    tagged.finish()?;
                    if !not_run && record.has_stderr() {
                        out.flush()?;
                        flush_logs();
                        let _ = record.write_stderr(&mut std::io::stderr().lock());
                    }
                }
                Format::Text => {
                    record.write_stdout(&mut out, command_mode)?;
                    if !not_run && record.has_stderr() {
                        out.flush()?;
                        flush_logs();
                        let _ = record.write_stderr(&mut std::io::stderr().lock());
                    }
                }
            }
            if args.daemon || !reports.ready() {
                out.flush()?;
            }
            Ok(())
        });
        if let Err(e) = written {
            output_failed(e, &mut output_error, request_stop);
        }
        progress.inc();
    }
    if let Err(e) = out.flush() {
        output_failed(e, &mut output_error, request_stop);
    }
    drop(out);
    Ok(Printed {
        cancelled,
        stopped,
        unfinished,
        output_error,
    })
}

/// The run's stdout, which writes out the job logs' lines before each write of its own.
struct LogsFirst<'a, W: Write> {
    out: W,
    flush_logs: &'a dyn Fn(),
}

impl<W: Write> Write for LogsFirst<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (self.flush_logs)();
        self.out.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        (self.flush_logs)();
        self.out.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// `--dry-run`: prints each command line (or task and input) instead of running it.
pub(super) fn dry_run(
    records: Records,
    template: Option<&Template>,
    task: &str,
    procs: usize,
) -> anyhow::Result<i32> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (i, record) in records.enumerate() {
        let record = record.context("cannot read the input")?;
        let line = match template {
            Some(t) => t.display(&Fill {
                fields: record.fields(),
                whole: &record.whole,
                seq: i as u64 + 1,
                // As parallel's --dry-run: the slots taken in turn.
                slot: Some((i % procs.max(1)) as u64 + 1),
            }),
            None => [task.as_bytes(), b" ", &record.whole].concat(),
        };
        let written = out.write_all(&line).and_then(|()| out.write_all(b"\n"));
        if let Err(e) = written {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(EXIT_STDOUT_CLOSED);
            }
            say!("supervisor: cannot write the output: {e}");
            return Ok(EXIT_OUTPUT);
        }
    }
    match out.flush() {
        Ok(()) => Ok(EXIT_OK),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(EXIT_STDOUT_CLOSED),
        Err(e) => {
            say!("supervisor: cannot write the output: {e}");
            Ok(EXIT_OUTPUT)
        }
    }
}
