//! `Process`: run one task in a child process, controlled like Python's
//! `multiprocessing.Process`.

use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};
use supervisor_worker::arena::Inbox;
use supervisor_worker::codec::{self, CodecError};
use supervisor_worker::protocol::{self, FromChild, LinkError, TaskOutcome, TaskRequest, ToChild};
use supervisor_worker::Call;
use supervisor_worker::{registry, setup::SetupError};

use crate::error::{Error, ErrorKind, Violation};
use crate::exit::ExitStatus;
use crate::group_sweep;
use crate::launch::{self, Spec};
use crate::memory::{while_running, MemoryVerdict, MEMORY_LOOK};
use crate::os;
use crate::outcome::{no_result, outcome_to_result};
use crate::reaper::{ChildSlot, Exit};
use crate::trace;
use crate::StartMethod;

mod join_async;

use join_async::Pending;
pub use join_async::ProcessJoin;

/// Longest pause between checks for a child that exited while something else (a
/// grandchild that inherited it) keeps its result channel open.
const EXIT_CHECK: Duration = Duration::from_millis(50);

/// How long what a task left running gets between SIGTERM and SIGKILL.
const TASK_CHILDREN_GRACE: Duration = Duration::from_secs(5);

/// Builds a [`Process`]: `Process::builder(task, arg).daemon(true).nice(10).start()`.
#[must_use = "a builder does nothing until `start` is called"]
pub struct ProcessBuilder<R> {
    key: &'static str,
    arg: Result<Vec<u8>, CodecError>,
    name: Option<String>,
    daemon: bool,
    nice: Option<i32>,
    method: StartMethod,
    env_allowlist: Option<Vec<String>>,
    keep_task_children: bool,
    memory_limit: Option<u64>,
    result: PhantomData<fn() -> R>,
}

impl<R> ProcessBuilder<R> {
    /// Memory limit, in bytes: the resident memory (RSS) of the child plus every
    /// process it started (their sum, looked at every 20 ms by a watchdog thread). Over
    /// it, the child and its descendants are killed (SIGKILL) and `join` returns
    /// [`ErrorKind::MemoryExceeded`]. See docs/ARCHITECTURE.md, "Memory".
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Give the child only these environment variables (by name); everything else the
    /// parent has (tokens, credentials) is not passed on. Default: the whole environment.
    pub fn env_allowlist<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.env_allowlist = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Let the task leave processes behind (a daemon it means to start). Default:
    /// false: when the task returns, whatever it started and left running (children,
    /// and descendants it orphaned) gets SIGTERM, then SIGKILL after 5 s, before the
    /// child exits.
    pub fn keep_task_children(mut self, keep: bool) -> Self {
        self.keep_task_children = keep;
        self
    }

    /// A name for messages and `ps` (default: the task's name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Daemon processes are killed when their parent ends (even by SIGKILL) and may not
    /// start processes of their own. Default: false, as in Python.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// The child's nice value (-20..=19). Lowering it below this process's value needs
    /// privilege; without it `start` fails with [`ErrorKind::NiceNotPermitted`].
    pub fn nice(mut self, nice: i32) -> Self {
        self.nice = Some(nice);
        self
    }

