//! The host agent: pulls tasks from every run's consumer, runs each on the local pool,
//! publishes the result, then acknowledges the task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures_util::StreamExt;
use tokio::sync::{Notify, Semaphore};

use super::agent_task::{run_task, Timing};
use super::connect::{runtime, transient, Connect};
use super::liveness::watch_submitter;
use super::result_batch::Results;
use super::stream::{self, run_of_consumer};
use crate::error::Error;
use crate::Pool;

/// What an agent does to a task's encoded value before publishing it (the CLI makes
/// a spooled output inline, since the submitter is on another host).
pub type Finish = Arc<dyn Fn(&str, Vec<u8>) -> Vec<u8> + Send + Sync>;

/// Told what the agent does that its operator wants to know (a run abandoned by its
/// submitter), one line each.
pub type Log = Arc<dyn Fn(String) + Send + Sync>;

/// Whether a task's encoded value is a failed run (the task returned its error, e.g.
/// the CLI's command that exited non-zero): with the submitter's `retry_errors`
/// such a run is run again within the task's delivery limit, as the local pool's
/// [`crate::PoolBuilder::retry_errors`] does.
pub type FailedWhen = Arc<dyn Fn(&str, &[u8]) -> bool + Send + Sync>;

/// Whether an agent refuses a task, given its name and its encoded argument: the
/// reason, with the flag that would allow it (the CLI refuses built-in tasks that
/// read or write the host's files without `--allow-files`). By default an agent runs
/// every task registered in its program: they are its owner's code.
pub type Refuse = Arc<dyn Fn(&str, &[u8]) -> Option<String> + Send + Sync>;

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
    failed_when: Option<FailedWhen>,
    refuse: Option<Refuse>,
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

/// A run of tiny tasks is pulled once this share of the agent's units is free (see
/// `serve_run`).
const REFILL: u32 = 4;

/// Tasks fetched in one pull request, at most.
const MAX_BATCH: usize = 256;

/// What an agent shares between its tasks.
pub(super) struct Shared {
    pub(super) pool: Arc<Pool>,
    pub(super) js: jetstream::Context,
    pub(super) client: async_nats::Client,
    pub(super) allow_commands: bool,
    pub(super) host: String,
    pub(super) finish: Option<Finish>,
    pub(super) failed_when: Option<FailedWhen>,
    pub(super) refuse: Option<Refuse>,
    pub(super) log: Option<Log>,
    /// Where results go to be published.
    pub(super) results: Results,
    pub(super) free: Arc<Semaphore>,
    /// The semaphore's units: procs x [`SHARE`].
    pub(super) units: u32,
    pub(super) done: AtomicU64,
    pub(super) failed: AtomicU64,
    /// Runs served now.
    pub(super) runs: AtomicUsize,
    pub(super) stop: AgentStop,
}

