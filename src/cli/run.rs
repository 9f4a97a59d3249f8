//! `supervisor run`: input lines in, one task per line through a supervised pool,
//! records out (text or JSON, input order or as they finish), with progress, job log,
//! fail-fast, per-worker stats, clean signal handling and a detached mode.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::fd::AsFd;

use super::halt::{Halt, Tally, What, When};
use super::joblog;
use super::replace::{Fill, Template};
use super::sources::{self, Columns, Origin, Records};
use super::specs;
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use supervisor::{Pool, StartMethod, WorkerState};

use super::args::{Format, JoblogFormat, Method, Progress, RunArgs};
use super::control::{self, Daemon};
use super::report::Record;
use super::source::Source;
use super::sys;
use super::tasks::{check_args, Failure, Job, Outcome, Stream, BUILTINS};
use super::Usage;

/// Exit codes (documented in `--help` and the README).
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_SIGINT: i32 = 130;
pub const EXIT_SIGTERM: i32 = 143;
/// Exit code of a run stopped by SIGHUP (its terminal went away): as SIGTERM otherwise.
pub const EXIT_SIGHUP: i32 = 129;
/// Exit code of a run whose output could not be written (other than a closed pipe).
pub const EXIT_OUTPUT: i32 = 3;
/// Standard output was closed (for example `| head`): the run stopped quietly.
pub const EXIT_STDOUT_CLOSED: i32 = 141;

/// Most worker processes a run may ask for.
const MAX_PROCS: usize = 4096;

// Why the run stopped early (0: it did not).
/// `--halt` (or `--fail-fast`) was reached.
const STOP_HALT: i32 = -1;
/// `--halt soon` was reached: nothing more starts, running tasks finish. A signal
/// after it still stops the run gracefully first (it is not a second stop request).
const STOP_HALT_SOON: i32 = -4;
const STOP_STDOUT: i32 = -2;
const STOP_OUTPUT_ERROR: i32 = -3;
/// `--nats`: the run cannot go on (its server unreachable past `--nats-timeout`).
const STOP_CLUSTER: i32 = -5;

/// The exit code of a run stopped by `signal`, if it is one of ours.
fn signal_exit_code(signal: i32) -> Option<i32> {
    match signal {
        libc::SIGINT => Some(EXIT_SIGINT),
        libc::SIGTERM => Some(EXIT_SIGTERM),
        libc::SIGHUP => Some(EXIT_SIGHUP),
        _ => None,
    }
}

/// After a second stop request the run ends now: the main thread normally does so at
/// once (the pool is killed); if it cannot (blocked writing to an output nobody reads,
/// which no signal interrupts), the process exits from here a second later, with
/// `code`. A run that ends first takes this thread with it.
fn exit_soon_unless_done(code: i32) {
    let _ = std::thread::Builder::new()
        .name("supervisor-exit".into())
        .spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(1));
            super::sys::exit_now(code);
        });
}

