//! The host agent: pulls tasks from every run's consumer, runs each on the local pool,
//! publishes the result, then acknowledges the task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer::PullConsumer, AckKind};
use futures_util::StreamExt;
use serde_bytes::ByteBuf;
use tokio::sync::{Notify, Semaphore};

use super::connect::{cluster, runtime, Connect};
use super::defaults::ABANDONED_AFTER;
use super::stream::{self, alive_subject, result_subject};
use super::wire::{retryable, Failure, Outcome, Task, TaskResult};
use crate::error::{Error, ErrorKind};
use crate::Pool;

/// What an agent does to a task's encoded value before publishing it (the CLI makes
/// a spooled output inline, since the submitter is on another host).
pub type Finish = Arc<dyn Fn(&str, Vec<u8>) -> Vec<u8> + Send + Sync>;

/// Told what the agent does that its operator wants to know (a run abandoned by its
/// submitter), one line each.
pub type Log = Arc<dyn Fn(String) + Send + Sync>;

/// Makes this program a host agent: it runs the registered tasks that submitters
/// publish, on a local pool, until stopped.
///
/// ```no_run
/// use supervisor::cluster::{Agent, Connect};
/// fn main() -> Result<(), supervisor::Error> {
///     supervisor::init();
///     let pool = supervisor::Pool::new(4)?;
///     Agent::new(Connect::new("nats://127.0.0.1:4222")).serve(pool)
/// }
/// ```
pub struct Agent {
    connect: Connect,
    allow_commands: bool,
    host: String,
    finish: Option<Finish>,
    log: Option<Log>,
    stop: AgentStop,
}

/// Stops a serving [`Agent`] from another thread (or a signal handler's thread).
#[derive(Clone, Default)]
pub struct AgentStop(Arc<(AtomicBool, Notify)>);

impl AgentStop {
    /// Stops taking tasks; running ones are stopped with the pool and delivered again
    /// by the server.
    pub fn stop(&self) {
        self.0 .0.store(true, Ordering::SeqCst);
        self.0 .1.notify_waiters();
    }

    pub(crate) fn stopped(&self) -> bool {
        self.0 .0.load(Ordering::SeqCst)
    }

    /// Returns once stopped.
    async fn wait(&self) {
        loop {
            let notified = self.0 .1.notified();
            if self.stopped() {
                return;
            }
            // Looked at again now and then: a stop between the look and the wait
            // would otherwise be missed.
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    }
}

/// A worker's share of the agent's semaphore: a task of a slow run takes all of it (one
/// task per free worker, none waiting behind a running one); a task of a run whose tasks
/// take under [`FAST_TASK`] takes one unit, so up to this many wait per worker, which
/// is what keeps tiny tasks from paying a network round trip each.
const SHARE: u32 = 32;

/// Under this mean run time a run's tasks count as tiny (see [`SHARE`]).
const FAST_TASK: Duration = Duration::from_millis(2);

/// Tasks fetched in one pull request, at most.
const MAX_BATCH: usize = 256;

/// What an agent shares between its tasks.
struct Shared {
    pool: Arc<Pool>,
    js: jetstream::Context,
    client: async_nats::Client,
    allow_commands: bool,
    host: String,
    finish: Option<Finish>,
    log: Option<Log>,
    free: Arc<Semaphore>,
    done: AtomicU64,
    failed: AtomicU64,
    stop: AgentStop,
}

impl Agent {
    /// An agent of the server `connect` names; refuses command-mode tasks.
    pub fn new(connect: Connect) -> Agent {
        Agent {
            connect,
            allow_commands: false,
            host: host_name(),
            finish: None,
            log: None,
            stop: AgentStop::default(),
        }
    }

    /// Run command-mode tasks too (`supervisor worker --allow-commands`).
    pub fn allow_commands(mut self, yes: bool) -> Agent {
        self.allow_commands = yes;
        self
    }

    /// The name this agent gives in results and status (default: the host name).
    pub fn host(mut self, name: impl Into<String>) -> Agent {
        self.host = name.into();
        self
    }

    /// Transforms each task's encoded value before it is published.
    pub fn finish_with(mut self, finish: Finish) -> Agent {
        self.finish = Some(finish);
        self
    }

    /// Where the agent's notices go (none by default).
    pub fn log_with(mut self, log: Log) -> Agent {
        self.log = Some(log);
        self
    }

    /// A handle that stops [`Agent::serve`].
    pub fn stopper(&self) -> AgentStop {
        self.stop.clone()
    }