    /// How the child is created. Default: [`StartMethod::Spawn`].
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = method;
        self
    }

    /// Starts the child and hands it the task.
    pub fn start(self) -> Result<Process<R>, Error> {
        crate::init::ensure_initialised()?;
        if let Some(me) = supervisor_worker::context() {
            if me.daemon {
                return Err(ErrorKind::DaemonCannotStart {
                    name: me.name.clone(),
                }
                .into());
            }
        }
        let entry = registry::by_key(self.key)?;
        let arg = self.arg.map_err(|source| ErrorKind::EncodeArgument {
            task: entry.name.to_string(),
            source,
        })?;
        if let Some(nice) = self.nice {
            check_nice(nice)?;
        }
        let name = self.name.unwrap_or_else(|| entry.name.to_string());
        let spec = Spec {
            method: self.method,
            nice: self.nice,
            daemon: self.daemon,
            name: name.clone(),
            env_allowlist: self.env_allowlist,
            end_task_children: (!self.keep_task_children).then_some(TASK_CHILDREN_GRACE),
            retire_above: None,
            memory_limit: self.memory_limit,
            seat: None,
        };
        let (slot, link) = launch::start_worker(&spec)?;
        if !self.keep_task_children {
            // However it ends, joined or not: what its task left in its group goes.
            if let Err(e) = group_sweep::when_exited(&slot, TASK_CHILDREN_GRACE) {
                let _ = slot.signal(libc::SIGKILL, true);
                return Err(ErrorKind::Spawn(e).into());
            }
        }
        let request = ToChild::Task(TaskRequest {
            id: TASK_ID,
            task: entry.name.to_string(),
            arg,
        });
        match link.send(&request) {
            // A child that died already is reported by `join`.
            Ok(()) | Err(LinkError::Closed) => {}
            Err(e) => {
                let _ = slot.signal(libc::SIGKILL, true);
                return Err(ErrorKind::Protocol {
                    pid: slot.pid(),
                    violation: Violation::Link(Arc::new(e)),
                }
                .into());
            }
        }
        let memory = match self.memory_limit {
            Some(limit) => match MemoryWatch::start(&slot, limit) {
                Ok(watch) => Some(watch),
                Err(e) => {
                    let _ = slot.signal(libc::SIGKILL, true);
                    return Err(ErrorKind::Spawn(e).into());
                }
            },
            None => None,
        };
        trace::process_started(&name, slot.pid(), entry.name);
        // Closing our sender tells the child there is nothing after this task.
        Ok(Process {
            memory,
            slot,
            rx: Some(link.rx),
            task: entry.name,
            name,
            received: None,
            decoded: None,
            pending: None,
            taken: false,
            keep_task_children: self.keep_task_children,
            result: PhantomData,
        })
    }
}

pub(crate) fn check_nice(nice: i32) -> Result<(), Error> {
    if !(-20..=19).contains(&nice) {
        return Err(ErrorKind::NiceOutOfRange(nice).into());
    }
    let current = os::current_nice();
    if nice < current && !os::may_lower_nice_to(nice) {
        return Err(ErrorKind::NiceNotPermitted {
            requested: nice,
            current,
        }
        .into());
    }
    Ok(())
}

/// A task running in its own process.
///
/// Dropping the handle without joining is fine: the process runs on (a daemon still
/// dies with its parent) and is reaped when it exits, never left a zombie. Unless
/// [`ProcessBuilder::keep_task_children`] says otherwise, what its task left in its
/// process group then gets SIGTERM, and SIGKILL 5 s later, joined or not (a task that
/// ended its child with `exit` or `abort` could not end its children itself).
///
/// ```
/// use std::time::Duration;
///
/// use supervisor::{ErrorKind, Process, StartMethod};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// supervisor::task!(square);
///
/// fn sleep_ms(ms: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(ms));
///     ms
/// }
/// supervisor::task!(sleep_ms);
///
/// fn main() -> Result<(), supervisor::Error> {
///     supervisor::init(); // first in main
///     let mut p = Process::builder(square, 12)
///         .name("squarer")
///         .start_method(StartMethod::Forkserver)
///         .start()?;
///     assert_eq!(p.join()?, 144);
///     assert_eq!(p.exitcode(), Some(0));
///
///     // One that takes too long: stop it. Its failure is data, as Python's exitcode.
///     let mut slow = Process::builder(sleep_ms, 60_000).start()?;
///     assert!(slow.join_timeout(Duration::from_millis(50)).is_none());
///     slow.terminate()?; // SIGTERM to its process group
///     let e = slow.join().unwrap_err();
///     assert!(matches!(e.kind(), ErrorKind::Crashed { .. }), "{e}");
///     assert_eq!(slow.exitcode(), Some(-15));
///     Ok(())
/// }
/// ```
pub struct Process<R> {
    slot: Arc<ChildSlot>,
    rx: Option<protocol::Receiver>,
    task: &'static str,
    name: String,
    received: Option<Result<FromChild, Violation>>,
    /// The task's value, decoded as soon as it arrived (while the child still lives, so
    /// a handle it returned can be opened).
    decoded: Option<Result<R, Error>>,
    /// A wait that [`Process::join_async`] started on a thread and that has the
    /// channel: whoever joins next takes over its result.
    pending: Option<Arc<Pending>>,
    taken: bool,
    /// Leave what the task started in the child's group when the child dies.
    keep_task_children: bool,
    /// The memory limit's watchdog, if there is a limit.
    memory: Option<MemoryWatch>,
    result: PhantomData<fn() -> R>,
}

