//! `supervisor run` from start to end: the input opened, the pool built, the stop
//! requests, the jobs fed to the pool, each result handled as it arrives and printed
//! in its turn, and the exit code.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use supervisor::{Pool, StartMethod};

use super::super::args::{JoblogFormat, Method, RunArgs};
use super::super::control::{self, Daemon};
use super::super::halt::Tally;
use super::super::joblog;
use super::super::source::Source;
use super::super::sources::Records;
use super::super::sys;
use super::super::tasks::{Job, Outcome, Stream};
use super::arrival::{self, Arrivals, PeakRss};
use super::exit::{exit_code, EXIT_OK, EXIT_SIGHUP, EXIT_SIGINT, EXIT_SIGTERM};
use super::hold::Holding;
use super::jobs::{
    self, Feed, Inputs, LineLock, COMMAND_READ_AHEAD_PER_WORKER, READ_AHEAD_PER_WORKER,
};
use super::output::{self, dry_run, Printed, Printing};
use super::progress::{known_total, make_progress, shown, Summary};
use super::settings::{settings, usage, Settings};
use super::status::{print_stats, status_json};
use super::stop::{self, StoppedByRun};

/// Runs `supervisor run`; returns the exit code.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let ready = Daemon::detached();
    let Settings {
        task,
        template,
        output_stream,
        remote,
        cpus,
        procs,
        timeout,
        of_median,
        halt,
        delimiter,
        columns,
        groups,
    } = settings(&args, ready.is_some())?;
    // Only a progress display needs the total (counting reads a file input twice).
    let total = if args.resume || args.resume_failed || !shown(&args) {
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
    if let (Some(path), Some(resume)) = (&args.joblog, &resume) {
        for cut in &resume.cut_short {
            say_cut_short(path, cut);
        }
    }
    let mut joblog = match &args.joblog {
        Some(path) => {
            let file = open_joblog(path, resume.is_some())?;
            let empty = file.metadata().map_or(true, |m| m.len() == 0);
            // As stdout's buffer: its lines reach the file at the same points (see
            // `arrival::JobLogs`), in a system call per 64 KiB rather than per 8.
            let mut log = std::io::BufWriter::with_capacity(64 * 1024, file);
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

    let request_stop = stop::requester(&stop, &pool);
    stop::handle_signals(&request_stop)?;

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
    // Each job's input and its number (its line in the input: under `--resume`, which
    // skips inputs, not the job's position + 1), by the job's position.
    let inputs: Rc<RefCell<Inputs>> = Rc::new(RefCell::new(Inputs::default()));
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
    let ended = Rc::new(std::cell::Cell::new(false));
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
    let (jobs, skipping) = jobs::jobs(
        records,
        Feed {
            read: read.clone(),
            read_total: read_total.clone(),
            inputs: inputs.clone(),
            stop: stop.clone(),
            template: template.clone(),
            read_error: read_error.clone(),
            ended: ended.clone(),
            failed_too: args.resume_failed,
            resume,
            tag_lines,
            task_args,
            output_stream,
            lock_path,
        },
    );
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
            let soon = stop.clone();
            Source::remote(
                options,
                &task,
                jobs,
                move || stop.load(Ordering::SeqCst) != 0,
                move || soon.load(Ordering::SeqCst) == super::stop::STOP_HALT_SOON,
                move || request_stop(super::stop::STOP_CLUSTER),
            )
            .map_err(|e| usage(supervisor_chain(&e)))?
        }
        _ => unreachable!("a run without a pool is a remote run"),
    };
    let records_read = skipping.clone();
    if let Some(pool) = &pool {
        // A broken pool runs nothing more: the rest of the input stays unread (the
        // summary says where it stopped), however long it stalls or goes on (a read
        // waiting on the input gives up on the stop). Only the flag: the pool's own
        // thread calls this, where asking the pool to stop would wait for itself.
        let stop = stop.clone();
        pool.when_broken(move |_| {
            let _ = stop.compare_exchange(
                0,
                super::stop::STOP_POOL_BROKEN,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        });
    }
    if let Some(stream) = stream {
        reports = reports.input_ready(move || {
            // The records `--resume` skips are passed over here while they are at hand.
            skipping
                .borrow_mut()
                .ready(&mut || stream.borrow_mut().ready())
        });
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
    // Shared with the duplicate callback of a remote run and with `job_logs`.
    let json_log = Rc::new(RefCell::new(json_log));
    let tsv_log = Rc::new(RefCell::new(tsv_log));
    let log_error: Rc<RefCell<Option<std::io::Error>>> = Rc::new(RefCell::new(None));
    let job_logs = arrival::JobLogs {
        logs: [tsv_log.clone(), json_log.clone()],
        log_error: log_error.clone(),
        request_stop: request_stop.clone(),
    };
    // A command's side effects make `--resume` matter, and a line's write is nothing
    // next to its fork and exec: command mode flushes each line, as a remote run must.
    let flush_each = template.is_some() || !reports.calls_on_wait();
    if !flush_each {
        let job_logs = job_logs.clone();
        reports = reports.on_wait(move || job_logs.flush());
    }
    // Tasks that did not succeed and arrived once the run was stopping (a signal,
    // `--halt now`, an output error): the run stopped them, whatever their command
    // made of the SIGTERM (exited on it, killed by it, or the worker stopped before
    // it could say). They are "stopped", and out of the job log (`--resume` runs them).
    // So are commands killed by the stop of a broken pool's workers (with its reason).
    let stopped_by_run: Rc<RefCell<StoppedByRun>> = Rc::new(RefCell::new(HashMap::new()));
    let mut arrivals = Arrivals {
        stopped_by_run: stopped_by_run.clone(),
        tally: tally.clone(),
        stop: stop.clone(),
        request_stop: request_stop.clone(),
        pool: pool.clone(),
        read: read.clone(),
        inputs: inputs.clone(),
        log_error: log_error.clone(),
        tsv_log,
        json_log: json_log.clone(),
        flush_each,
        peaks: PeakRss::default(),
        task: task.clone(),
        template: template.clone(),
        of_median,
        halt,
    };
    reports = reports
        .on_arrival(move |index, result, meta, host| arrivals.arrive(index, result, meta, host));
    // Results waiting for their turn: their outputs out of memory past a budget.
    let holding = Rc::new(RefCell::new(Holding::for_this_process(
        procs.unwrap_or(cpus),
    )));
    if !args.unordered {
        let holding = holding.clone();
        reports = reports.on_hold(move |index, result| holding.borrow_mut().hold(index, result));
    }
    if has_json_log {
        reports = reports.on_duplicate(arrival::on_duplicate(
            json_log.clone(),
            log_error.clone(),
            request_stop.clone(),
        ));
    }
    let command_mode = template.is_some();
    let Printed {
        cancelled,
        stopped,
        unfinished,
        output_error,
    } = output::print(
        &mut reports,
        &mut progress,
        Printing {
            args: &args,
            task: &task,
            command_mode,
            output_stream,
            inputs: &inputs,
            holding: &holding,
            stopped_by_run: &stopped_by_run,
            stop: &stop,
            request_stop: &*request_stop,
            done: &done,
            failed: &failed,
            flush_logs: &|| job_logs.flush(),
        },
    )?;
    job_logs.flush();
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
    // Why the pool broke, if it did: the run's last line says it with the counts.
    let broken = pool.as_ref().and_then(|p| p.stats().broken);
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
    let why = stop.load(Ordering::SeqCst);
    let code = exit_code(why, halt, failed + unfinished);
    let mut counts = format!(
        "{done} tasks succeeded, {failed} failed, {stopped} stopped while running, {cancelled} not started"
    );
    // What was never read is in none of the counts (its size is unknown); lines
    // `--resume` skipped were read.
    if !ended.get() {
        counts.push_str(&format!(
            "; the input was not read past line {}",
            records_read.borrow().seen().max(read.get())
        ));
    }
    if [EXIT_SIGINT, EXIT_SIGTERM, EXIT_SIGHUP].contains(&code) {
        say!("supervisor: stopped by signal: {counts}");
    } else if let Some(reason) = broken {
        say!(
            "supervisor: the pool broke ({}): {counts}",
            supervisor_worker::error_chain(&reason)
        );
    } else if !ended.get() && [super::stop::STOP_HALT, super::stop::STOP_HALT_SOON].contains(&why) {
        // The lines `--halt` left unread are in no record: said, as a signal's are.
        say!("supervisor: halted: {counts}");
    }
    if let Some(e) = output_error {
        say!("supervisor: cannot write the output: {e}");
    }
    if let Some(e) = read_error.borrow_mut().take() {
        say!(
            "supervisor: reading the input failed after {} lines: {e}",
            done + failed + stopped + cancelled
        );
        return Ok(super::super::EXIT_USAGE);
    }
    Ok(code)
}

/// An error with its causes, and the resource limit behind it, if one is.
fn supervisor_chain(e: &supervisor::Error) -> String {
    let mut s = supervisor_worker::error_chain(e);
    if let Some(limit) = supervisor::ResourceLimit::of(e) {
        if !s.contains(&limit.to_string()) {
            s.push_str(&format!(" ({limit})"));
        }
    }
    s
}

/// Opens the job log for writing, appending when resuming, and takes an exclusive lock
/// on it when it is a regular file: a second run given the same job log while one runs
/// is refused (exit 2) rather than truncating it and overwriting its lines. The file is
/// emptied (when not resuming) only once the lock is ours.
fn open_joblog(path: &std::path::Path, resume: bool) -> anyhow::Result<std::fs::File> {
    let cannot =
        |e: std::io::Error| usage(format!("cannot write the job log {}: {e}", path.display()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resume)
        // To look at the last byte when appending (see `end_the_last_line`).
        .read(resume)
        .open(path)
        .map_err(cannot)?;
    if file.metadata().map_err(cannot)?.is_file() {
        if !sys::flock(file.as_fd(), sys::Flock::Exclusive).map_err(cannot)? {
            return Err(usage(format!(
                "the job log {} is in use by another run: wait for it to end, or give this \
                 one another --joblog",
                path.display()
            )));
        }
        if !resume {
            file.set_len(0).map_err(cannot)?;
        } else {
            end_the_last_line(&file).map_err(cannot)?;
        }
    }
    Ok(file)
}

/// A log whose last line was cut short (no newline at its end) gets one before lines
/// are appended: else the next job's line would be joined to it.
fn end_the_last_line(mut file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut last = [0u8];
    if len > 0 && file.read_at(&mut last, len - 1)? == 1 && last[0] != b'\n' {
        file.write_all(b"\n")?;
    }
    Ok(())
}

/// What `--resume` makes of a job log line cut short.
fn say_cut_short(path: &std::path::Path, cut: &joblog::CutShort) {
    let path = path.display();
    match cut.seq {
        Some(seq) => say!(
            "supervisor: --resume: {path}: line {} was cut short (a run stopped while it \
             wrote it?): job {seq} is taken as run and not run again",
            cut.line
        ),
        None => say!(
            "supervisor: --resume: {path}: line {} was cut short within its job's number: \
             it is ignored (the job it logged runs again)",
            cut.line
        ),
    }
}