/// Stops the run after stdout failed: quietly if it was closed (`| head`), with the
/// cause (kept in `first`) otherwise (a full disk).
fn output_failed(
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

/// Inputs read ahead of the output, per worker: enough for the pool to merge tiny
/// tasks into messages of a few hundred calls (the pool never sends work ahead of a
/// worker's running task, so this changes no task's start or timeout).
const READ_AHEAD_PER_WORKER: usize = 1024;

/// Command mode's read-ahead per worker: a command takes a millisecond at least, so a
/// few dozen per message is plenty, and results waiting for their turn (each up to
/// [`super::tasks::INLINE_LIMIT`] per stream in memory, or a spool descriptor) stay
/// bounded: 64 x 2 x 64 KiB = 8 MiB per worker at worst.
const COMMAND_READ_AHEAD_PER_WORKER: usize = 64;

fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

/// Runs `supervisor run`; returns the exit code.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let ready = Daemon::detached();
    let (command_words, mut groups) =
        sources::split_command(&args.command).map_err(|e| usage(e.to_string()))?;
    if let Some(first) = command_words.first().and_then(|w| w.to_str()) {
        // An option clap did not know lands here (the command may follow the options
        // without `--`); no program is called `-x`.
        if first.starts_with('-') {
            let hint = super::hints::for_option(first)
                .map(|h| format!("; {h}"))
                .unwrap_or_else(|| "; see `supervisor run --help`".to_string());
            return Err(usage(format!("unknown option `{first}`{hint}")));
        }
    }
    let (task, template) = match (&args.task, command_words.is_empty()) {
        (Some(task), true) => {
            if !BUILTINS.iter().any(|(name, _, _)| name == task) {
                return Err(usage(format!(
                    "unknown task `{task}` (`supervisor tasks` lists them)"
                )));
            }
            check_args(task, &args.args).map_err(usage)?;
            (task.clone(), None)
        }
        (None, false) => {
            if let Some((key, _)) = args.args.first() {
                return Err(usage(format!(
                    "--arg {key}=...: command mode takes no --arg (put it in the command)"
                )));
            }
            use std::os::unix::ffi::OsStrExt;
            let words: Vec<Vec<u8>> = command_words
                .iter()
                .map(|w| w.as_bytes().to_vec())
                .collect();
            let template =
                Template::for_command(&words, args.shell).map_err(|e| usage(e.to_string()))?;
            ("command".to_string(), Some(template))
        }
        (Some(_), false) => return Err(usage(
            "--task runs a built-in task; a command after it is not taken (give one or the other)",
        )),
        (None, true) => return Err(usage(
            "nothing to run: give --task NAME or a command (e.g. `supervisor run echo {} ::: a b`)",
        )),
    };
    let output_stream = match (args.line_buffer, args.ungroup) {
        (true, _) => Stream::Lines,
        (_, true) => Stream::Ungroup,
        _ => Stream::Group,
    };
    if output_stream != Stream::Group {
        let option = if args.ungroup { "-u" } else { "--line-buffer" };
        if template.is_none() {
            return Err(usage(format!(
                "{option} is for commands (their output as it comes); a built-in task's result is printed whole"
            )));
        }
        if args.format == Format::Json {
            return Err(usage(format!(
                "{option} prints the commands' output as it comes, which --format json cannot hold; use one or the other"
            )));
        }
    }
    let remote = remote_options(&args, template.is_some())?;
    if remote.is_some() && output_stream != Stream::Group {
        return Err(usage(
            "-u and --line-buffer print what a local worker's command writes as it writes it; with --nats the output comes back whole from the agents",
        ));
    }
    if let Some(nice) = args.nice {
        if !(-20..=19).contains(&nice) {
            return Err(usage(format!("--nice {nice} is outside -20..=19")));
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let procs = match &args.procs {
        Some(spec) => Some(specs::procs(spec, cpus).map_err(usage)?),
        None => None,
    };
    if procs.is_some_and(|p| p > MAX_PROCS) {
        return Err(usage(format!(
            "--procs {} is more than {MAX_PROCS}",
            procs.unwrap_or(0)
        )));
    }
    let (timeout, of_median) = match &args.timeout {
        Some(spec) => match specs::timeout(spec).map_err(usage)? {
            specs::Timeout::Fixed(limit) => (Some(limit), None),
            specs::Timeout::OfMedian(percent) => (None, Some(specs::MedianLimit::new(percent))),
        },
        None => (None, None),
    };
    let halt = match (&args.halt, args.fail_fast) {
        (Some(spec), _) => Halt::parse(spec).map_err(usage)?,
        (None, true) => Halt::parse("now,fail=1").map_err(usage)?,
        (None, false) => None,
    };
    let delimiter = match (&args.delimiter, args.null) {
        (Some(d), _) => sources::delimiter(d).map_err(|e| usage(e.to_string()))?,
        (None, true) => 0,
        (None, false) => b'\n',
    };
    let columns = match &args.colsep {
        Some(re) => Columns(Some(regex::bytes::Regex::new(re).map_err(|e| {
            usage(format!("--colsep {re:?} is not a regular expression: {e}"))
        })?)),
        None => Columns(None),
    };
    // Input sources: --input and -a first (each a source), then those after the command.
    let mut files: Vec<sources::Group> = args
        .input
        .iter()
        .chain(&args.arg_files)
        .map(|p| vec![Origin::File(p.clone())])
        .collect();
    files.append(&mut groups);
    let groups = files;
    let reads_stdin = groups.is_empty()
        || groups
            .iter()
            .flatten()
            .any(|o| matches!(o, Origin::File(p) if control::names_stdin(p)));
    let detached = ready.is_some();
    if !args.daemon && !detached && (args.output.is_some() || args.log.is_some()) {
        return Err(usage(
            "--output and --log go with --daemon (without it, results go to stdout)",
        ));
    }
    if !args.daemon && !detached && args.pidfile.is_some() {
        return Err(usage("--pidfile goes with --daemon"));
    }
    if args.daemon && reads_stdin {
        return Err(usage(
            "--daemon needs its input from files or arguments (--input FILE, -a FILE, ::: ARGS): stdin is not kept",
        ));
    }
    let total = if args.resume || args.resume_failed {
        None
    } else {
        known_total(&groups, delimiter)
    };
    let stop = Arc::new(AtomicI32::new(0));
    let records = Records::open(
        groups,
        delimiter,
        columns,
        // Our own buffer over descriptor 0, so we know when a record is buffered.
        || {
            std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map(std::fs::File::from)
        },
        stop.clone(),
    )
    .map_err(|e| usage(supervisor_worker::error_chain(&e)))?;
    if args.daemon && ready.is_none() {
        let pidfile = args
            .pidfile
            .as_deref()
            .context("--daemon needs --pidfile")?;
        let pid = control::launch(pidfile, &args.output, &args.log)?;
        let pidfile = args
            .pidfile
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        say!(
            "supervisor: running in the background as pid {pid}; `supervisor status --pidfile {pidfile}`"
        );
        return Ok(EXIT_OK);
    }
    if args.dry_run {
        return dry_run(records, template.as_ref(), &task, procs.unwrap_or(cpus));
    }
    let resume = match (&args.joblog, args.resume || args.resume_failed) {
        (Some(path), true) => Some(joblog::read(path).map_err(|e| {
            usage(format!(
                "--resume: {}: {}",
                path.display(),
                supervisor_worker::error_chain(&e)
            ))
        })?),
        _ => None,
    };
    let mut joblog = match &args.joblog {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(resume.is_some())
                .truncate(resume.is_none())
                .open(path)
                .map_err(|e| usage(format!("cannot write the job log {}: {e}", path.display())))?;
            let empty = file.metadata().map_or(true, |m| m.len() == 0);
            let mut log = std::io::BufWriter::new(file);
            if args.joblog_format == JoblogFormat::Tsv && empty {
                writeln!(log, "{}", joblog::HEADER).context("cannot write the job log")?;
                log.flush().context("cannot write the job log")?;
            }
            Some(log)
        }
        None => None,
    };
    let method = match args.start_method {
        Method::Spawn => StartMethod::Spawn,
        Method::Fork => StartMethod::Fork,
        Method::Forkserver => StartMethod::Forkserver,
    };
    let mut builder = Pool::builder()
        .start_method(method)
        .grace(args.grace)
        .retries(args.retries)
        // parallel's --retries: a command that fails runs again too, within the same
        // budget as a timeout or a dead worker.
        .retry_errors(template.is_some())
        .read_ahead_per_worker(if template.is_some() {
            COMMAND_READ_AHEAD_PER_WORKER
        } else {
            READ_AHEAD_PER_WORKER
        })
        .name("supervisor-worker");
    if let Some(procs) = procs {
        builder = builder.procs(procs);
    }
    if let Some(nice) = args.nice {
        builder = builder.nice(nice);
    }
    if let Some(limit) = timeout {
        builder = builder.task_timeout(limit);
    }
    if let Some(n) = args.max_tasks_per_child {
        builder = builder.max_tasks_per_child(n);
    }
    if let Some(bytes) = args.memory_limit {
        builder = builder.memory_limit(bytes);
    }
    if let Some(bytes) = args.max_memory_per_child {
        builder = builder.max_memory_per_child(bytes);
    }
    if let Some((max, within)) = args.restart_limit {
        builder = builder.restart_limit(max, within);
    }
    let built = if remote.is_some() {
        // The agents' pools run the tasks: none here.
        Ok(None)
    } else {
        builder.build().map(|p| Some(Arc::new(p)))
    };
    let pool = match built {
        Ok(pool) => pool,
        Err(e) => {
            let message = supervisor_chain(&e);
            if let Some(ready) = ready {
                Daemon::fail(ready, &message);
            }
            return Err(usage(message));
        }
    };

    // First SIGINT/SIGTERM/SIGHUP: stop dispatching, stop workers (TERM, grace, KILL).
    // Second: kill them at once.
    let request_stop = {
        let stop = stop.clone();
        let pool = pool.clone();
        Arc::new(move |why: i32| {
            // Not stopping yet, or only starting nothing more (`--halt soon`): this is
            // the first stop request.
            let first = [0, STOP_HALT_SOON].into_iter().any(|from| {
                stop.compare_exchange(from, why, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            });
            if first {
                let Some(pool) = pool.clone() else { return };
                let stopper = pool.clone();
                let spawned = std::thread::Builder::new()
                    .name("supervisor-stop".into())
                    .spawn(move || stopper.terminate());
                if spawned.is_err() {
                    // No thread to stop on (process limit): stop at once instead.
                    pool.kill();
                }
            } else if let Some(pool) = &pool {
                pool.kill();
                // The first signal's code (or this one's, if the run was stopping for
                // another reason).
                let first = stop.load(Ordering::SeqCst);
                let code = signal_exit_code(first)
                    .unwrap_or_else(|| signal_exit_code(why).unwrap_or(EXIT_SIGTERM));
                exit_soon_unless_done(code);
            }
        })
    };
    {
        let request_stop = request_stop.clone();
        let mut signals =
            signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM, libc::SIGHUP])
                .context("cannot handle signals")?;
        std::thread::Builder::new()
            .name("supervisor-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    request_stop(signal);
                }
            })
            .map_err(|e| {
                let limit = if e.raw_os_error() == Some(libc::EAGAIN) {
                    " (the process limit was reached: raise ulimit -u or pids.max)"
                } else {
                    ""
                };
                anyhow::anyhow!("cannot start the signal-handling thread: {e}{limit}")
            })?;
    }

    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let _daemon = match ready {
        Some(ready) => {
            let (pool, done, failed, request_stop) = (
                pool.clone(),
                done.clone(),
                failed.clone(),
                request_stop.clone(),
            );
            let handler = Arc::new(move |request: &str| match request {
                "status" => status_json(pool.as_deref(), &done, &failed).to_string(),
                "stop" => {
                    request_stop(libc::SIGTERM);
                    "stopping".to_string()
                }
                other => format!("unknown request `{other}`"),
            });
            let pidfile = args.pidfile.clone().context("--daemon needs --pidfile")?;
            Some(Daemon::start(&pidfile, ready, handler)?)
        }
        None => None,
    };

    let mut progress = make_progress(&args, total);
    let inputs: Rc<RefCell<HashMap<u64, Pending>>> = Rc::new(RefCell::new(HashMap::new()));
    // The input's number (its line in the input) of each job, by the job's position
    // among those run: they differ under `--resume`, which skips inputs, and the job
    // log, the records and later resumes know a task by its input's number.
    let seqs: Rc<RefCell<HashMap<usize, u64>>> = Rc::new(RefCell::new(HashMap::new()));
    let task_args: BTreeMap<String, String> = args.args.iter().cloned().collect();
    // `--line-buffer`: the lock file workers hold while writing lines.
    let line_lock = match output_stream {
        Stream::Lines => {
            Some(LineLock::create().context("cannot create the line-buffer lock file")?)
        }
        _ => None,
    };
    let lock_path: Option<serde_bytes::ByteBuf> = line_lock.as_ref().map(|l| {
        use std::os::unix::ffi::OsStrExt;
        serde_bytes::ByteBuf::from(l.path.as_os_str().as_bytes().to_vec())
    });
    let tag_lines = args.tag && output_stream == Stream::Lines;
    let read_error: Rc<RefCell<Option<std::io::Error>>> = Rc::new(RefCell::new(None));
    let stream = records.stream();
    let read = Rc::new(std::cell::Cell::new(0u64));
    // `--halt`: the pool looks at the condition itself, between a result and the next
    // task it hands out (the worker just freed would otherwise start one before our
    // `on_arrival` hears of the result).
    let read_total = Arc::new(AtomicU64::new(0));
    if let (Some(rule), Some(pool)) = (halt, &pool) {
        let read_total = read_total.clone();
        pool.cancel_pending_when(move |succeeded, failed| {
            let total = read_total.load(Ordering::SeqCst);
            rule.reached(&Tally {
                succeeded,
                failed,
                total,
            })
        });
    }
    let jobs = {
        let read = read.clone();
        let read_total = read_total.clone();
        let inputs = inputs.clone();
        let seqs = seqs.clone();
        let mut position = 0usize;
        let stop = stop.clone();
        let template = template.clone();
        let read_error = read_error.clone();
        let failed_too = args.resume_failed;
        records
            .map_while(move |record| match record {
                Ok(record) => Some(record),
                Err(e) => {
                    *read_error.borrow_mut() = Some(e);
                    None
                }
            })
            .take_while(move |_| stop.load(Ordering::SeqCst) == 0)
            .enumerate()
            .filter(move |(i, _)| {
                resume
                    .as_ref()
                    .is_none_or(|r| r.runs(*i as u64 + 1, failed_too))
            })
            .map(move |(i, record)| {
                let seq = i as u64 + 1;
                read.set(seq);
                read_total.store(seq, Ordering::SeqCst);
                seqs.borrow_mut().insert(position, seq);
                position += 1;
                let fill = Fill {
                    fields: &record.fields,
                    whole: &record.whole,
                    seq,
                    slot: None,
                };
                let (argv, slots) = template
                    .as_ref()
                    .map(|t| t.argv_and_slots(&fill))
                    .unwrap_or_default();
                let argv: Vec<serde_bytes::ByteBuf> =
                    argv.into_iter().map(serde_bytes::ByteBuf::from).collect();
                // With `{%}` the command line is made again once the slot is known.
                let with_slot = template.as_ref().is_some_and(|t| t.has_slot());
                let command = template
                    .as_ref()
                    .filter(|_| !with_slot)
                    .map(|t| t.display(&fill));
                let tag = if tag_lines {
                    record.whole.clone()
                } else {
                    Vec::new()
                };
                let fields = if with_slot {
                    record.fields.clone()
                } else {
                    Vec::new()
                };
                // Built-in tasks take text; command mode has the bytes in argv.
                let text = if template.is_some() {
                    String::new()
                } else {
                    String::from_utf8_lossy(&record.whole).into_owned()
                };
                inputs.borrow_mut().insert(
                    seq,
                    Pending {
                        command,
                        fields,
                        values: record.values,
                        input: record.whole,
                    },
                );
                Job {
                    argv,
                    line: text,
                    seq,
                    args: task_args.clone(),
                    slots,
                    stream: output_stream,
                    tag: tag_lines.then(|| serde_bytes::ByteBuf::from(tag.clone())),
                    lock: lock_path.clone(),
                }
            })
    };
    // Halting acts on each result as it arrives, not when its turn to be printed comes.
    let tally = Rc::new(RefCell::new(Tally::default()));
    // A record arriving while others run starts at once, whatever the read-ahead.
    let mut reports = match (&pool, remote) {
        (Some(pool), _) => {
            Source::Local(pool.imap_reports::<Job, Outcome, _>(&task, jobs, 1, !args.unordered))
        }
        #[cfg(feature = "cluster")]
        (None, Some(options)) => {
            let (stop, request_stop) = (stop.clone(), request_stop.clone());
            Source::remote(
                options,
                &task,
                jobs,
                move || stop.load(Ordering::SeqCst) != 0,
                move || request_stop(STOP_CLUSTER),
            )
            .map_err(|e| usage(supervisor_chain(&e)))?
        }
        _ => unreachable!("a run without a pool is a remote run"),
    };
    if let Some(stream) = stream {
        reports = reports.input_ready(move || stream.borrow_mut().ready());
    }
    // parallel's job log gets each task's line as its result arrives, in the order
    // they end: a run killed while an early task runs keeps the later ones' lines, and
    // `--resume` does not run them again.
    // The JSON form too, so that a SIGKILLed run keeps the lines of finished tasks.
    let (tsv_log, json_log) = match args.joblog_format {
        JoblogFormat::Tsv => (joblog.take(), None),
        JoblogFormat::Json => (None, joblog.take()),
    };
    let has_json_log = json_log.is_some();
    // Shared with the duplicate callback of a remote run.
    let json_log = Rc::new(RefCell::new(json_log));
    let log_error: Rc<RefCell<Option<std::io::Error>>> = Rc::new(RefCell::new(None));
    // Tasks that did not succeed and arrived once the run was stopping (a signal,
    // `--halt now`, an output error): the run stopped them, whatever their command
    // made of the SIGTERM (exited on it, killed by it, or the worker stopped before
    // it could say). They are "stopped", and out of the job log (`--resume` runs them).
    let stopped_by_run: Rc<RefCell<HashSet<usize>>> = Rc::new(RefCell::new(HashSet::new()));
    {
        let stopped_by_run = stopped_by_run.clone();
        let (tally, stop, request_stop, pool, read, inputs, log_error) = (
            tally.clone(),
            stop.clone(),
            request_stop.clone(),
            pool.clone(),
            read.clone(),
            inputs.clone(),
            log_error.clone(),
        );
        let mut tsv_log = tsv_log;
        let json_log = json_log.clone();
        let mut peaks = PeakRss::default();
        let task = task.clone();
        let template = template.clone();
        let mut of_median = of_median;
        let seqs = seqs.clone();
        reports = reports.on_arrival(move |index, result, meta, host| {
            let seq = seqs
                .borrow()
                .get(&index)
                .copied()
                .unwrap_or(index as u64 + 1);
            let why = stop.load(Ordering::SeqCst);
            let stopped_now = why != 0
                && why != STOP_HALT_SOON
                && !matches!(result, Ok(Ok(_)))
                && !matches!(result, Err(e) if super::report::kind_of(e) == "cancelled");
            let as_stopped;
            let result = if stopped_now {
                stopped_by_run.borrow_mut().insert(index);
                as_stopped = Err(stopped_error(&task, meta.pid));
                &as_stopped
            } else {
                result
            };
            // `--timeout N%`: the limit follows the median run time of the tasks
            // that succeeded, for the running ones too.
            if let (Some(median), Ok(Ok(_))) = (of_median.as_mut(), result) {
                if let (Some(limit), Some(pool)) = (median.add(meta.duration), &pool) {
                    pool.set_task_timeout(Some(limit));
                }
            }
            let mut json_log = json_log.borrow_mut();
            if let Some(log) = json_log.as_mut() {
                let peak = (meta.pid != 0).then(|| peaks.get(meta.pid)).flatten();
                let line = {
                    let inputs = inputs.borrow();
                    let pending = inputs.get(&seq);
                    let command =
                        pending.and_then(|p| p.command_line(template.as_ref(), seq, result));
                    super::report::joblog_json(
                        seq,
                        pending.map_or(&[][..], |p| &p.input),
                        command.as_deref(),
                        result,
                        meta,
                        peak,
                        (host != ":").then_some(host),
                    )
                };
                let written = serde_json::to_writer(&mut *log, &line)
                    .map_err(std::io::Error::from)
                    .and_then(|()| log.write_all(b"\n"))
                    .and_then(|()| log.flush());
                if let Err(e) = written {
                    log_error.borrow_mut().get_or_insert(e);
                    *json_log = None;
                    request_stop(STOP_OUTPUT_ERROR);
                }
            }
            drop(json_log);
            if let Some(log) = tsv_log.as_mut() {
                let command = inputs.borrow().get(&seq).map(|p| {
                    match p.command_line(template.as_ref(), seq, result) {
                        Some(c) => c,
                        None => [task.as_bytes(), b" ", &p.input].concat(),
                    }
                });
                let command = command.unwrap_or_default();
                if let Some(row) = super::report::joblog_row(seq, result, meta, &command, host) {
                    let written = log
                        .write_all(&row.to_line())
                        .and_then(|()| log.write_all(b"\n"))
                        .and_then(|()| log.flush());
                    if let Err(e) = written {
                        log_error.borrow_mut().get_or_insert(e);
                        tsv_log = None;
                        request_stop(STOP_OUTPUT_ERROR);
                    }
                }
            }
            let Some(rule) = halt else { return };
            let mut t = tally.borrow_mut();
            match result {
                Ok(Ok(_)) => t.succeeded += 1,
                Ok(Err(_)) => t.failed += 1,
                Err(e)
                    if matches!(
                        e.kind(),
                        supervisor::ErrorKind::Cancelled { .. }
                            | supervisor::ErrorKind::Stopped { .. }
                    ) => {}
                Err(_) => t.failed += 1,
            }
            t.total = read.get();
            if stop.load(Ordering::SeqCst) == 0 && rule.reached(&t) {
                match rule.when {
                    When::Now => request_stop(STOP_HALT),
                    When::Soon => {
                        let _ = stop.compare_exchange(
                            0,
                            STOP_HALT_SOON,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        );
                        if let Some(pool) = &pool {
                            pool.cancel_pending();
                        }
                    }
                }
            }
        });
    }
    // A task that ran twice (delivered again after its host went quiet): the first
    // result counts, the JSON job log notes the other when it arrives.
    if has_json_log {
        let (json_log, log_error, request_stop) =
            (json_log.clone(), log_error.clone(), request_stop.clone());
        reports = reports.on_duplicate(move |index, meta, host| {
            let mut json_log = json_log.borrow_mut();
            let Some(log) = json_log.as_mut() else { return };
            let line = super::report::joblog_duplicate(index as u64 + 1, meta, host);
            let written = serde_json::to_writer(&mut *log, &line)
                .map_err(std::io::Error::from)
                .and_then(|()| log.write_all(b"\n"))
                .and_then(|()| log.flush());
            if let Err(e) = written {
                log_error.borrow_mut().get_or_insert(e);
                *json_log = None;
                request_stop(STOP_OUTPUT_ERROR);
            }
        });
    }
    let command_mode = template.is_some();
    let mut cancelled = 0u64;
    let mut stopped = 0u64;
    let mut output_error: Option<std::io::Error> = None;
    let stdout = std::io::stdout();
    // Buffered, and flushed whenever the next result is not in yet: one write per
    // burst of results instead of one per line, and nothing held back while waiting.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    while let Some((mut report, host)) = reports.next() {
        let seq = seqs
            .borrow_mut()
            .remove(&report.index)
            .unwrap_or(report.index as u64 + 1);
        let pending = inputs.borrow_mut().remove(&seq).unwrap_or_default();
        if stopped_by_run.borrow_mut().remove(&report.index) {
            report.result = Err(stopped_error(&task, report.meta.pid));
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
                &*request_stop,
            );
            progress.inc();
            continue;
        }
        let mut record = Record::new(seq, pending.input, report.meta, report.result);
        record.host = host;
        // Not run although nobody stopped the run (the pool ended under it): a
        // failure, never a quiet success.
        let not_run = matches!(&record.result, Err(e) if e.kind == "cancelled")
            && stop.load(Ordering::SeqCst) != 0;
        let was_stopped = matches!(&record.result, Err(e) if e.kind == "stopped");
        if record.ok() {
            done.fetch_add(1, Ordering::Relaxed);
        } else if not_run {
            cancelled += 1;
        } else if was_stopped {
            stopped += 1;
        } else {
            failed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(dir) = &args.results {
            if !(not_run || was_stopped) {
                record
                    .write_results(dir, &pending.values)
                    .with_context(|| format!("cannot write the results under {}", dir.display()))?;
            }
        }
        let written = progress.suspend(|| -> std::io::Result<()> {
            match args.format {
                // The output is in the files; failures are still said.
                Format::Text if args.results.is_some() => {
                    if !not_run && record.result.is_err() {
                        let _ = record.write_stderr(&mut std::io::stderr().lock());
                    }
                }
                Format::Json => {
                    record.write_json(&mut out, command_mode)?;
                    // A command's own stderr still reaches ours, grouped per task.
                    if !record.command_stderr().is_empty() {
                        out.flush()?;
                        let _ = record.write_command_stderr(&mut std::io::stderr().lock());
                    }
                }
                Format::Text if args.tag => {
                    let mut tagged = super::report::Tagged::new(&mut out, &record.input);
                    record.write_stdout(&mut tagged, command_mode)?;
                    tagged.finish()?;
                    if !not_run && record.has_stderr() {
                        out.flush()?;
                        let _ = record.write_stderr(&mut std::io::stderr().lock());
                    }
                }
                Format::Text => {
                    record.write_stdout(&mut out, command_mode)?;
                    if !not_run && record.has_stderr() {
                        out.flush()?;
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
            output_failed(e, &mut output_error, &*request_stop);
        }
        progress.inc();
    }
    if let Err(e) = out.flush() {
        output_failed(e, &mut output_error, &*request_stop);
    }
    drop(out);
    progress.finish(&Summary {
        done: done.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        stopped,
        cancelled,
    });
    if let Some(mut log) = joblog {
        log.flush().context("cannot write the job log")?;
    }
    if let Some(e) = log_error.borrow_mut().take() {
        return Err(anyhow::Error::new(e).context("cannot write the job log"));
    }
    drop(reports);
    // Before the workers are let go: the live ones are those that served to the end.
    let stats = if args.stats {
        pool.as_ref().map(|p| p.stats())
    } else {
        None
    };
    if let Some(pool) = &pool {
        pool.join();
    }
    if let Some(stats) = stats {
        print_stats(&stats);
    }
    let done = done.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    let code = match stop.load(Ordering::SeqCst) {
        libc::SIGINT => EXIT_SIGINT,
        libc::SIGTERM => EXIT_SIGTERM,
        libc::SIGHUP => EXIT_SIGHUP,
        STOP_STDOUT => EXIT_STDOUT_CLOSED,
        STOP_OUTPUT_ERROR => EXIT_OUTPUT,
        STOP_CLUSTER => super::EXIT_CLUSTER,
        // parallel: a halt on successes exits 0, whatever failed before it.
        STOP_HALT | STOP_HALT_SOON if halt.is_some_and(|h| h.what == What::Success) => EXIT_OK,
        STOP_HALT | STOP_HALT_SOON if failed > 0 => EXIT_FAILED,
        _ if failed > 0 => EXIT_FAILED,
        _ => EXIT_OK,
    };
    if [EXIT_SIGINT, EXIT_SIGTERM, EXIT_SIGHUP].contains(&code) {
        say!(
            "supervisor: stopped by signal: {done} tasks succeeded, {failed} failed, {stopped} stopped while running, {cancelled} not started"
        );
    }
    if let Some(e) = output_error {
        say!("supervisor: cannot write the output: {e}");
    }
    if let Some(e) = read_error.borrow_mut().take() {
        say!(
            "supervisor: reading the input failed after {} lines: {e}",
            done + failed + stopped + cancelled
        );
        return Ok(super::EXIT_USAGE);
    }
    Ok(code)
}

/// `--line-buffer`'s lock file: a file with no name (`O_TMPFILE`; where the file system
/// has none, named and unlinked at once), so nothing is left whatever ends the run.
/// Workers open it through `/proc/<pid>/fd/<n>` of this process.
struct LineLock {
    _file: std::fs::File,
    path: std::path::PathBuf,
}

impl LineLock {
    fn create() -> std::io::Result<LineLock> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::env::temp_dir();
        let unnamed = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(&dir);
        let file = match unnamed {
            Ok(file) => file,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let path = dir.join(format!(".supervisor-lines-{}-{nanos}", std::process::id()));
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                std::fs::remove_file(&path)?;
                file
            }
            Err(e) => return Err(e),
        };
        let path = format!("/proc/{}/fd/{}", std::process::id(), file.as_raw_fd()).into();
        Ok(LineLock { _file: file, path })
    }
}

/// What the run keeps of a submitted input until its result is printed.
#[derive(Default)]
struct Pending {
    /// The whole input (`{}`).
    input: Vec<u8>,
    /// A value per input source (for `--results`).
    values: Vec<Vec<u8>>,
    /// The command line (command mode), as the job log names it; `None` with `{%}`
    /// until the slot is known (see [`Pending::command_line`]).
    command: Option<Vec<u8>>,
    /// The record's fields, kept only when the command has `{%}`.
    fields: Vec<Vec<u8>>,
}

impl Pending {
    /// The command line task `seq` ran, as the job logs name it: with `{%}`, made now
    /// with the slot its result reports.
    fn command_line(
        &self,
        template: Option<&Template>,
        seq: u64,
        result: &Result<Outcome, supervisor::Error>,
    ) -> Option<Vec<u8>> {
        if self.command.is_some() {
            return self.command.clone();
        }
        let template = template?;
        let slot = match result {
            Ok(Ok(out)) => out.slot,
            Ok(Err(super::tasks::Failure::Failed { slot, .. })) => *slot,
            _ => 0,
        };
        Some(template.display(&Fill {
            fields: &self.fields,
            whole: &self.input,
            seq,
            slot: (slot > 0).then_some(u64::from(slot)),
        }))
    }
}

/// `--dry-run`: prints each command line (or task and input) instead of running it.
fn dry_run(
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
                fields: &record.fields,
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

/// Workers' peak RSS for the job log, read from `/proc` at most every 50 ms per worker
/// (a read per record cost 30 µs: 3 s of a run of 100,000 tiny tasks).
#[derive(Default)]
struct PeakRss(HashMap<u32, (std::time::Instant, Option<u64>)>);

impl PeakRss {
    fn get(&mut self, pid: u32) -> Option<u64> {
        let now = std::time::Instant::now();
        match self.0.get(&pid) {
            Some((at, kib)) if now.duration_since(*at) < std::time::Duration::from_millis(50) => {
                *kib
            }
            _ => {
                let kib = sys::peak_rss_kib(pid);
                if self.0.len() > 4096 {
                    self.0.clear();
                }
                self.0.insert(pid, (now, kib));
                kib
            }
        }
    }
}

/// An error with its causes, and the resource limit behind it, if one is.
fn supervisor_chain(e: &supervisor::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    if let Some(limit) = supervisor::ResourceLimit::of(e) {
        if !s.contains(&limit.to_string()) {
            s.push_str(&format!(" ({limit})"));
        }
    }
    s
}

/// Progress on stderr: an indicatif bar on a terminal; with `--progress always` and no
/// terminal, a plain line at most once a second (fit for a log file).
enum Meter {
    /// No progress shown: nothing to draw, suspend or count (a hidden indicatif bar
    /// still reads the clock and takes a lock per result).
    Off,
    Bar(ProgressBar),
    Lines {
        done: u64,
        total: Option<u64>,
        start: std::time::Instant,
        last: std::time::Instant,
    },
}

impl Meter {
    fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match self {
            Meter::Bar(bar) => bar.suspend(f),
            Meter::Off | Meter::Lines { .. } => f(),
        }
    }

    fn inc(&mut self) {
        match self {
            Meter::Off => {}
            Meter::Bar(bar) => bar.inc(1),
            Meter::Lines {
                done,
                total,
                start,
                last,
            } => {
                *done += 1;
                if last.elapsed() >= std::time::Duration::from_secs(1) {
                    *last = std::time::Instant::now();
                    let rate = rounded_rate(*done as f64 / start.elapsed().as_secs_f64().max(1e-9));
                    let of = total.map(|t| format!("/{t}")).unwrap_or_default();
                    say!("supervisor: {done}{of} tasks, {rate}");
                }
            }
        }
    }

    /// Ends the display with the run's summary line (when progress is shown).
    fn finish(&self, summary: &Summary) {
        let elapsed = match self {
            Meter::Off => return,
            Meter::Bar(bar) if bar.is_hidden() => return,
            Meter::Bar(bar) => {
                bar.finish_and_clear();
                bar.elapsed()
            }
            Meter::Lines { start, .. } => start.elapsed(),
        };
        let line = format!(
            "supervisor: {} tasks in {:.1}s: {} succeeded, {} failed, {} stopped while running, {} not started\n",
            summary.done + summary.failed + summary.stopped + summary.cancelled,
            elapsed.as_secs_f64(),
            summary.done,
            summary.failed,
            summary.stopped,
            summary.cancelled,
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// What the run's last progress line counts.
struct Summary {
    done: u64,
    failed: u64,
    stopped: u64,
    cancelled: u64,
}

/// A rate rounded for reading: `12/s`, `3.4/s`, `0.25/s`.
fn rounded_rate(per_sec: f64) -> String {
    if !per_sec.is_finite() {
        return "-".to_string();
    }
    if per_sec >= 100.0 {
        format!("{:.0}/s", per_sec)
    } else if per_sec >= 1.0 {
        format!("{:.1}/s", per_sec)
    } else {
        format!("{:.2}/s", per_sec)
    }
}

/// How many tasks the inputs make, when that is known before reading them: `:::`
/// words and regular files (read once more here), every group one source; `None`
/// for stdin, a pipe, or linked sources.
fn known_total(groups: &[sources::Group], delimiter: u8) -> Option<u64> {
    let mut total = 1u64;
    for group in groups {
        let [origin] = group.as_slice() else {
            return None;
        };
        let n = match origin {
            Origin::Args(words) => words.len() as u64,
            Origin::File(p) if p.as_os_str() == "-" => return None,
            // Only a regular file can be read twice (a FIFO would be used up).
            Origin::File(p) if std::fs::metadata(p).is_ok_and(|m| m.is_file()) => {
                let mut reader = BufReader::new(std::fs::File::open(p).ok()?);
                let mut n = 0u64;
                let mut record = Vec::new();
                loop {
                    record.clear();
                    match reader.read_until(delimiter, &mut record) {
                        Ok(0) => break,
                        Ok(_) => n += 1,
                        Err(_) => return None,
                    }
                }
                n
            }
            Origin::File(_) => return None,
        };
        total = total.checked_mul(n)?;
    }
    Some(total)
}

/// The bar's `{rate}`: tasks per second, rounded.
fn rate_key(state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = w.write_str(&rounded_rate(state.per_sec()));
}

fn make_progress(args: &RunArgs, total: Option<u64>) -> Meter {
    let terminal = std::io::stderr().is_terminal();
    // GNU parallel's --eta and --bar: the progress display, always.
    let show = args.eta
        || match args.progress {
            Progress::Always => true,
            Progress::Never => false,
            Progress::Auto => terminal && !args.daemon,
        };
    if !show {
        return Meter::Off;
    }
    if !terminal {
        let now = std::time::Instant::now();
        return Meter::Lines {
            done: 0,
            total,
            start: now,
            last: now,
        };
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} tasks, {rate}, ETA {eta}")
                .map(|s| s.with_key("rate", rate_key))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {pos} tasks, {rate}, {elapsed}")
                .map(|s| s.with_key("rate", rate_key))
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    Meter::Bar(bar)
}

fn status_json(pool: Option<&Pool>, done: &AtomicU64, failed: &AtomicU64) -> serde_json::Value {
    let Some(pool) = pool else {
        return serde_json::json!({
            "running": true, "pid": std::process::id(), "remote": true,
            "done": done.load(Ordering::Relaxed), "failed": failed.load(Ordering::Relaxed),
        });
    };
    let stats = pool.stats();
    let workers: Vec<serde_json::Value> = stats
        .workers
        .iter()
        .map(|w| {
            let state = match &w.state {
                // As {#} and the job log number it (from 1): the run's one stream took
                // the pool's first id (1), so the n-th task is job n + 1.
                WorkerState::Busy { task, job } => {
                    format!("busy on {task} #{}", job.saturating_sub(1))
                }
                other => format!("{other:?}").to_lowercase(),
            };
            serde_json::json!({
                "pid": w.pid, "state": state, "tasks": w.tasks_done,
                "restarts": w.restarts, "cpu_ms": w.cpu_time.as_millis() as u64,
                "rss_kib": w.rss_kib,
            })
        })
        .collect();
    // Apart from the live ones: the workers replaced so far (the last 1,000).
    let exited: Vec<serde_json::Value> = stats
        .exited
        .iter()
        .map(|w| {
            serde_json::json!({
                "pid": w.pid, "tasks": w.tasks_done, "restarts": w.restarts,
                "cpu_ms": w.cpu_time.as_millis() as u64, "peak_rss_kib": w.peak_rss_kib,
            })
        })
        .collect();
    serde_json::json!({
        "running": true, "pid": std::process::id(),
        "done": done.load(Ordering::Relaxed), "failed": failed.load(Ordering::Relaxed),
        "queued": stats.queued, "in_progress": stats.running,
        "restarts": stats.restarts, "workers": workers, "exited": exited,
    })
}

/// `--stats`: the workers live at the end of the run, and apart those replaced during
/// it.
fn print_stats(stats: &supervisor::PoolStats) {
    let table = |title: String, workers: &[&supervisor::WorkerStats]| {
        let mut text = format!(
            "{title}\n{:>8} {:>8} {:>9} {:>10} {:>12}\n",
            "pid", "tasks", "restarts", "cpu", "peak rss"
        );
        for w in workers {
            text.push_str(&format!(
                "{:>8} {:>8} {:>9} {:>9.2}s {:>8} KiB\n",
                w.pid,
                w.tasks_done,
                w.restarts,
                w.cpu_time.as_secs_f64(),
                w.peak_rss_kib
            ));
        }
        text
    };
    let mut live: Vec<_> = stats.workers.iter().collect();
    live.sort_by_key(|w| w.pid);
    let mut exited: Vec<_> = stats.exited.iter().collect();
    exited.sort_by_key(|w| w.pid);
    // The workers that served to the end, and apart those replaced on the way (they
    // died, were recycled, or went over a memory limit).
    let mut text = table(
        format!("supervisor: workers at the end of the run: {}", live.len()),
        &live,
    );
    if !exited.is_empty() {
        text.push_str(&table(
            format!(
                "supervisor: workers replaced during the run: {}",
                exited.len()
            ),
            &exited,
        ));
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `--nats URL`: the run goes to the agents of that server.
#[cfg(feature = "cluster")]
fn remote_options(
    args: &RunArgs,
    command: bool,
) -> anyhow::Result<Option<supervisor::cluster::RemoteOptions>> {
    let Some(connect) = args.nats.connect() else {
        return Ok(None);
    };
    // What the agents' pools decide (`supervisor worker` has the options).
    let local_only = [
        (args.procs.is_some(), "--procs (the agents' -j)"),
        (args.nice.is_some(), "--nice (the agents' --nice)"),
        (args.timeout.is_some(), "--timeout (the agents' --timeout)"),
        (
            args.max_tasks_per_child.is_some(),
            "--max-tasks-per-child (the agents')",
        ),
        (args.memory_limit.is_some(), "--memory-limit"),
        (
            args.max_memory_per_child.is_some(),
            "--max-memory-per-child",
        ),
        (args.restart_limit.is_some(), "--restart-limit"),
        (args.stats, "--stats"),
        (args.daemon, "--daemon"),
    ];
    if let Some((_, name)) = local_only.iter().find(|(given, _)| *given) {
        return Err(usage(format!(
            "{name} is a setting of the local pool; with --nats the agents' pools run the tasks (`supervisor worker --help`)"
        )));
    }
    let mut options = supervisor::cluster::RemoteOptions::new(connect);
    options.retries = args.retries;
    options.ordered = !args.unordered;
    options.command = command;
    // As the local pool's retry_errors: a command that fails runs again.
    options.retry_errors = command;
    if let Some(limit) = args.nats_timeout {
        options.server_timeout = limit;
    }
    if let Some(wait) = args.nats.ack_wait {
        options.ack_wait = wait;
    }
    Ok(Some(options))
}

#[cfg(not(feature = "cluster"))]
fn remote_options(args: &RunArgs, _command: bool) -> anyhow::Result<Option<()>> {
    if args.nats.nats.is_some() {
        return Err(usage(
            "--nats needs the `cluster` feature (this build has none)",
        ));
    }
    Ok(None)
}

/// The error of a task the run stopped while it ran (see `stopped_by_run`).
fn stopped_error(task: &str, pid: u32) -> supervisor::Error {
    supervisor::ErrorKind::Stopped {
        task: task.to_string(),
        pid,
    }
    .into()
}
