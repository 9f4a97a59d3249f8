//! The built-in tasks of `supervisor run --task NAME`, and the command runner behind
//! `supervisor run -- COMMAND`.
//!
//! Every CLI task has the same shape: a [`Job`] (input line, sequence number, `--arg`
//! pairs) in, [`Output`] or [`Failure`] out. The names are part of the CLI's contract.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha512};
use supervisor::{Captured, Command, ExitStatus};

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
    /// [`INLINE_LIMIT`]).
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

fn failed(message: impl Into<String>) -> Failure {
    Failure::Failed {
        message: message.into(),
        exit_code: None,
        signal: None,
        stdout: Captured::default(),
        stderr: Captured::default(),
        pid: 0,
        slot: 0,
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

/// `sha512-chain`: N rounds of `h = hex(sha512(h))` from the input's bytes.
pub fn sha512_chain(job: Job) -> Outcome {
    let rounds: u64 = arg(&job, "iterations", 1_000_000)?;
    text(chain(job.line.as_bytes(), rounds))
}
supervisor::task!("sha512-chain" => sha512_chain);

/// Lowercase hex of `rounds` chained SHA-512 digests.
pub fn chain(start: &[u8], rounds: u64) -> String {
    if rounds == 0 {
        return String::from_utf8_lossy(start).into_owned();
    }
    let mut hex = [0u8; 128];
    hex::encode_to_slice(Sha512::digest(start), &mut hex).expect("64 bytes are 128 digits");
    for _ in 1..rounds {
        let digest = Sha512::digest(hex);
        hex::encode_to_slice(digest, &mut hex).expect("64 bytes are 128 digits");
    }
    String::from_utf8_lossy(&hex).into_owned()
}

/// `prime-factors`: the prime factors of a u64, ascending.
pub fn prime_factors(job: Job) -> Outcome {
    let n: u64 = job.line.trim().parse().map_err(|_| {
        Failure::Decode(format!(
            "line {}: `{}` is not a positive integer",
            job.seq, job.line
        ))
    })?;
    if n == 0 {
        return Err(Failure::Decode(format!(
            "line {}: 0 has no prime factors",
            job.seq
        )));
    }
    let factors = factorize(n);
    text(
        factors
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" "),
    )
}
supervisor::task!("prime-factors" => prime_factors);

fn mul_mod(a: u64, b: u64, m: u64) -> u64 {
    ((a as u128 * b as u128) % m as u128) as u64
}

fn pow_mod(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut result = 1 % m;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            result = mul_mod(result, base, m);
        }
        base = mul_mod(base, base, m);
        exp >>= 1;
    }
    result
}

/// Deterministic Miller-Rabin for u64.
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    for p in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let (mut d, mut s) = (n - 1, 0);
    while d % 2 == 0 {
        d /= 2;
        s += 1;
    }
    'witness: for a in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        let mut x = pow_mod(a, d, n);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul_mod(x, x, n);
            if x == n - 1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A non-trivial factor of composite `n` (Pollard's rho, Brent's variant).
fn rho(n: u64) -> u64 {
    if n.is_multiple_of(2) {
        return 2;
    }
    let mut c = 1;
    loop {
        let f = |x: u64| (mul_mod(x, x, n) + c) % n;
        let (mut x, mut y, mut d) = (2u64, 2u64, 1u64);
        while d == 1 {
            x = f(x);
            y = f(f(y));
            d = gcd(x.abs_diff(y), n);
        }
        if d != n {
            return d;
        }
        c += 1;
    }
}

/// Prime factors of `n` with multiplicity, ascending.
pub fn factorize(n: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut stack = vec![n];
    while let Some(m) = stack.pop() {
        if m == 1 {
            continue;
        }
        if is_prime(m) {
            out.push(m);
            continue;
        }
        let mut small = false;
        for p in [2u64, 3, 5, 7, 11, 13] {
            if m % p == 0 {
                out.push(p);
                stack.push(m / p);
                small = true;
                break;
            }
        }
        if !small {
            let d = rho(m);
            stack.push(d);
            stack.push(m / d);
        }
    }
    out.sort_unstable();
    out
}

/// `pseudowords`: `count` pronounceable random words starting with the input.
pub fn pseudowords(job: Job) -> Outcome {
    let count: u64 = arg(&job, "count", 1_000_000)?;
    let out: Option<String> = job.args.get("out").cloned();
    // xorshift seeded from the line and its number: the same input gives the same words.
    let mut state = job
        .line
        .bytes()
        .fold(0x9e37_79b9_7f4a_7c15u64 ^ job.seq, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
        | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const CONSONANTS: &[u8] = b"bcdfghjklmnprstvwz";
    const VOWELS: &[u8] = b"aeiou";
    let mut write_to = match &out {
        Some(dir) => {
            let path = std::path::Path::new(dir).join(format!("{}.txt", job.seq));
            let file = std::fs::File::create(&path)
                .map_err(|e| failed(format!("cannot create {}: {e}", path.display())))?;
            Some((path, std::io::BufWriter::new(file)))
        }
        None => None,
    };
    let mut word = String::new();
    for _ in 0..count {
        word.clear();
        word.push_str(&job.line);
        let syllables = 1 + next() % 3;
        for _ in 0..syllables {
            word.push(CONSONANTS[(next() % CONSONANTS.len() as u64) as usize] as char);
            word.push(VOWELS[(next() % VOWELS.len() as u64) as usize] as char);
        }
        if let Some((path, w)) = write_to.as_mut() {
            writeln!(w, "{word}")
                .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
        }
    }
    match write_to {
        Some((path, mut w)) => {
            w.flush()
                .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
            text(format!("{count} {}", path.display()))
        }
        None => text(format!("{count} -")),
    }
}
supervisor::task!("pseudowords" => pseudowords);

/// `search`: lines of the file that contain `pattern`.
pub fn search(job: Job) -> Outcome {
    let pattern = job
        .args
        .get("pattern")
        .ok_or_else(|| Failure::Decode("search needs --arg pattern=TEXT".into()))?;
    let path = job.line.trim();
    let file = std::fs::File::open(path).map_err(|e| failed(format!("cannot open {path}: {e}")))?;
    let mut found = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| failed(format!("cannot read {path}: {e}")))?;
        if line.contains(pattern.as_str()) {
            found.push(format!("{path}:{}:{line}", i + 1));
        }
    }
    text(found.join("\n"))
}
supervisor::task!("search" => search);