impl<R> Process<R> {
    /// Describes a process that will run `task(arg)`; `task` must be registered with
    /// [`crate::task!`]. A task with several parameters takes them as a tuple.
    pub fn builder<F, M>(_task: F, arg: F::Arg) -> ProcessBuilder<R>
    where
        F: Call<M, Out = R> + 'static,
        F::Arg: Serialize,
    {
        ProcessBuilder {
            key: supervisor_worker::call::key_of::<F>(),
            arg: codec::encode_value(&arg),
            name: None,
            daemon: false,
            nice: None,
            method: StartMethod::default(),
            env_allowlist: None,
            keep_task_children: false,
            memory_limit: None,
            result: PhantomData,
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.slot.pid()
    }

    /// The name given at build time (default: the task's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is a daemon process.
    pub fn is_daemon(&self) -> bool {
        self.slot.is_daemon()
    }

    /// True until the child has exited.
    pub fn is_alive(&self) -> bool {
        self.slot.exit().is_none()
    }

    /// Python's `exitcode`: `None` while running, then the exit code, or the negated
    /// number of the signal that ended it (-15 after `terminate`, -9 after `kill`).
    pub fn exitcode(&self) -> Option<i32> {
        self.slot.exit().and_then(|e| e.status.exitcode())
    }

    /// How the child ended, once it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.slot.exit().map(|e| e.status)
    }

    /// Sends SIGTERM to the child and its process group (its own children). A no-op
    /// once it has exited.
    pub fn terminate(&self) -> Result<(), Error> {
        self.signal(libc::SIGTERM)
    }

    /// Sends SIGKILL to the child and its process group. A no-op once it has exited.
    pub fn kill(&self) -> Result<(), Error> {
        self.signal(libc::SIGKILL)
    }

    fn signal(&self, signal: i32) -> Result<(), Error> {
        self.slot
            .signal(signal, true)
            .map(|_| ())
            .map_err(|source| {
                ErrorKind::Signal {
                    pid: self.pid(),
                    source,
                }
                .into()
            })
    }
}

impl<R: DeserializeOwned> Process<R> {
    /// Waits for the child to finish and returns what the task returned, or a typed
    /// error saying how it failed. The result can be taken once; later calls return
    /// [`ErrorKind::AlreadyJoined`] (`exitcode` stays available).
    pub fn join(&mut self) -> Result<R, Error> {
        match self.join_until(None) {
            Some(result) => result,
            None => unreachable!("a join without a deadline always completes"),
        }
    }

    /// Like [`Process::join`], but gives up after `timeout` and returns `None`; the
    /// process is unaffected and can be joined again.
    pub fn join_timeout(&mut self, timeout: Duration) -> Option<Result<R, Error>> {
        self.join_until(Instant::now().checked_add(timeout))
    }

