//! The built-in tasks of `supervisor run --task NAME`, and the command runner behind
//! `supervisor run -- COMMAND`.
//!
//! Every CLI task has the same shape: a [`Job`] (input line, sequence number, `--arg`
//! pairs) in, [`Output`] or [`Failure`] out. The names are part of the CLI's contract.
//! The built-in tasks are in `tasks/builtins.rs`, the command runner in
//! `tasks/command.rs`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use supervisor::Captured;

mod builtins;
mod command;

/// One input line for a CLI task.
///
/// Sent to the worker in the form [`super::task_wire`] picks.
#[derive(Debug, Clone)]
pub struct Job {
    /// The input line (without its newline); for built-in tasks, which take text,
    /// converted lossily where it is not UTF-8 (command mode passes its bytes in `argv`).
    pub line: String,
    /// 1-based line number.
    pub seq: u64,
    /// `--arg KEY=VALUE` pairs.
    pub args: BTreeMap<String, String>,
    /// Command mode: the argv to run (with `{}` already replaced), as bytes.
    pub argv: Vec<ByteBuf>,
    /// Command mode: where `{%}` goes in `argv` (argument, byte offset); the worker
    /// writes its job slot there (its pool seat + 1) when the job starts.
    pub slots: Vec<(u32, u32)>,
    /// Command mode: how its output reaches ours.
    pub stream: Stream,
    /// With [`Stream::Lines`] and `--tag`: what goes before each line (and a tab).
    pub tag: Option<ByteBuf>,
    /// With [`Stream::Lines`]: the run's lock file, held while a worker writes lines,
    /// so that lines of two tasks never mix whatever their length.
    pub lock: Option<ByteBuf>,
}

/// How a command's output reaches the run's stdout and stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    /// Captured, and printed whole when its turn comes (the default; no interleaving).
    #[default]
    Group,
    /// Straight through, as the command writes it (`-u`, `--ungroup`): outputs of
    /// tasks running at once may mix, even within a line.
    Ungroup,
    /// Each complete line as soon as it is written (`--line-buffer`): lines of tasks
    /// running at once interleave, a line is never split (one longer than
    /// [`LINE_LIMIT`] is written in pieces of that size).
    Lines,
}

/// The longest piece of one line `--line-buffer` holds before writing it.
pub const LINE_LIMIT: usize = 1 << 20;

/// What a task printed.
///
/// Sent back in the form [`super::task_wire`] picks.
#[derive(Debug)]
pub struct Output {
    /// Standard output (for commands, exactly what they wrote, spooled past
    /// [`INLINE_LIMIT`](command::INLINE_LIMIT)).
    pub text: Captured,
    /// Standard error of a command (printed on our stderr, grouped).
    pub stderr: Captured,
    /// The text is a JSON value (`whoami`): `--format json` embeds it as such.
    pub json: bool,
    /// A command's own pid (0 for a built-in task), for the job log.
    pub pid: u32,
    /// The job slot `{%}` the command ran with (0: none).
    pub slot: u32,
}

/// Why a task failed.
#[derive(Debug, Serialize, Deserialize)]
pub enum Failure {
    /// The input line is not valid for this task.
    Decode(String),
    /// The task failed; for commands, with their exit code or signal.
    Failed {
        /// What went wrong.
        message: String,
        /// A command's exit code.
        exit_code: Option<i32>,
        /// The signal that ended a command.
        signal: Option<i32>,
        /// A command's standard output (printed even though it failed).
        stdout: Captured,
        /// A command's standard error.
        stderr: Captured,
        /// A command's own pid (0 if none ran).
        #[serde(default)]
        pid: u32,
        /// The job slot `{%}` the command ran with (0: none).
        #[serde(default)]
        slot: u32,
        /// The command could not be started: the system's error number (the job log
        /// writes a shell's exit status for it, 127 for a program not found, else 126).
        #[serde(default)]
        start_errno: Option<i32>,
    },
    /// With `-u` or `--line-buffer`: the command's output could not be written to
    /// the run's (the command was stopped); the run stops as for its own output.
    Output {
        /// What went wrong.
        message: String,
        /// The output was a closed pipe (exit 141, silently), not a full disk.
        broken_pipe: bool,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Decode(m)
            | Failure::Failed { message: m, .. }
            | Failure::Output { message: m, .. } => f.write_str(m),
        }
    }
}

/// A task's result.
pub type Outcome = Result<Output, Failure>;

fn text(s: impl Into<String>) -> Outcome {
    Ok(Output {
        text: Captured::from(s.into()),
        stderr: Captured::default(),
        json: false,
        pid: 0,
        slot: 0,
    })
}

/// A failure of a task, no command of its own having run.
fn failed(message: impl Into<String>) -> Failure {
    cannot_start(message, None)
}

/// A command that could not be started: `errno` is what the system said (`None`: not
/// a start the system refused, see [`failed`]).
fn cannot_start(message: impl Into<String>, errno: Option<i32>) -> Failure {
    Failure::Failed {
        message: message.into(),
        exit_code: None,
        signal: None,
        stdout: Captured::default(),
        stderr: Captured::default(),
        pid: 0,
        slot: 0,
        start_errno: errno,
    }
}

fn arg<T: std::str::FromStr>(job: &Job, key: &str, default: T) -> Result<T, Failure> {
    match job.args.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| Failure::Decode(format!("--arg {key}={v}: not a valid value"))),
    }
}