    /// Serves until stopped: the pool's workers run the tasks, as many at once as it
    /// has workers. Returns an error if the server cannot be reached at the start (a
    /// connection lost later is re-made by the client, and serving goes on).
    pub fn serve(self, pool: Pool) -> Result<(), Error> {
        let pool = Arc::new(pool);
        let procs = pool.procs();
        let rt = runtime()?;
        let result = rt.block_on(async {
            let client = self.connect.client("supervisor worker").await?;
            let js = jetstream::new(client.clone());
            let (tasks, _) = stream::streams(&js).await?;
            let shared = Arc::new(Shared {
                pool: pool.clone(),
                js,
                client,
                allow_commands: self.allow_commands,
                host: self.host.clone(),
                finish: self.finish.clone(),
                log: self.log.clone(),
                free: Arc::new(Semaphore::new(procs * SHARE as usize)),
                done: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                stop: self.stop.clone(),
            });
            tokio::spawn(super::status::publish(shared_status(&shared, procs)));
            let mut serving: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
            while !shared.stop.stopped() {
                let listing = async {
                    let mut found = Vec::new();
                    let mut names = tasks.consumer_names();
                    while let Some(Ok(name)) = names.next().await {
                        found.push(name);
                    }
                    found
                };
                // A listing waits out the request timeout while the server is away:
                // a stop does not wait for it.
                let found = tokio::select! {
                    found = listing => found,
                    () = shared.stop.wait() => break,
                };
                for name in found {
                    if name.starts_with("run-") && !serving.contains_key(&name) {
                        let task =
                            tokio::spawn(serve_run(shared.clone(), tasks.clone(), name.clone()));
                        serving.insert(name, task);
                    }
                }
                serving.retain(|_, t| !t.is_finished());
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    () = shared.stop.wait() => {}
                }
            }
            for (_, task) in serving {
                task.abort();
            }
            Ok::<(), Error>(())
        });
        // Before the runtime goes: its blocking threads wait on the pool's tasks.
        pool.terminate();
        drop(rt);
        result
    }
}

fn shared_status(shared: &Arc<Shared>, procs: usize) -> super::status::Source {
    let s = shared.clone();
    super::status::Source {
        js: shared.js.clone(),
        host: shared.host.clone(),
        procs,
        read: Box::new(move || {
            let free = s.free.available_permits().div_ceil(SHARE as usize);
            let busy = procs.saturating_sub(free);
            (
                busy,
                s.done.load(Ordering::Relaxed),
                s.failed.load(Ordering::Relaxed),
            )
        }),
        stop: shared.stop.clone(),
    }
}

/// Pulls the tasks of one run while it lives, as many at a time as workers are free
/// (see [`SHARE`]).
async fn serve_run(shared: Arc<Shared>, tasks: jetstream::stream::Stream, name: String) {
    let Ok(consumer) = tasks
        .get_consumer::<jetstream::consumer::pull::Config>(&name)
        .await
    else {
        return;
    };
    let consumer: PullConsumer = consumer;
    let ack_wait = consumer.cached_info().config.ack_wait;
    let run = name.trim_start_matches("run-").to_string();
    // Total nanoseconds and count of this run's tasks here.
    let timing: Timing = Arc::default();
    let mut pulls: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut checked = Instant::now();
    let mut unanswered: Option<Instant> = None;
    while !shared.stop.stopped() {
        if checked.elapsed() >= Duration::from_millis(500) {
            checked = Instant::now();
            if abandoned(&shared, &run, &mut unanswered).await {
                let purged = tasks.purge().filter(stream::task_subject(&run)).await;
                let _ = tasks.delete_consumer(&name).await;
                if let Some(log) = &shared.log {
                    let n = purged.map_or(0, |p| p.purged);
                    log(format!(
                        "run {run}: its submitter is gone; {n} tasks not started were dropped"
                    ));
                }
                return;
            }
        }
        // The mean run time of this run's tasks so far (none yet: slow).
        let n = timing.1.load(Ordering::Relaxed);
        let fast = n > 0 && timing.0.load(Ordering::Relaxed) / n < FAST_TASK.as_nanos() as u64;
        let weight = if fast { 1 } else { SHARE };
        let Ok(first) = shared.free.clone().acquire_many_owned(weight).await else {
            return;
        };
        let mut permits = vec![first];
        while permits.len() < MAX_BATCH {
            match shared.free.clone().try_acquire_many_owned(weight) {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        // A pull request open for 500 ms: its tasks come as the server has them;
        // what it did not fill gives its permits back when it ends. Another request
        // goes out as soon as more workers are free.
        let batch = consumer
            .batch()
            .max_messages(permits.len())
            .expires(Duration::from_millis(500))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(_) => {
                drop(permits);
                if tasks.consumer_info(&name).await.is_err() {
                    // Gone (the run ended) or the server is away: look again later.
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    if tasks.consumer_info(&name).await.is_err() {
                        return;
                    }
                }
                continue;
            }
        };
        let (shared, timing) = (shared.clone(), timing.clone());
        let pulling = tokio::spawn(async move {
            while let Some(message) = batch.next().await {
                let Ok(message) = message else { break };
                let Some(permit) = permits.pop() else { break };
                tokio::spawn(run_task(
                    shared.clone(),
                    message,
                    ack_wait,
                    permit,
                    timing.clone(),
                ));
            }
        });
        pulls.push(pulling);
        pulls.retain(|p| !p.is_finished());
    }
    for p in pulls {
        p.abort();
    }
}

/// Whether the run's submitter has not answered for [`ABANDONED_AFTER`] ("no
/// responders": nobody listens on its subject; a server away is not an answer).
async fn abandoned(shared: &Shared, run: &str, unanswered: &mut Option<Instant>) -> bool {
    let asked = tokio::time::timeout(
        Duration::from_secs(2),
        shared.client.request(alive_subject(run), "".into()),
    )
    .await;
    match asked {
        Ok(Ok(_)) => *unanswered = None,
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            let since = *unanswered.get_or_insert_with(Instant::now);
            return since.elapsed() >= ABANDONED_AFTER;
        }
        _ => {}
    }
    false
}