impl Agent {
    /// An agent of the server `connect` names; refuses command-mode tasks.
    pub fn new(connect: Connect) -> Agent {
        Agent {
            connect,
            allow_commands: false,
            host: host_name(),
            finish: None,
            failed_when: None,
            refuse: None,
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

    /// Tells failed runs from values (see [`FailedWhen`]; by default every value is
    /// a success).
    pub fn failed_when(mut self, failed: FailedWhen) -> Agent {
        self.failed_when = Some(failed);
        self
    }

    /// Refuses the tasks `refuse` names a reason for (see [`Refuse`]); the submitter
    /// gets [`crate::ErrorKind::TaskRefused`] with the host and the reason.
    pub fn refuse_with(mut self, refuse: Refuse) -> Agent {
        self.refuse = Some(refuse);
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
    /// has workers. A server that cannot be reached yet is tried again every second
    /// (said once through the log), as a connection lost later is re-made by the
    /// client; an error that will not pass (credentials, TLS, a bad URL) is returned.
    pub fn serve(self, pool: Pool) -> Result<(), Error> {
        let pool = Arc::new(pool);
        let procs = pool.procs();
        let rt = runtime()?;
        let result = rt.block_on(async {
            let Some(client) = self.connect_waiting().await? else {
                return Ok(());
            };
            let js = jetstream::new(client.clone());
            let (tasks, _) = stream::streams(&js).await?;
            let limit = client.server_info().max_payload;
            let results = Results::start(
                js.clone(),
                limit.saturating_sub(RESULT_HEADROOM),
                &self.host,
            );
            let shared = Arc::new(Shared {
                pool: pool.clone(),
                js,
                client,
                allow_commands: self.allow_commands,
                host: self.host.clone(),
                finish: self.finish.clone(),
                failed_when: self.failed_when.clone(),
                refuse: self.refuse.clone(),
                log: self.log.clone(),
                results,
                free: Arc::new(Semaphore::new(procs * SHARE as usize)),
                units: procs as u32 * SHARE,
                done: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                runs: AtomicUsize::new(0),
                stop: self.stop.clone(),
            });
            tokio::spawn(super::status::publish(shared_status(&shared, procs)));
            // Subscribed before the first listing: a run announced after it is heard.
            let mut announced = shared.client.subscribe(stream::ANNOUNCE).await.ok();
            let mut serving: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
            'serve: while !shared.stop.stopped() {
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
                    take_up(&shared, &tasks, &mut serving, name);
                }
                serving.retain(|_, t| !t.is_finished());
                shared.runs.store(serving.len(), Ordering::Relaxed);
                // Until the next listing, a run announced is taken up at once.
                let next = tokio::time::Instant::now() + LIST_EVERY;
                loop {
                    let heard = async {
                        match announced.as_mut() {
                            Some(a) => a.next().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        () = tokio::time::sleep_until(next) => break,
                        () = shared.stop.wait() => break 'serve,
                        Some(m) = heard => {
                            if let Ok(name) = std::str::from_utf8(&m.payload) {
                                take_up(&shared, &tasks, &mut serving, name.to_string());
                                shared.runs.store(serving.len(), Ordering::Relaxed);
                            }
                        }
                    }
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

    /// The client, once the server answers; none if stopped first.
    async fn connect_waiting(&self) -> Result<Option<async_nats::Client>, Error> {
        let mut said = false;
        loop {
            let attempt = tokio::select! {
                attempt = self.connect.client("supervisor worker") => attempt,
                () = self.stop.wait() => return Ok(None),
            };
            match attempt {
                Ok(client) => {
                    if said {
                        self.say(format!("connected to {}", self.connect.shown()));
                    }
                    return Ok(Some(client));
                }
                Err(e) if transient(&e) => {
                    if !said {
                        said = true;
                        self.say(format!(
                            "{}; trying again every {}s",
                            supervisor_worker::error_chain(&e),
                            RETRY_CONNECT.as_secs()
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
            tokio::select! {
                () = tokio::time::sleep(RETRY_CONNECT) => {}
                () = self.stop.wait() => return Ok(None),
            }
        }
    }

    fn say(&self, line: String) {
        if let Some(log) = &self.log {
            log(line);
        }
    }
}

/// Starts serving the run of consumer `name` unless it is served already or is not
/// this agent's to serve.
fn take_up(
    shared: &Arc<Shared>,
    tasks: &jetstream::stream::Stream,
    serving: &mut HashMap<String, tokio::task::JoinHandle<()>>,
    name: String,
) {
    // Command-mode runs only where commands may run: the others leave them to an
    // agent that may.
    let ours = run_of_consumer(&name).is_some_and(|(_, command)| !command || shared.allow_commands);
    if ours && serving.get(&name).is_none_or(|t| t.is_finished()) {
        let task = tokio::spawn(serve_run(shared.clone(), tasks.clone(), name.clone()));
        serving.insert(name, task);
    }
}

/// How often an agent lists the server's runs: the fallback for a run whose
/// announcement it missed (see [`stream::ANNOUNCE`]).
const LIST_EVERY: Duration = Duration::from_secs(1);

/// How often an agent tries to reach a server that is not up yet.
const RETRY_CONNECT: Duration = Duration::from_secs(1);

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
                s.runs.load(Ordering::Relaxed),
            )
        }),
        stop: shared.stop.clone(),
    }
}

/// Pulls the tasks of one run while it lives and its submitter answers, as many at
/// a time as workers are free (see [`SHARE`]).
async fn serve_run(shared: Arc<Shared>, tasks: jetstream::stream::Stream, name: String) {
    let Some((run, _)) = run_of_consumer(&name) else {
        return;
    };
    let run = run.to_string();
    let Ok(consumer) = tasks
        .get_consumer::<jetstream::consumer::pull::Config>(&name)
        .await
    else {
        return;
    };
    let consumer: PullConsumer = consumer;
    let ack_wait = consumer.cached_info().config.ack_wait;
    let liveness = watch_submitter(shared.client.clone(), run.clone());
    // Total nanoseconds and count of this run's tasks here.
    let timing: Timing = Arc::default();
    let mut pulls: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    // Set when a pull request ends in an error.
    let failed = Arc::new(AtomicBool::new(false));
    while !shared.stop.stopped() {
        let mut live = liveness.clone();
        let answering = tokio::select! {
            answering = live.answering() => answering,
            () = shared.stop.wait() => break,
        };
        if !answering {
            if liveness.gone() {
                drop_abandoned(&shared, &tasks, &name, &run).await;
            }
            if liveness.winding_down() {
                // The pull requests open end within their 500 ms: what they bring
                // is terminated by `run_task`, not left to wait out its ack wait.
                for p in pulls.drain(..) {
                    let _ = p.await;
                }
            }
            break;
        }
        // A pull request ended in an error: pulling again at once would end so too,
        // again and again, while the run lasts on the agent's side.
        if failed.swap(false, Ordering::Relaxed) && consumer_gone(&tasks, &name).await {
            break;
        }
        // The mean run time of this run's tasks so far (none yet: slow).
        let n = timing.1.load(Ordering::Relaxed);
        let fast = n > 0 && timing.0.load(Ordering::Relaxed) / n < FAST_TASK.as_nanos() as u64;
        let weight = if fast { 1 } else { SHARE };
        // Tiny tasks are pulled in batches of a quarter of the agent's units at least
        // (a pull request costs the server more than a task): the other three
        // quarters keep the workers busy meanwhile.
        let least = if fast {
            (shared.units / REFILL).clamp(1, MAX_BATCH as u32)
        } else {
            1
        };
        let Ok(mut first) = shared.free.clone().acquire_many_owned(weight * least).await else {
            break;
        };
        let mut permits: Vec<_> = (1..least).filter_map(|_| first.split(1)).collect();
        permits.push(first);
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
                if consumer_gone(&tasks, &name).await {
                    break;
                }
                continue;
            }
        };
        let (shared, timing, liveness) = (shared.clone(), timing.clone(), liveness.clone());
        let failed = failed.clone();
        let pulling = tokio::spawn(async move {
            while let Some(message) = batch.next().await {
                let Ok(message) = message else {
                    // The server's error status (the consumer deleted: the run ended).
                    failed.store(true, Ordering::Relaxed);
                    break;
                };
                let Some(permit) = permits.pop() else { break };
                tokio::spawn(run_task(
                    shared.clone(),
                    message,
                    ack_wait,
                    permit,
                    timing.clone(),
                    liveness.clone(),
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

/// Whether the run's consumer is gone (the run ended), or the server away, twice
/// 250 ms apart.
async fn consumer_gone(tasks: &jetstream::stream::Stream, name: &str) -> bool {
    if tasks.consumer_info(name).await.is_ok() {
        return false;
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    tasks.consumer_info(name).await.is_err()
}

/// A run whose submitter is gone (SIGKILLed): its tasks not started are dropped and
/// its consumer deleted; said only when there were tasks left (a run that ended
/// normally has none).
async fn drop_abandoned(shared: &Shared, tasks: &jetstream::stream::Stream, name: &str, run: &str) {
    let purged = tasks.purge().filter(stream::task_subject(run)).await;
    let _ = tasks.delete_consumer(name).await;
    let n = purged.map_or(0, |p| p.purged);
    if let (Some(log), true) = (&shared.log, n > 0) {
        log(format!(
            "run {run}: its submitter is gone; {n} tasks not started were dropped"
        ));
    }
}

/// Room left in a NATS message for the framing beside a result.
pub(super) const RESULT_HEADROOM: usize = 1024;

/// This machine's name (the kernel's, as `hostname` prints it).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
