//! What `supervisor run`'s options ask for, checked before anything starts: a usage
//! error (exit code 2) for each combination that cannot work.

use super::super::args::{Format, RunArgs};
use super::super::halt::Halt;
use super::super::replace::Template;
use super::super::sources::{self, Columns, Origin};
use super::super::specs;
use super::super::tasks::{check_args, Stream, BUILTINS};
use super::super::{control, Usage};

/// Most worker processes a run may ask for.
const MAX_PROCS: usize = 4096;

pub(super) fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

/// The run's options, checked.
pub(super) struct Settings {
    /// The built-in task's name, or `command`.
    pub task: String,
    /// The command line (command mode).
    pub template: Option<Template>,
    pub output_stream: Stream,
    #[cfg(feature = "cluster")]
    pub remote: Option<supervisor::cluster::RemoteOptions>,
    #[cfg(not(feature = "cluster"))]
    pub remote: Option<()>,
    pub cpus: usize,
    pub procs: Option<usize>,
    pub timeout: Option<std::time::Duration>,
    pub of_median: Option<specs::MedianLimit>,
    pub halt: Option<Halt>,
    pub delimiter: u8,
    pub columns: Columns,
    /// Input sources: --input and -a first (each a source), then those after the command.
    pub groups: Vec<sources::Group>,
}

/// Checks `args`; `detached`: this is the background process of `--daemon`.
pub(super) fn settings(args: &RunArgs, detached: bool) -> anyhow::Result<Settings> {
    let (command_words, mut groups) =
        sources::split_command(&args.command).map_err(|e| usage(e.to_string()))?;
    if let Some(first) = command_words.first().and_then(|w| w.to_str()) {
        // An option clap did not know lands here (the command may follow the options
        // without `--`); no program is called `-x`.
        if first.starts_with('-') {
            let hint = super::super::hints::for_option(first)
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
        if args.keep_order > 0 {
            // GNU parallel keeps input order there (the head task's lines as they
            // come, the others' later); ours come in the order they are written.
            return Err(usage(format!(
                "-k with {option}: {option} prints lines as the commands write them, not in input order; drop -k for that, or drop {option} for output in input order (the default)"
            )));
        }
    }
    let remote = remote_options(args, template.is_some())?;
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
    Ok(Settings {
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
    })
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
    // A fixed limit travels with each task; one that follows the run's median would
    // need every agent's run times.
    if let Some(spec) = &args.timeout {
        match specs::timeout(spec).map_err(usage)? {
            specs::Timeout::Fixed(limit) => options.task_timeout = Some(limit),
            specs::Timeout::OfMedian(_) => {
                return Err(usage(format!(
                    "--timeout {spec}: with --nats give a duration (30s); a share of the median run time is for local runs"
                )))
            }
        }
    }
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