/// A run's task times on this agent: total nanoseconds, count.
type Timing = Arc<(AtomicU64, AtomicU64)>;

async fn run_task(
    shared: Arc<Shared>,
    message: jetstream::Message,
    ack_wait: Duration,
    permit: tokio::sync::OwnedSemaphorePermit,
    timing: Timing,
) {
    let delivery = message.info().map_or(1, |i| i.delivered.max(1) as u32);
    let task: Task = match supervisor_worker::codec::decode(&message.payload) {
        Ok(task) => task,
        Err(_) => {
            // Not ours to read: no agent can.
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let started = SystemTime::now();
    let clock = Instant::now();
    let (outcome, pid, mut last) = if task.command && !shared.allow_commands {
        (Outcome::CommandsRefused, 0, true)
    } else {
        let pool = shared.pool.clone();
        let (name, arg) = (task.task.clone(), task.arg.to_vec());
        let mut job = tokio::task::spawn_blocking(move || pool.run_encoded(&name, arg));
        let every = (ack_wait / 3).max(Duration::from_millis(100));
        let ran = loop {
            tokio::select! {
                ran = &mut job => break ran,
                () = tokio::time::sleep(every) => {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            }
        };
        let Ok((result, pid)) = ran else { return };
        timing
            .0
            .fetch_add(clock.elapsed().as_nanos() as u64, Ordering::Relaxed);
        timing.1.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(value) => {
                let value = match &shared.finish {
                    Some(finish) => finish(&task.task, value),
                    None => value,
                };
                (Outcome::Value(ByteBuf::from(value)), pid, true)
            }
            Err(e) => {
                let again = retryable(&e) && delivery < task.max_deliver;
                (Outcome::Failed(Failure::of(&e)), pid, !again)
            }
        }
    };
    if shared.stop.stopped() {
        // Stopped under it: the server delivers it again.
        return;
    }
    match &outcome {
        Outcome::Value(_) => shared.done.fetch_add(1, Ordering::Relaxed),
        _ => shared.failed.fetch_add(1, Ordering::Relaxed),
    };
    let result = TaskResult {
        run: task.run.clone(),
        seq: task.seq,
        host: shared.host.clone(),
        pid,
        delivery,
        started_ns: started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        duration_ns: clock.elapsed().as_nanos() as u64,
        outcome,
        last,
    };
    let Ok(mut bytes) = supervisor_worker::codec::encode(&result) else {
        return;
    };
    // A result the server would refuse, again and again: say so, in one final result
    // that fits (before, the publish failed quietly and the task ran again).
    let limit = shared
        .client
        .server_info()
        .max_payload
        .saturating_sub(RESULT_HEADROOM);
    if bytes.len() > limit {
        let e = crate::Error::from(ErrorKind::TooLarge {
            kind: "NATS message (a task's result)",
            requested: bytes.len() as u64,
            limit: limit as u64,
        });
        let small = TaskResult {
            outcome: Outcome::Failed(Failure::of(&e)),
            last: true,
            ..result
        };
        let Ok(encoded) = supervisor_worker::codec::encode(&small) else {
            return;
        };
        bytes = encoded;
        last = true;
    }
    // The result first, confirmed by the server; then the ack (or, for a worker
    // death with deliveries left, a nak: the server delivers it again).
    let published = match shared
        .js
        .publish(result_subject(&task.run), bytes.into())
        .await
    {
        Ok(ack) => ack.await.map_err(|e| cluster("cannot publish a result", e)),
        Err(e) => Err(cluster("cannot publish a result", e)),
    };
    if published.is_err() {
        return;
    }
    drop(permit);
    let _ = if last {
        message.ack().await
    } else {
        message.ack_with(AckKind::Nak(None)).await
    };
}

/// Room left in a NATS message for the framing beside a result.
const RESULT_HEADROOM: usize = 1024;

/// This machine's name (the kernel's, as `hostname` prints it).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
