//! `supervisor worker` (a host agent of a cluster) and `supervisor workers` (its live
//! agents).

use std::sync::Arc;

use anyhow::Context;
use supervisor::cluster::{Agent, FailedWhen, Finish, Refuse};
use supervisor::{Captured, Pool};

use super::args::{Format, NatsArgs, WorkerArgs};
use super::specs;
use super::tasks::{host_access, Failure, HostAccess, Job, Outcome};
use super::Usage;

fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

/// A chain of causes, as one line.
fn chain(e: &supervisor::Error) -> String {
    supervisor_worker::error_chain(e)
}

/// Runs the agent until SIGINT or SIGTERM; returns the exit code.
pub fn worker(args: WorkerArgs) -> anyhow::Result<i32> {
    let connect = args
        .nats
        .connect()
        .ok_or_else(|| usage("supervisor worker needs --nats URL"))?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = Pool::builder().name("supervisor-worker");
    if let Some(spec) = &args.procs {
        builder = builder.procs(specs::procs(spec, cpus).map_err(usage)?);
    }
    if let Some(nice) = args.nice {
        if !(-20..=19).contains(&nice) {
            return Err(usage(format!("--nice {nice} is outside -20..=19")));
        }
        builder = builder.nice(nice);
    }
    if let Some(spec) = &args.timeout {
        match specs::timeout(spec).map_err(usage)? {
            specs::Timeout::Fixed(limit) => builder = builder.task_timeout(limit),
            specs::Timeout::OfMedian(_) => {
                return Err(usage(format!("--timeout {spec}: give a duration (30s)")))
            }
        }
    }
    if let Some(n) = args.max_tasks_per_child {
        builder = builder.max_tasks_per_child(n);
    }
    let pool = builder.build().map_err(|e| usage(chain(&e)))?;
    let (files, commands) = (args.allow_files || args.allow_commands, args.allow_commands);
    let mut agent = Agent::new(connect)
        .allow_commands(args.allow_commands)
        .refuse_with(
            Arc::new(move |task: &str, arg: &[u8]| refusal(task, arg, files, commands)) as Refuse,
        )
        .finish_with(Arc::new(inline_outputs) as Finish)
        .failed_when(Arc::new(failed_run) as FailedWhen)
        .log_with(Arc::new(|line: String| {
            // One write: a test reads these lines.
            use std::io::Write as _;
            let _ = std::io::stderr().write_all(format!("supervisor: {line}\n").as_bytes());
        }));
    if let Some(host) = &args.host {
        agent = agent.host(host.clone());
    }
    let stop = agent.stopper();
    let mut signals = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM])
        .context("cannot handle signals")?;
    std::thread::Builder::new()
        .name("supervisor-signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                stop.stop();
            }
        })
        .context("cannot start the signal-handling thread")?;
    say!(
        "supervisor: worker {} serving with {} processes",
        std::process::id(),
        pool.procs()
    );
    match agent.serve(pool) {
        Ok(()) => Ok(0),
        Err(e) => {
            // A server that is not up yet is waited for: this is one that refused us
            // (credentials, TLS) or a URL that is wrong, as `run --nats` says.
            say!("supervisor: {}", chain(&e));
            Ok(super::EXIT_USAGE)
        }
    }
}

/// Why this agent refuses a built-in task, if it does (see [`host_access`]): one that
/// reads or writes its host's files without `--allow-files`, one that starts a program
/// without `--allow-commands`. Whatever the submitter says of the task (its
/// command-mode mark included): the name and the input decide. An input that does not
/// decode is left to the task, which cannot read it either.
fn refusal(task: &str, arg: &[u8], files: bool, commands: bool) -> Option<String> {
    let job: Job = supervisor_worker::codec::decode(arg).ok()?;
    match host_access(task, &job)? {
        HostAccess::Files if !files => Some(
            "it reads or writes files of the agent's host (start the agent with --allow-files)"
                .to_string(),
        ),
        HostAccess::Commands if !commands => Some(
            "it starts programs on the agent's host (start the agent with --allow-commands)"
                .to_string(),
        ),
        _ => None,
    }
}

/// Whether a CLI task's value is a failed run (a command that exited non-zero...):
/// `run --nats --retries N` runs it again, as the local pool's retry_errors.
fn failed_run(_task: &str, value: &[u8]) -> bool {
    matches!(
        supervisor_worker::codec::decode::<Outcome>(value),
        Ok(Err(_))
    )
}

/// A CLI task's outputs in memory: a spool is a file of this host, the submitter is
/// on another.
fn inline_outputs(_task: &str, value: Vec<u8>) -> Vec<u8> {
    let Ok(outcome) = supervisor_worker::codec::decode::<Outcome>(&value) else {
        return value;
    };
    let inline = |c: Captured| -> Captured {
        if c.is_spooled() {
            c.to_vec().map(Captured::from_bytes).unwrap_or_default()
        } else {
            c
        }
    };
    let outcome: Outcome = match outcome {
        Ok(mut out) => {
            out.text = inline(out.text);
            out.stderr = inline(out.stderr);
            Ok(out)
        }
        Err(Failure::Failed {
            message,
            exit_code,
            signal,
            stdout,
            stderr,
            pid,
            slot,
            start_errno,
        }) => Err(Failure::Failed {
            message,
            exit_code,
            signal,
            stdout: inline(stdout),
            stderr: inline(stderr),
            pid,
            slot,
            start_errno,
        }),
        Err(other) => Err(other),
    };
    supervisor_worker::codec::encode_value(&outcome).unwrap_or(value)
}

/// `supervisor workers --nats URL`.
pub fn workers(nats: &NatsArgs, format: Format) -> anyhow::Result<i32> {
    let connect = nats
        .connect()
        .ok_or_else(|| usage("supervisor workers needs --nats URL"))?;
    let agents = match supervisor::cluster::agents(&connect) {
        Ok(agents) => agents,
        Err(e) => {
            say!("supervisor: {}", chain(&e));
            return Ok(super::EXIT_USAGE);
        }
    };
    let text = match format {
        Format::Json => {
            let mut s = serde_json::to_string(&agents).context("cannot encode")?;
            s.push('\n');
            s
        }
        Format::Text => {
            let mut s = format!(
                "{:<20} {:>8} {:>6} {:>6} {:>8} {:>8}\n",
                "host", "pid", "procs", "busy", "done", "failed"
            );
            for a in &agents {
                s.push_str(&format!(
                    "{:<20} {:>8} {:>6} {:>6} {:>8} {:>8}\n",
                    a.host, a.pid, a.procs, a.busy, a.done, a.failed
                ));
            }
            s
        }
    };
    Ok(super::print_out(&text).err().unwrap_or(0))
}
