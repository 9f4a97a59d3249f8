//! The submitter: publishes a run's inputs as tasks, reads the results back, keeps the
//! first per task and yields them in input order (or as they come), as
//! [`crate::Pool::imap_reports`] does locally.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde::{de::DeserializeOwned, Serialize};
use supervisor_worker::codec;

use super::connect::{cluster, runtime};
use super::liveness::CHECK_EVERY;
use super::stream;
use super::watchdog::Alarm;
use super::wind_down::{self, Answer, Wind};
use super::wire::{Task, TaskResult};
use crate::error::{Error, ErrorKind};
use crate::pool::{JobMeta, Report};

mod options;
mod take;

pub use options::RemoteOptions;

pub(crate) enum Event {
    Result(TaskResult),
    /// The server's advisory: the task was delivered `deliveries` times, its limit,
    /// and it will not deliver it again (every delivery ended without a result: hosts
    /// that died or hung).
    Exhausted {
        seq: u64,
        deliveries: u32,
    },
    /// The server's advisory: an agent ended a task unread (see
    /// `ErrorKind::WireMismatch`); counts only while the run is not winding down
    /// (agents end the tasks they will not start then). Not sent for a task the
    /// server ended itself (`open_run::ended_by_an_agent`).
    Unread,
    /// The server refused to store the task (its stream or store is full).
    Refused {
        seq: u64,
        reason: String,
    },
    Alarm(Alarm),
}

/// Room left in a NATS message for its headers (the message id) and framing.
const PAYLOAD_HEADROOM: usize = 1024;

/// The stream sequence of each published task, for the server's advisories.
pub(crate) type Published = Arc<std::sync::Mutex<HashMap<u64, u64>>>;

type Arrived<R> = Box<dyn FnMut(usize, &Result<R, Error>, &JobMeta, &str)>;
type Duplicate = Box<dyn FnMut(usize, &JobMeta, &str)>;
type Notice = Box<dyn FnMut(&str)>;
type Fatal = Box<dyn FnMut(&Error)>;