    fn join_until(&mut self, deadline: Option<Instant>) -> Option<Result<R, Error>> {
        if self.taken {
            return Some(Err(ErrorKind::AlreadyJoined { pid: self.pid() }.into()));
        }
        if let Some(pending) = self.pending.clone() {
            let received = pending.wait_until(deadline)?;
            self.take_over(received);
        }
        if !self.receive_until(deadline) {
            return None;
        }
        self.decode_early();
        let exit = match deadline {
            None => self.slot.wait(),
            Some(deadline) => self.slot.wait_until(deadline)?,
        };
        trace::process_exited(&self.name, self.pid(), exit.status);
        if !self.keep_task_children {
            let answered = matches!(self.received, Some(Ok(FromChild::Done { .. })));
            empty_group(&self.slot, exit.status, answered);
        }
        self.taken = true;
        Some(self.outcome(exit))
    }

    /// Waits for the child's answer, or for proof that none will come. `false` if the
    /// deadline passed first.
    fn receive_until(&mut self, deadline: Option<Instant>) -> bool {
        receive(&mut self.rx, &self.slot, &mut self.received, deadline)
    }

    /// Decodes the task's value if it is in: the child lingers a moment after it
    /// answered for handles it returned to be opened, not until it is joined.
    fn decode_early(&mut self) {
        if self.decoded.is_some() {
            return;
        }
        let Some(Ok(FromChild::Done {
            outcome: TaskOutcome::Returned { value, .. },
            ..
        })) = &self.received
        else {
            return;
        };
        let (task, pid) = (self.task.to_string(), self.pid());
        self.decoded = Some(
            codec::decode(value)
                .map_err(|source| ErrorKind::DecodeResult { task, pid, source }.into()),
        );
    }

    /// Takes back the channel and what arrived on it from a wait that
    /// [`Process::join_async`] ran on a thread.
    fn take_over(&mut self, received: join_async::Received) {
        self.pending = None;
        self.rx = received.rx;
        if self.received.is_none() {
            self.received = received.received;
        }
    }

    fn outcome(&mut self, exit: Exit) -> Result<R, Error> {
        let pid = self.pid();
        let task = self.task.to_string();
        let outcome = match self.received.take() {
            None => {
                if let Some((limit, peak)) = self.memory.as_ref().and_then(MemoryWatch::exceeded) {
                    return Err(ErrorKind::MemoryExceeded {
                        task,
                        pid,
                        limit,
                        // What the watchdog saw (see the pool's settle).
                        peak_rss_kib: if peak > 0 { peak } else { exit.peak_rss_kib },
                        killed: true,
                    }
                    .into());
                }
                return Err(no_result(task, pid, exit));
            }
            Some(Err(violation)) => return Err(ErrorKind::Protocol { pid, violation }.into()),
            Some(Ok(FromChild::Done { outcome, .. })) => match self.decoded.take() {
                Some(decoded) => return decoded,
                None => outcome,
            },
            Some(Ok(FromChild::SetupFailed(SetupError { step, errno }))) => {
                return Err(ErrorKind::Setup {
                    pid,
                    step,
                    source: std::io::Error::from_raw_os_error(errno),
                }
                .into())
            }
            Some(Ok(other)) => {
                return Err(ErrorKind::Protocol {
                    pid,
                    violation: Violation::Unexpected { got: other.kind() },
                }
                .into())
            }
        };
        outcome_to_result(&task, pid, outcome).and_then(|value| {
            codec::decode(&value)
                .map_err(|source| ErrorKind::DecodeResult { task, pid, source }.into())
        })
    }
}

/// A watchdog thread on a child's memory: it looks at the child with its descendants
/// every [`MEMORY_LOOK`] until the child exits, and kills them all once they hold
/// more than the limit.
struct MemoryWatch {
    limit: u64,
    /// The peak seen (KiB), set when the limit was passed and the child killed.
    exceeded: Arc<OnceLock<u64>>,
}

