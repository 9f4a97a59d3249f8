//! The command line, as clap sees it. The names here are a contract.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Runs tasks or commands over many inputs in supervised worker processes.
#[derive(Debug, Parser)]
#[command(
    name = "supervisor",
    version,
    about,
    after_help = "Exit codes: 0 all tasks succeeded; 1 one or more failed; 2 usage or configuration error; 3 the output could not be written (disk full, I/O error, closed descriptor); 4 with --nats: the cluster failed the run (server unreachable past --nats-timeout, an agent of another wire version); 129 stopped by SIGHUP; 130 stopped by SIGINT; 143 stopped by SIGTERM; 141 standard output closed (a broken pipe, silently)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a built-in task (--task NAME) or a command once per input (stdin, --input,
    /// -a FILE, ::: ARGS, :::: FILES).
    Run(Box<RunArgs>),
    /// List the built-in tasks and their inputs.
    Tasks,
    /// Show the live state of a run started with --daemon.
    Status {
        /// The --pidfile of the run.
        #[arg(long)]
        pidfile: PathBuf,
    },
    /// Stop a run started with --daemon (gracefully, as SIGTERM would).
    Stop {
        /// The --pidfile of the run.
        #[arg(long)]
        pidfile: PathBuf,
        /// Wait until the run has exited (exit 1 if it has not within --timeout).
        #[arg(long)]
        wait: bool,
        /// With --wait: how long to wait (default: as long as it takes).
        #[arg(long, value_parser = duration, requires = "wait")]
        timeout: Option<Duration>,
    },
    /// Be a host agent of a cluster: run the tasks submitters publish on the NATS
    /// server (JetStream) on a local pool, until SIGINT or SIGTERM.
    Worker(Box<WorkerArgs>),
    /// List the live agents of a cluster (host, pid, procs, busy, done, failed).
    Workers {
        #[command(flatten)]
        nats: NatsArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

/// Where the NATS server is, and how to log in to it.
#[derive(Debug, Args, Clone, Default)]
pub struct NatsArgs {
    /// The NATS server (with JetStream): nats://[user:pass@|token@]host:port; several
    /// comma-separated. With `run`: run the tasks on the cluster's agents.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// A NATS credentials file (user JWT and nkey seed).
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub nats_creds: Option<PathBuf>,
    /// CA certificates (PEM) to trust for the server's TLS certificate.
    #[arg(long, value_name = "FILE", requires = "nats")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM), with --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Refuse a connection without TLS.
    #[arg(long, requires = "nats")]
    pub tls_required: bool,
    /// How long the server waits for an agent's acknowledgement before it delivers a
    /// task again (default 30s; agents send in-progress acks every third of it).
    #[arg(long, value_parser = duration, value_name = "DURATION", requires = "nats")]
    pub ack_wait: Option<Duration>,
}

#[cfg(feature = "cluster")]
impl NatsArgs {
    /// The connection the options describe, if `--nats` was given.
    pub fn connect(&self) -> Option<supervisor::cluster::Connect> {
        let url = self.nats.clone()?;
        let mut c = supervisor::cluster::Connect::new(url);
        c.creds = self.nats_creds.clone();
        c.tls_ca = self.tls_ca.clone();
        c.tls_cert = self.tls_cert.clone().zip(self.tls_key.clone());
        c.tls_required = self.tls_required;
        Some(c)
    }
}

/// `supervisor worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Worker processes of the local pool: N, N%, +N, -N (default: the CPUs).
    #[arg(
        short = 'j',
        long,
        visible_alias = "jobs",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub procs: Option<String>,
    /// Nice value of the workers (-20..=19).
    #[arg(long, allow_negative_numbers = true)]
    pub nice: Option<i32>,
    /// Time limit per task on this host (a duration or seconds).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Replace a worker after N tasks.
    #[arg(long)]
    pub max_tasks_per_child: Option<u64>,
    /// Run command-mode tasks (`supervisor run --nats URL -- COMMAND`) and built-in
    /// tasks that start programs (`fault spawn-grandchild`): they run any command a
    /// client of the server sends. Implies --allow-files. Refused otherwise.
    #[arg(long)]
    pub allow_commands: bool,
    /// Run built-in tasks that read or write this host's files by a path the client
    /// chose (`search` reads the file its input names, `pseudowords --arg out=DIR`
    /// writes under DIR). Refused otherwise; the other built-ins only compute.
    #[arg(long)]
    pub allow_files: bool,
    /// The name this agent reports in results, job logs and `workers` (default: the
    /// host name).
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JoblogFormat {
    Tsv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    Spawn,
    Fork,
    Forkserver,
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); examples: 500ms, 2s, 1m"))
}