/// The results of a remote run, as [`crate::Reports`] gives a local one: each with its
/// position, its value or typed error, where it ran ([`JobMeta`]: the remote pid, the
/// delivery count as attempts) and the host.
pub struct RemoteReports<R, I: Iterator> {
    run: String,
    task: String,
    options: RemoteOptions,
    input: I,
    input_done: bool,
    submitted: usize,
    yielded: usize,
    publish: Option<tokio::sync::mpsc::UnboundedSender<(u64, Vec<u8>)>>,
    /// The server's largest message: a task past it fails at once (publishing it
    /// would be refused again and again).
    max_payload: usize,
    events: mpsc::Receiver<Event>,
    done: HashSet<u64>,
    /// The run (pid, start) whose result was kept, per task done by a result: the same
    /// result read again (a result message delivered again after the server
    /// restarted, its ack lost) is not a second run.
    kept: HashMap<u64, (u32, u64)>,
    notes: HashMap<u64, Vec<String>>,
    buffer: BTreeMap<usize, (Report<R>, String)>,
    /// The size of each value in `buffer` (encoded), and their sum.
    sizes: HashMap<usize, usize>,
    buffered_bytes: usize,
    ready: VecDeque<(Report<R>, String)>,
    input_ready: Option<Box<dyn FnMut() -> bool>>,
    arrived: Option<Arrived<R>>,
    duplicate: Option<Duplicate>,
    notice: Notice,
    fatal: Option<Fatal>,
    failure: Option<Error>,
    stop: Arc<AtomicBool>,
    stop_when: Option<Box<dyn Fn() -> bool>>,
    drain_when: Option<Box<dyn Fn() -> bool>>,
    /// What the agents are told of the run (see `wind_down`).
    answer: Answer,
    /// How the run winds down, once it does.
    winding: Option<Wind>,
    js: jetstream::Context,
    helpers: Vec<tokio::task::JoinHandle<()>>,
    rt: Arc<tokio::runtime::Runtime>,
    result: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned, I: Iterator> RemoteReports<R, I>
where
    I::Item: Serialize,
{
    /// Starts a run of the task registered as `task` over `inputs`: connects, makes the
    /// run's consumers, and publishes the inputs as they are read.
    pub fn start(
        options: RemoteOptions,
        task: &str,
        inputs: impl IntoIterator<IntoIter = I>,
    ) -> Result<RemoteReports<R, I>, Error> {
        Self::start_with(options, task, inputs.into_iter()).map_err(|(e, _)| e)
    }

    /// [`RemoteReports::start`], giving the inputs back if the run cannot start.
    pub(crate) fn start_with(
        options: RemoteOptions,
        task: &str,
        input: I,
    ) -> Result<RemoteReports<R, I>, (Error, I)> {
        let answer = Answer::default();
        match Self::connect(&options, &answer) {
            Ok((rt, run, js, helpers, events, publish, max_payload)) => Ok(RemoteReports {
                answer,
                winding: None,
                drain_when: None,
                max_payload,
                rt,
                run,
                task: task.to_string(),
                options,
                input,
                input_done: false,
                submitted: 0,
                yielded: 0,
                publish: Some(publish),
                events,
                done: HashSet::new(),
                kept: HashMap::new(),
                notes: HashMap::new(),
                buffer: BTreeMap::new(),
                sizes: HashMap::new(),
                buffered_bytes: 0,
                ready: VecDeque::new(),
                input_ready: None,
                arrived: None,
                duplicate: None,
                notice: Box::new(|line: &str| {
                    use std::io::Write as _;
                    let line = format!("supervisor: {line}\n");
                    let _ = std::io::stderr().write_all(line.as_bytes());
                }),
                fatal: None,
                failure: None,
                stop: Arc::new(AtomicBool::new(false)),
                stop_when: None,
                js,
                helpers,
                result: PhantomData,
            }),
            Err(e) => Err((e, input)),
        }
    }

    #[expect(clippy::type_complexity, reason = "a private constructor's parts")]
    fn connect(
        options: &RemoteOptions,
        answer: &Answer,
    ) -> Result<
        (
            Arc<tokio::runtime::Runtime>,
            String,
            jetstream::Context,
            Vec<tokio::task::JoinHandle<()>>,
            mpsc::Receiver<Event>,
            tokio::sync::mpsc::UnboundedSender<(u64, Vec<u8>)>,
            usize,
        ),
        Error,
    > {
        let bytes: [u8; 8] =
            crate::os::random_bytes().map_err(|e| cluster("cannot make a run id", e))?;
        let run = hex(&bytes);
        let (tx, rx) = mpsc::channel();
        let (ptx, prx) = tokio::sync::mpsc::unbounded_channel();
        let rt = runtime()?;
        let (js, helpers, max_payload) = rt.block_on(super::open_run::open(
            options,
            &run,
            tx,
            prx,
            answer.clone(),
        ))?;
        Ok((rt, run, js, helpers, rx, ptx, max_payload))
    }

    /// Whether reading the next input returns at once (as [`crate::Reports::input_ready`]).
    pub fn input_ready(mut self, ready: impl FnMut() -> bool + 'static) -> Self {
        self.input_ready = Some(Box::new(ready));
        self
    }

    /// Called with each task's first result as it arrives (before its turn), with the
    /// host it ran on.
    pub fn on_arrival(
        mut self,
        f: impl FnMut(usize, &Result<R, Error>, &JobMeta, &str) + 'static,
    ) -> Self {
        self.arrived = Some(Box::new(f));
        self
    }

    /// Called with each later result of a task already done (a redelivered task that
    /// ran twice), which is dropped.
    pub fn on_duplicate(mut self, f: impl FnMut(usize, &JobMeta, &str) + 'static) -> Self {
        self.duplicate = Some(Box::new(f));
        self
    }

    /// Where notices go (a run whose tasks no agent takes): by default one line on
    /// stderr each, `supervisor: ` first.
    pub fn on_notice(mut self, f: impl FnMut(&str) + 'static) -> Self {
        self.notice = Box::new(f);
        self
    }

    /// Called once if the run cannot go on ([`ErrorKind::ServerLost`]: the server
    /// was unreachable for [`RemoteOptions::server_timeout`]; or the run was dropped
    /// from the server): every task without a result is then cancelled, and the
    /// error stays in [`RemoteReports::failure`].
    pub fn on_fatal(mut self, f: impl FnMut(&Error) + 'static) -> Self {
        self.fatal = Some(Box::new(f));
        self
    }

    /// Why the run ended before its tasks did, if it did (see
    /// [`RemoteReports::on_fatal`]).
    pub fn failure(&self) -> Option<&Error> {
        self.failure.as_ref()
    }

    /// A flag that ends the run: the agents are told to stop its running tasks, which
    /// are reported as stopped ([`ErrorKind::Stopped`], with the host, pid and start)
    /// once they report (within [`RemoteOptions::stop_wait`]); what never started is
    /// reported as cancelled.
    pub fn stopper(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Also ends the run as [`RemoteReports::stopper`] does when `stopped` says so,
    /// asked before each result is taken: a result that arrives after the one that
    /// made the caller stop (`--halt now`) is not taken.
    pub fn stop_when(mut self, stopped: impl Fn() -> bool + 'static) -> Self {
        self.stop_when = Some(Box::new(stopped));
        self
    }

    /// While `drain` says so, a stop lets the running tasks finish instead (GNU
    /// parallel's `--halt soon`): nothing more starts, the results of the tasks that
    /// run are taken as they come; once it no longer says so (a signal after
    /// `--halt soon`), they are stopped.
    pub fn drain_when(mut self, drain: impl Fn() -> bool + 'static) -> Self {
        self.drain_when = Some(Box::new(drain));
        self
    }

    fn draining(&self) -> bool {
        self.drain_when.as_ref().is_some_and(|f| f())
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.stop_when.as_ref().is_some_and(|f| f())
    }

    /// The run's id (the last token of its subjects).
    pub fn run_id(&self) -> &str {
        &self.run
    }

    /// Whether the next result is in (so [`Iterator::next`] returns at once).
    pub fn ready(&mut self) -> bool {
        self.drain();
        if self.options.ordered {
            self.buffer.contains_key(&self.yielded)
        } else {
            !self.ready.is_empty()
        }
    }

    /// The next result with the host it ran on.
    pub fn next_with_host(&mut self) -> Option<(Report<R>, String)> {
        loop {
            if self.options.ordered {
                if let Some(r) = self.buffer.remove(&self.yielded) {
                    if let Some(size) = self.sizes.remove(&self.yielded) {
                        self.buffered_bytes -= size;
                    }
                    self.yielded += 1;
                    return Some(r);
                }
            } else if let Some(r) = self.ready.pop_front() {
                self.yielded += 1;
                return Some(r);
            }
            if self.stopping() {
                self.wind_down();
                self.cancel_rest();
                if self.buffer.is_empty() && self.ready.is_empty() {
                    return None;
                }
                continue;
            }
            if self.input_done && self.yielded == self.submitted {
                return None;
            }
            self.feed();
            if self.input_done && self.yielded == self.submitted {
                return None;
            }
            let wait = if !self.input_done && self.input_ready.is_some() {
                Duration::from_millis(2)
            } else {
                Duration::from_millis(100)
            };
            match self.events.recv_timeout(wait) {
                Ok(event) => self.take(event),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.stop.store(true, Ordering::SeqCst);
                }
            }
            self.drain();
        }
    }

    fn drain(&mut self) {
        while !self.stopping() {
            let Ok(event) = self.events.try_recv() else {
                return;
            };
            self.take(event);
        }
    }

    /// Reads and publishes inputs up to the read-ahead (without waiting on an input
    /// that is not ready while results are due).
    fn feed(&mut self) {
        while !self.input_done && self.outstanding() < self.options.read_ahead {
            let outstanding = self.submitted > self.yielded;
            if outstanding && !self.input_ready.as_mut().is_none_or(|f| f()) {
                return;
            }
            let Some(input) = self.input.next() else {
                self.input_done = true;
                return;
            };
            let seq = self.submitted as u64;
            self.submitted += 1;
            let task = codec::encode_value(&input).map(|arg| Task {
                run: self.run.clone(),
                seq,
                task: self.task.clone(),
                arg: serde_bytes::ByteBuf::from(arg),
                command: self.options.command,
                max_deliver: self.options.retries + 1,
                retry_errors: self.options.retry_errors,
                timeout: self.options.task_timeout,
            });
            match task.and_then(|t| codec::encode(&t)) {
                // Headers and framing take a little room beside the task.
                Ok(bytes) if bytes.len() + PAYLOAD_HEADROOM > self.max_payload => {
                    let e = ErrorKind::TooLarge {
                        kind: "NATS message (a task and its input)",
                        requested: bytes.len() as u64,
                        limit: self.max_payload.saturating_sub(PAYLOAD_HEADROOM) as u64,
                    }
                    .into();
                    self.done.insert(seq);
                    self.deliver(seq as usize, Err(e), JobMeta::default(), String::new());
                }
                Ok(bytes) => {
                    if let Some(p) = &self.publish {
                        let _ = p.send((seq, bytes));
                    }
                }
                Err(source) => {
                    let e = ErrorKind::EncodeArgument {
                        task: self.task.clone(),
                        source,
                    }
                    .into();
                    self.done.insert(seq);
                    self.deliver(seq as usize, Err(e), JobMeta::default(), String::new());
                }
            }
        }
    }

    /// Tasks that count against the read-ahead: published and not yet yielded, but
    /// for the results held for order (up to `max_held` of them).
    fn outstanding(&self) -> usize {
        let unyielded = self.submitted - self.yielded;
        if !self.options.ordered {
            return unyielded;
        }
        // The results in turn from the next one on are ready (they count); those
        // after the first gap wait for it.
        let ready = self
            .buffer
            .range(self.yielded..)
            .enumerate()
            .take_while(|(i, (index, _))| **index == self.yielded + i)
            .count();
        if self.buffered_bytes > crate::DEFAULT_HOLD_IN_MEMORY {
            return unyielded;
        }
        let held = (self.buffer.len() - ready).min(self.options.max_held);
        unyielded - held
    }

    /// The run stops: the agents are told (drain or stop, see `wind_down`), and
    /// the reports of the tasks they run are waited for: as long as they run when
    /// draining, [`RemoteOptions::stop_wait`] at most when stopping. Not when the
    /// run cannot go on (its server lost): there is nobody to tell.
    fn wind_down(&mut self) {
        if self.winding.is_some() {
            return;
        }
        let wind = if self.draining() {
            Wind::Drain
        } else {
            Wind::Stop
        };
        self.winding = Some(wind);
        if self.failure.is_some() || self.submitted == self.done.len() {
            return;
        }
        self.tell(wind);
        let mut until = (wind == Wind::Stop).then(|| Instant::now() + self.options.stop_wait);
        // Each agent has heard (the message, or the answer of its next ask) before
        // the server's counts are trusted: one that had not could still start a task.
        let mut look_at = Instant::now() + 2 * CHECK_EVERY;
        loop {
            if self.winding == Some(Wind::Drain) && !self.draining() {
                self.winding = Some(Wind::Stop);
                self.tell(Wind::Stop);
                until = Some(Instant::now() + self.options.stop_wait);
                look_at = Instant::now() + 2 * CHECK_EVERY;
            }
            let now = Instant::now();
            let connected =
                self.js.client().connection_state() == async_nats::connection::State::Connected;
            // Not connected: nothing can be heard; the agents take this submitter
            // for gone soon after it is.
            if until.is_some_and(|u| now >= u) || self.failure.is_some() || !connected {
                break;
            }
            if now >= look_at {
                let (js, run) = (self.js.clone(), self.run.clone());
                let command = self.options.command;
                let reported = self
                    .rt
                    .block_on(async move { wind_down::all_reported(&js, &run, command).await });
                if reported {
                    break;
                }
                look_at = Instant::now() + Duration::from_millis(100);
            }
            match self.events.recv_timeout(Duration::from_millis(50)) {
                Ok(Event::Alarm(Alarm::Fatal(e))) => {
                    if let Some(f) = &mut self.fatal {
                        f(&e);
                    }
                    self.failure = Some(e);
                }
                Ok(event) => self.take(event),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        while let Ok(event) = self.events.try_recv() {
            self.take(event);
        }
    }

    /// Tells the agents how the run winds down.
    fn tell(&self, wind: Wind) {
        self.answer.set(wind);
        let (client, run, answer) = (self.js.client(), self.run.clone(), self.answer.clone());
        if client.connection_state() != async_nats::connection::State::Connected {
            // Nobody to tell now; the answers say it if the connection comes back.
            return;
        }
        self.rt
            .block_on(async move { wind_down::tell(&client, &run, &answer).await });
    }

    /// The run was stopped: every task without a result is cancelled.
    fn cancel_rest(&mut self) {
        self.input_done = true;
        for seq in 0..self.submitted as u64 {
            if self.done.insert(seq) {
                let e = ErrorKind::Cancelled {
                    task: self.task.clone(),
                }
                .into();
                self.deliver(seq as usize, Err(e), JobMeta::default(), String::new());
            }
        }
        self.submitted = self.yielded + self.buffer.len() + self.ready.len();
    }
}

impl<R: DeserializeOwned, I: Iterator> Iterator for RemoteReports<R, I>
where
    I::Item: Serialize,
{
    type Item = Report<R>;

    fn next(&mut self) -> Option<Report<R>> {
        self.next_with_host().map(|(r, _)| r)
    }
}

impl<R, I: Iterator> Drop for RemoteReports<R, I> {
    /// Ends the run on the server: its consumers are deleted (agents stop taking its
    /// tasks) and what is left of its tasks and results is purged.
    fn drop(&mut self) {
        self.publish = None;
        for h in &self.helpers {
            h.abort();
        }
        if matches!(
            self.failure.as_ref().map(Error::kind),
            Some(ErrorKind::ServerLost { .. })
        ) {
            // Nobody to clean up with: the server removes it all in time (see
            // `stream`: consumers after an hour without a client, tasks after a day).
            return;
        }
        let rt = self.rt.clone();
        let (js, run) = (self.js.clone(), self.run.clone());
        let command = self.options.command;
        rt.block_on(async move {
            let clean = async {
                if let Ok(tasks) = js.get_stream(stream::TASKS).await {
                    let _ = tasks
                        .delete_consumer(&stream::task_consumer(&run, command))
                        .await;
                    let _ = tasks.purge().filter(stream::task_subject(&run)).await;
                }
                if let Ok(results) = js.get_stream(stream::RESULTS).await {
                    let _ = results
                        .delete_consumer(&stream::result_consumer(&run))
                        .await;
                    let _ = results.purge().filter(stream::result_subject(&run)).await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), clean).await;
        });
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