impl MemoryWatch {
    fn start(slot: &Arc<ChildSlot>, limit: u64) -> std::io::Result<MemoryWatch> {
        let exceeded = Arc::new(OnceLock::new());
        let (slot, verdict) = (slot.clone(), exceeded.clone());
        std::thread::Builder::new()
            .name("supervisor-memory".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let pid = slot.pid() as i32;
                let mut peak = 0;
                let mut tree = os::TreeWatch::default();
                // Ends with the child: the wait returns as soon as it is reaped.
                while slot.wait_until(Instant::now() + MEMORY_LOOK).is_none() {
                    let Some(kib) = tree.rss_kib(&[pid])[0] else {
                        continue;
                    };
                    peak = kib.max(peak);
                    if while_running(kib, limit) == MemoryVerdict::Kill {
                        let _ = verdict.set(peak);
                        slot.kill_tree();
                        return;
                    }
                }
            })?;
        Ok(MemoryWatch { limit, exceeded })
    }

    /// The limit and the peak (KiB), if the child was killed for passing it.
    fn exceeded(&self) -> Option<(u64, u64)> {
        self.exceeded.get().map(|peak| (self.limit, *peak))
    }
}

/// Waits on `rx` for the child's answer into `received`, or for proof that none will
/// come (`rx` is then `None`). `false` if the deadline passed first.
/// After the exit of `slot`'s child: a worker that answered (`answered`) and exited
/// with 0 ended its task's children itself. Killed, or ended by its task (`exit`,
/// `abort`) before it could: what is left of them in its process group goes now
/// (before, only after a signal). Returns once nothing of the group runs (a SIGKILLed
/// process vanishes a moment later), or after [`group_sweep::GONE_WITHIN`].
fn empty_group(slot: &ChildSlot, status: ExitStatus, answered: bool) {
    if !(status == ExitStatus::Code(0) && answered) {
        let _ = slot.signal_group(libc::SIGKILL);
    }
    group_sweep::wait_gone(slot, Instant::now() + group_sweep::GONE_WITHIN);
}

fn receive(
    rx_slot: &mut Option<protocol::Receiver>,
    slot: &ChildSlot,
    received_slot: &mut Option<Result<FromChild, Violation>>,
    deadline: Option<Instant>,
) -> bool {
    while received_slot.is_none() {
        let Some(rx) = rx_slot.as_ref() else {
            return true;
        };
        let mut step = EXIT_CHECK;
        if let Some(deadline) = deadline {
            match deadline.checked_duration_since(Instant::now()) {
                Some(left) => step = step.min(left),
                None => return false,
            }
        }
        let exited_before = slot.exit().is_some();
        match rx.recv_timeout(step) {
            Ok(frame) => {
                let received = Inbox::new()
                    .decode::<FromChild>(frame)
                    .map_err(|e| Violation::Unreadable(Arc::new(e)))
                    .and_then(expected);
                if let Ok(msg) = &received {
                    crate::command::claim_spools(slot.pid(), msg);
                }
                if received.is_err() {
                    // Nothing it says can be trusted now, and it may never exit.
                    let _ = slot.signal(libc::SIGKILL, true);
                }
                *received_slot = Some(received);
            }
            Err(LinkError::Timeout) => {
                // Exited, and nothing arrived since: the channel is only held open by
                // someone else (a grandchild); no result will come.
                if exited_before {
                    *rx_slot = None;
                }
            }
            Err(LinkError::Closed) => *rx_slot = None,
            Err(e) => {
                // The worker broke the protocol: it can no longer be trusted to answer.
                let _ = slot.signal(libc::SIGKILL, true);
                *received_slot = Some(Err(Violation::Link(Arc::new(e))));
            }
        }
    }
    true
}

/// The id of a Process's one task.
const TASK_ID: u64 = 1;

/// The message a Process's child may send: its task's result, or why it could not
/// set itself up. Anything else is a protocol error.
fn expected(msg: FromChild) -> Result<FromChild, Violation> {
    match msg {
        FromChild::Done { id, .. } if id != TASK_ID => Err(Violation::WrongTask { seq: id }),
        FromChild::Done { .. } | FromChild::SetupFailed(_) => Ok(msg),
        other => Err(Violation::Unexpected { got: other.kind() }),
    }
}