/// The `--arg` keys each built-in task accepts, and whether the value is a number.
pub const ARGS: &[(&str, &[(&str, bool)])] = &[
    ("sha512-chain", &[("iterations", true)]),
    ("pseudowords", &[("count", true), ("out", false)]),
    ("search", &[("pattern", false)]),
];

/// Checks `--arg` pairs against what `task` accepts: unknown keys and non-numbers are
/// usage errors, found before anything starts.
pub fn check_args(task: &str, args: &[(String, String)]) -> Result<(), String> {
    let accepted: &[(&str, bool)] = ARGS
        .iter()
        .find(|(t, _)| *t == task)
        .map_or(&[], |(_, a)| a);
    for (key, value) in args {
        match accepted.iter().find(|(k, _)| k == key) {
            None if accepted.is_empty() => {
                return Err(format!("task `{task}` takes no --arg (got `{key}`)"))
            }
            None => {
                let keys: Vec<&str> = accepted.iter().map(|(k, _)| *k).collect();
                return Err(format!(
                    "task `{task}` has no --arg `{key}` (it takes: {})",
                    keys.join(", ")
                ));
            }
            Some((_, true)) if value.parse::<u64>().is_err() => {
                return Err(format!("--arg {key}={value}: not a whole number"));
            }
            Some(_) => {}
        }
    }
    if task == "search" && !args.iter().any(|(k, _)| k == "pattern") {
        return Err("task `search` needs --arg pattern=TEXT".into());
    }
    Ok(())
}

/// Every built-in task: name, what it takes, what it prints.
pub const BUILTINS: &[(&str, &str, &str)] = &[
    ("sha512-chain", "a string; --arg iterations=N (default 1000000)", "hex digest after N rounds of h = hex(sha512(h))"),
    ("prime-factors", "a positive integer (u64)", "its prime factors, ascending, space-separated"),
    ("pseudowords", "a prefix; --arg count=N (default 1000000), --arg out=DIR", "the count and the file written (DIR/N.txt, N the input line number)"),
    ("search", "a file path; --arg pattern=TEXT", "matching lines as path:line_number:text"),
    ("sleep", "a duration (250ms, 2s)", "the time slept"),
    ("whoami", "anything (ignored)", "JSON {pid, ppid, pgid, nice, rss_kib} of the worker"),
    ("fault", "ok | fail MESSAGE | panic | abort | segfault | exit N | hang | sleep DUR | alloc MIB | spawn-grandchild", "what the worker did (for demos and tests)"),
];

/// What a built-in task reaches on its host beyond computing (an agent started
/// without the flag that allows it refuses the task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAccess {
    /// Reads or writes files of the host by a path the submitter chose:
    /// `supervisor worker --allow-files`.
    Files,
    /// Starts programs (command mode, `fault spawn-grandchild`):
    /// `supervisor worker --allow-commands`, which allows files too (a command can
    /// read and write them anyway).
    Commands,
}

/// What `task` run on `job` reaches on its host (none: it only computes, sleeps or
/// misbehaves inside its own worker, which the pool contains). `search` reads the
/// file named by its input; `pseudowords --arg out=DIR` writes a file under DIR;
/// `command` and `fault spawn-grandchild` start programs. `whoami` reads only its
/// own process's `/proc` entries.
pub fn host_access(task: &str, job: &Job) -> Option<HostAccess> {
    match task {
        "command" => Some(HostAccess::Commands),
        "search" => Some(HostAccess::Files),
        "pseudowords" if job.args.contains_key("out") => Some(HostAccess::Files),
        "fault" if job.line.trim().starts_with("spawn-grandchild") => Some(HostAccess::Commands),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// Every built-in is in the table: those that touch the host's files or start
    /// programs say so; the others only compute.
    #[test]
    fn host_access_names_every_built_in_that_reaches_outside_its_worker() {
        let job = |line: &str, args: &[(&str, &str)]| Job {
            line: line.to_string(),
            seq: 1,
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            argv: Vec::new(),
            slots: Vec::new(),
            stream: Stream::Group,
            tag: None,
            lock: None,
        };
        let cases: &[(&str, Job, Option<HostAccess>)] = &[
            ("sha512-chain", job("x", &[]), None),
            ("prime-factors", job("12", &[]), None),
            ("pseudowords", job("ab", &[("count", "3")]), None),
            (
                "pseudowords",
                job("ab", &[("out", "/etc")]),
                Some(HostAccess::Files),
            ),
            (
                "search",
                job("/etc/shadow", &[("pattern", "root")]),
                Some(HostAccess::Files),
            ),
            ("sleep", job("1s", &[]), None),
            ("whoami", job("", &[]), None),
            ("fault", job("segfault", &[]), None),
            ("fault", job("alloc 10", &[]), None),
            (
                "fault",
                job(" spawn-grandchild", &[]),
                Some(HostAccess::Commands),
            ),
            ("command", job("", &[]), Some(HostAccess::Commands)),
        ];
        for (task, job, access) in cases {
            assert_eq!(host_access(task, job), *access, "{task} {:?}", job.line);
        }
        for (name, _, _) in BUILTINS {
            assert!(
                cases.iter().any(|(t, _, _)| t == name),
                "{name} is not in the table"
            );
        }
    }
}