fn restart_limit(s: &str) -> Result<(u32, Duration), String> {
    let (n, window) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not N/DURATION; example: 10/60s"))?;
    let n = n
        .parse::<u32>()
        .map_err(|e| format!("`{n}` is not a count ({e}); example: 10/60s"))?;
    Ok((n, duration(window)?))
}

/// A size in bytes: a number with an optional binary unit, `K`, `M`, `G` or `T`
/// (each 1024 times the last; `KiB`, `MB` and the like mean the same).
pub fn size(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "`{s}` is not a size; examples: 512M, 2G, 1048576 (K, M, G, T are binary: 1M = 1024K)"
        )
    };
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// A [`size`] of memory for a worker: at least 1 MiB (a worker process alone holds
/// several; under 1 MiB every task would fail, or its worker be replaced after each).
pub fn memory_size(s: &str) -> Result<u64, String> {
    let bytes = size(s)?;
    if bytes < 1 << 20 {
        return Err(format!(
            "`{s}` is under 1M: less than any worker process holds by itself (several \
             MiB), so every task would go over it"
        ));
    }
    Ok(bytes)
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  seq 1 100 | supervisor run --task prime-factors\n  supervisor run -j 8 --nice 10 --task sha512-chain --arg iterations=20000 --input words.txt\n  ls *.log | supervisor run --timeout 30s -- gzip -k {}\n\nExit codes: 0 all tasks succeeded; 1 one or more failed; 2 usage or configuration error; 3 the output could not be written (disk full, I/O error, closed descriptor); 4 with --nats: the cluster failed the run (server unreachable past --nats-timeout, an agent of another wire version); 129 stopped by SIGHUP; 130 stopped by SIGINT; 143 stopped by SIGTERM; 141 standard output closed (a broken pipe, silently)."
)]
pub struct RunArgs {
    /// Built-in task to run on each input line (see `supervisor tasks`).
    #[arg(long, conflicts_with = "command")]
    pub task: Option<String>,
    /// KEY=VALUE argument for the task (repeatable).
    #[arg(long = "arg", value_parser = key_value)]
    pub args: Vec<(String, String)>,
    /// Read inputs from FILE (`-` for stdin). Default: stdin.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// An input source: the records of FILE (`-` for stdin), as parallel's -a; several
    /// give every combination (like `::::`).
    #[arg(short = 'a', long = "arg-file", value_name = "FILE")]
    pub arg_files: Vec<PathBuf>,
    /// Records end with NUL, not newline (as `find -print0` writes them).
    #[arg(short = '0', long = "null")]
    pub null: bool,
    /// Records end with this character (\n, \t, \0 allowed).
    #[arg(short = 'd', long, value_name = "CHAR", conflicts_with = "null")]
    pub delimiter: Option<String>,
    /// Cut each record into fields at this regular expression, for {1} {2} ...
    #[arg(long, value_name = "REGEX")]
    pub colsep: Option<String>,
    /// Worker processes: N, N% of the CPUs, +N or -N (CPUs plus or minus N).
    /// Default: the CPUs available to this process.
    #[arg(
        short = 'j',
        long,
        visible_alias = "jobs",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub procs: Option<String>,
    /// Nice value of the workers (-20..=19).
    #[arg(long, allow_negative_numbers = true)]
    pub nice: Option<i32>,
    /// How workers are created.
    #[arg(long, value_enum, default_value = "spawn")]
    pub start_method: Method,
    /// Time limit per task: a duration (500ms, 2m), seconds (2.5, as parallel) or N% of
    /// the median run time of the tasks that succeeded so far (as parallel; no limit
    /// before one has, never under 50ms); the worker and its children are stopped.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Re-run a task up to N more times: when its worker died or it timed out, and in
    /// command mode also when the command exited non-zero (as parallel).
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// Replace a worker after N tasks.
    #[arg(long)]
    pub max_tasks_per_child: Option<u64>,
    /// Memory limit per task (e.g. 512M, 2G; binary units, 1M = 1024K; at least 1M):
    /// resident memory of the worker plus every process its task started, looked at
    /// every 20 ms (over it they are killed) and judged by the kernel's high-water
    /// marks when the task ends (over it even briefly, it fails all the same): the
    /// task fails as memory_exceeded.
    #[arg(long, value_name = "SIZE", value_parser = memory_size)]
    pub memory_limit: Option<u64>,
    /// Replace a worker after a task that leaves it with more resident memory than
    /// SIZE (binary units, at least 1M); nothing is lost.
    #[arg(long, value_name = "SIZE", value_parser = memory_size)]
    pub max_memory_per_child: Option<u64>,
    /// Restart storm limit: more than N workers that die (or cannot start) before
    /// finishing anything, within DUR and with no task finished in between, stop the
    /// run. A worker killed while running a task never counts (that task fails, or is
    /// retried). Default: 10/60s.
    #[arg(long, value_name = "N/DUR", value_parser = restart_limit)]
    pub restart_limit: Option<(u32, Duration)>,
    /// Print results as they finish (default: input order).
    #[arg(long)]
    pub unordered: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Write one line per task to FILE: GNU parallel's tab-separated job log (see
    /// --joblog-format).
    #[arg(long)]
    pub joblog: Option<PathBuf>,
    /// The job log's format: `tsv` (GNU parallel's, read by --resume) or `json` (one
    /// JSON object per line with pid, peak RSS, attempts...).
    #[arg(long, value_enum, default_value = "tsv")]
    pub joblog_format: JoblogFormat,
    /// Skip the inputs the --joblog already lists (as finished, well or not) and append
    /// to it: an interrupted run continues where it stopped.
    #[arg(long, requires = "joblog")]
    pub resume: bool,
    /// As --resume, but run again the inputs the job log lists as failed.
    #[arg(long, requires = "joblog", conflicts_with = "resume")]
    pub resume_failed: bool,
    /// Progress bar on stderr (auto: when stderr is a terminal; a bare --progress is
    /// always).
    #[arg(long, value_enum, default_value = "auto", num_args = 0..=1, default_missing_value = "always")]
    pub progress: Progress,
    /// GNU parallel's --eta and --bar: the progress bar, always.
    #[arg(long, alias = "bar")]
    pub eta: bool,
    /// After the first failure, start nothing more and stop running tasks (as
    /// `--halt now,fail=1`).
    #[arg(long)]
    pub fail_fast: bool,
    /// Stop the run when a condition is met, as parallel: `now,fail=1`,
    /// `soon,fail=10%`, `now,success=3`, `never` (now: stop running tasks; soon: start
    /// nothing more).
    #[arg(long, value_name = "WHEN,WHAT=N")]
    pub halt: Option<String>,
    /// Print each command (with its replacements made) instead of running it.
    #[arg(long)]
    pub dry_run: bool,
    /// Prefix every output line with the input and a tab.
    #[arg(long)]
    pub tag: bool,
    /// Command mode: print each line of a command's output as soon as it is written
    /// (lines of tasks running at once interleave; a line is never split), instead of
    /// its whole output when its turn comes. As parallel's --line-buffer.
    #[arg(long, visible_alias = "lb", conflicts_with_all = ["ungroup", "results"])]
    pub line_buffer: bool,
    /// Command mode: commands write to our stdout and stderr directly, as they go
    /// (outputs of tasks running at once may mix, even within a line). As parallel's -u.
    #[arg(short = 'u', long, conflicts_with_all = ["results", "tag"])]
    pub ungroup: bool,
    /// Write each task's stdout and stderr under DIR, in parallel's layout
    /// (DIR/1/VALUE/stdout ...), instead of printing them (as parallel).
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// Accepted for parallel's sake: the output is in input order already (see
    /// --unordered).
    #[arg(short = 'k', long, hide = true, action = clap::ArgAction::Count)]
    pub keep_order: u8,
    /// Accepted for parallel's sake (nothing to cite, nothing to notice).
    #[arg(long, hide = true, action = clap::ArgAction::Count)]
    pub will_cite: u8,
    /// Accepted for parallel's sake.
    #[arg(long, hide = true, action = clap::ArgAction::Count)]
    pub no_notice: u8,
    /// Accepted for parallel's sake: an empty input runs nothing already.
    #[arg(short = 'r', long, hide = true, action = clap::ArgAction::Count)]
    pub no_run_if_empty: u8,
    /// Per-worker summary on stderr at the end.
    #[arg(long)]
    pub stats: bool,
    /// Run in the background (needs --pidfile and --input FILE).
    #[arg(long, requires = "pidfile")]
    pub daemon: bool,
    /// With --daemon: the pidfile (its one line is the pid; it is locked while the run
    /// lives, and `status`/`stop` find the run through it).
    #[arg(long)]
    pub pidfile: Option<PathBuf>,
    /// With --daemon: where diagnostics go (default: /dev/null).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// With --daemon: where results go (default: /dev/null).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Time between SIGTERM and SIGKILL when stopping a task (a timeout, --halt, a
    /// signal); a worker that does not answer is SIGKILLed 500 ms after it.
    #[arg(long, value_parser = duration, default_value = "5s")]
    pub grace: Duration,
    /// Command mode: run the command under `sh -c`, each `{}` replaced by the line
    /// shell-quoted (the default when the command is one word with a space or a shell
    /// metacharacter, such as 'echo {} | tr a-z A-Z').
    #[arg(long)]
    pub shell: bool,
    /// Command mode: the command to run per input; `{}` `{.}` `{/}` `{//}` `{/.}` `{#}`
    /// `{%}` (the job slot) `{N}` are replaced (the input is appended when there is none). It may
    /// follow the options directly or after `--`; `::: ARGS`, `:::: FILES`, `:::+` and
    /// `::::+` after it give input sources, as in GNU parallel.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// With --nats: give up (exit 4) when the server has been unreachable this long
    /// (default 60s).
    #[arg(long, value_parser = duration, value_name = "DURATION", requires = "nats")]
    pub nats_timeout: Option<Duration>,
    #[arg(trailing_var_arg = true)]
    pub command: Vec<std::ffi::OsString>,
}

#[cfg(test)]
mod tests {
    use super::{memory_size, size};

    #[test]
    fn a_memory_size_is_at_least_a_mebibyte() {
        assert_eq!(memory_size("1M"), Ok(1 << 20));
        assert_eq!(memory_size("1048576"), Ok(1 << 20));
        for low in ["0", "1", "1K", "1023K", "1048575"] {
            let e = memory_size(low).unwrap_err();
            assert!(e.contains("under 1M"), "{low}: {e}");
        }
        assert!(memory_size("12X").unwrap_err().contains("not a size"));
    }

    #[test]
    fn sizes_take_binary_units() {
        for (text, bytes) in [
            ("1048576", 1 << 20),
            ("512M", 512 << 20),
            ("512m", 512 << 20),
            ("512MiB", 512 << 20),
            ("512MB", 512 << 20),
            ("2G", 2 << 30),
            ("100K", 100 << 10),
            ("1T", 1 << 40),
            ("64B", 64),
            (" 3 G ", 3 << 30),
        ] {
            assert_eq!(size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "M", "12X", "1.5G", "-1M", "99999999999T"] {
            assert!(size(bad).is_err(), "{bad}");
        }
    }
}