fn parse_duration(job: &Job, s: &str) -> Result<Duration, Failure> {
    humantime::parse_duration(s.trim())
        .map_err(|e| Failure::Decode(format!("line {}: `{s}` is not a duration: {e}", job.seq)))
}

/// `sleep`: sleeps for the duration on the line.
pub fn sleep(job: Job) -> Outcome {
    let d = parse_duration(&job, &job.line)?;
    let t = Instant::now();
    std::thread::sleep(d);
    text(humantime::format_duration(round_ms(t.elapsed())).to_string())
}
supervisor::task!("sleep" => sleep);

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// `whoami`: the worker's identity as JSON.
pub fn whoami(_job: Job) -> Outcome {
    let stat = supervisor_worker::ProcStat::of(std::process::id() as i32);
    let num = |field: fn(&supervisor_worker::ProcStat) -> i32| stat.as_ref().map_or(-1, field);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    let value = serde_json::json!({
        "pid": std::process::id(),
        "ppid": num(|s| s.ppid),
        "pgid": num(|s| s.pgrp),
        "nice": num(|s| s.nice),
        "rss_kib": rss,
    });
    Ok(Output {
        text: Captured::from(value.to_string()),
        stderr: Captured::default(),
        json: true,
        pid: 0,
        slot: 0,
    })
}
supervisor::task!("whoami" => whoami);

/// `fault`: misbehaves as the input line says.
pub fn fault(job: Job) -> Outcome {
    let line = job.line.trim();
    let (what, rest) = line.split_once(' ').unwrap_or((line, ""));
    match what {
        "ok" => text("ok"),
        "fail" => Err(failed(rest.to_string())),
        "panic" => panic!("fault: panic requested"),
        "abort" => std::process::abort(),
        "segfault" => {
            // SAFETY: none: a deliberate crash, which is what this input asks for.
            unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
            text("unreachable")
        }
        "exit" => {
            let code: i32 = rest
                .trim()
                .parse()
                .map_err(|_| Failure::Decode(format!("line {}: `exit {rest}` needs a number", job.seq)))?;
            std::process::exit(code)
        }
        "hang" => loop {
            std::thread::park();
        },
        "sleep" => {
            let d = parse_duration(&job, rest)?;
            std::thread::sleep(d);
            text(format!("slept {}", humantime::format_duration(d)))
        }
        "alloc" => {
            let mib: usize = rest
                .trim()
                .parse()
                .map_err(|_| Failure::Decode(format!("line {}: `alloc {rest}` needs a number of MiB", job.seq)))?;
            let mut v: Vec<u8> = Vec::new();
            v.try_reserve_exact(mib << 20)
                .map_err(|e| failed(format!("cannot allocate {mib} MiB: {e}")))?;
            v.resize(mib << 20, 1);
            text(format!("allocated {mib} MiB ({} touched)", v.iter().step_by(4096).count()))
        }
        "spawn-grandchild" => {
            let child = std::process::Command::new("sleep")
                .arg("3600")
                .spawn()
                .map_err(|e| failed(format!("cannot start sleep: {e}")))?;
            // One write, so that two workers' lines never interleave (eprintln! writes
            // the pieces of its format one by one).
            let line = format!("fault: left grandchild {} behind\n", child.id());
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
            loop {
                std::thread::park();
            }
        }
        other => Err(Failure::Decode(format!(
            "line {}: unknown fault `{other}` (ok, fail, panic, abort, segfault, exit, hang, sleep, alloc, spawn-grandchild)",
            job.seq
        ))),
    }
}
supervisor::task!("fault" => fault);

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
        super::replace::put_slot(&mut argv, &job.slots, u64::from(slot));
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
    let out =
        supervisor::run_command(cmd).map_err(|e| failed(supervisor_worker::error_chain(&e)))?;
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
    let mut child = started.map_err(|e| failed(format!("cannot start {name}: {e}")))?;
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
                Some(pipe) => super::lines::copy(pipe, std::io::stderr(), tag, lock),
                None => Ok(()),
            });
            let on_stdout = match out {
                Some(pipe) => super::lines::copy(pipe, std::io::stdout(), tag, lock),
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
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factorize_handles_primes_squares_and_big_semiprimes() {
        assert_eq!(factorize(1), Vec::<u64>::new());
        assert_eq!(factorize(360), vec![2, 2, 2, 3, 3, 5]);
        assert_eq!(
            factorize(18_446_744_073_709_551_557),
            vec![18_446_744_073_709_551_557]
        );
        assert_eq!(
            factorize(4_294_967_291 * 4_294_967_279),
            vec![4_294_967_279, 4_294_967_291]
        );
        assert_eq!(
            factorize(u64::MAX),
            vec![3, 5, 17, 257, 641, 65537, 6700417]
        );
    }

    #[test]
    fn sha512_chain_matches_a_known_value() {
        // Python: h=b"abc"; h=hashlib.sha512(h).hexdigest().encode() once.
        assert_eq!(
            chain(b"abc", 1),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(chain(b"abc", 0), "abc");
    }

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
