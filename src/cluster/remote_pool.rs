//! [`RemotePool`]: the pool API (`map`, `imap`, `imap_unordered`, `submit`,
//! `as_completed`) with remote workers: the agents of a NATS server.

use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use supervisor_worker::registry;
use supervisor_worker::Call;

use super::connect::Connect;
use super::submit::{RemoteOptions, RemoteReports};
use crate::error::{Error, ErrorKind};

/// A pool whose workers are the agents ([`super::Agent`], `supervisor worker`) of a
/// NATS server: the same calls as [`crate::Pool`], for tasks registered with
/// [`crate::task!`] in the agents' program as in this one.
///
/// ```no_run
/// use supervisor::cluster::{Connect, RemotePool};
///
/// fn square(x: u64) -> u64 { x * x }
/// supervisor::task!(square);
///
/// fn main() {
///     supervisor::init();
///     let pool = RemotePool::new(Connect::new("nats://127.0.0.1:4222"));
///     let squares: Vec<u64> = pool.map(square, 1..=10).into_iter().map(Result::unwrap).collect();
///     assert_eq!(squares[9], 100);
/// }
/// ```
///
/// Each `map`/`imap` call is one run (its own consumer on the server); `submit` makes
/// a run of one task, so prefer `imap` for many small tasks.
#[derive(Debug, Clone)]
pub struct RemotePool {
    options: RemoteOptions,
}

impl RemotePool {
    /// A pool of the agents of the server `connect` names, with the defaults.
    pub fn new(connect: Connect) -> RemotePool {
        RemotePool {
            options: RemoteOptions::new(connect),
        }
    }

    /// Deliveries after the first for a task whose worker died or that timed out.
    pub fn retries(mut self, n: u32) -> RemotePool {
        self.options.retries = n;
        self
    }

    /// The server's ack wait (see [`super::defaults::ACK_WAIT`]).
    pub fn ack_wait(mut self, wait: Duration) -> RemotePool {
        self.options.ack_wait = wait;
        self
    }

    /// Also run a task again when it returns `Err`, within the same `retries`, as
    /// [`crate::PoolBuilder::retry_errors`] (the agents tell such values apart with
    /// [`super::Agent::failed_when`]). Default: false.
    pub fn retry_errors(mut self, yes: bool) -> RemotePool {
        self.options.retry_errors = yes;
        self
    }

    /// A time limit per task, applied by the agents' pools to each task (see
    /// [`RemoteOptions::task_timeout`]). Default: none.
    pub fn task_timeout(mut self, limit: Duration) -> RemotePool {
        self.options.task_timeout = Some(limit);
        self
    }

    /// A run gives up with [`ErrorKind::ServerLost`] when the server has been
    /// unreachable this long (see [`super::defaults::SERVER_TIMEOUT`]).
    pub fn server_timeout(mut self, limit: Duration) -> RemotePool {
        self.options.server_timeout = limit;
        self
    }

    /// Runs `task` over `inputs` on the agents; the results in input order.
    pub fn map<F, M>(
        &self,
        task: F,
        inputs: impl IntoIterator<Item = F::Arg>,
    ) -> Vec<Result<F::Out, Error>>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
        F::Out: DeserializeOwned,
    {
        self.imap(task, inputs).collect()
    }

    /// Lazily runs `task` over `inputs`, yielding results in input order.
    pub fn imap<F, M, I>(&self, task: F, inputs: I) -> RemoteImap<F::Out, I::IntoIter>
    where
        F: Call<M> + 'static,
        I: IntoIterator<Item = F::Arg>,
        F::Arg: Serialize,
        F::Out: DeserializeOwned,
    {
        self.imap_with(task, inputs, true)
    }

    /// [`RemotePool::imap`] yielding results as they finish.
    pub fn imap_unordered<F, M, I>(&self, task: F, inputs: I) -> RemoteImap<F::Out, I::IntoIter>
    where
        F: Call<M> + 'static,
        I: IntoIterator<Item = F::Arg>,
        F::Arg: Serialize,
        F::Out: DeserializeOwned,
    {
        self.imap_with(task, inputs, false)
    }

    fn imap_with<F, M, I>(
        &self,
        _task: F,
        inputs: I,
        ordered: bool,
    ) -> RemoteImap<F::Out, I::IntoIter>
    where
        F: Call<M> + 'static,
        I: IntoIterator<Item = F::Arg>,
        F::Arg: Serialize,
        F::Out: DeserializeOwned,
    {
        let mut options = self.options.clone();
        options.ordered = ordered;
        let inputs = inputs.into_iter();
        let name = match name_of::<F, M>() {
            Ok(name) => name,
            Err(e) => {
                return RemoteImap(Inner::Failed(
                    supervisor_worker::error_chain(&e),
                    Some(inputs),
                ))
            }
        };
        match RemoteReports::start_with(options, name, inputs) {
            Ok(reports) => RemoteImap(Inner::Running(Box::new(reports))),
            Err((e, inputs)) => RemoteImap(Inner::Failed(
                supervisor_worker::error_chain(&e),
                Some(inputs),
            )),
        }
    }

    /// Submits one task and returns a handle at once (a run of one task, waited for on
    /// a thread of its own).
    pub fn submit<F, M>(&self, _task: F, arg: F::Arg) -> RemoteHandle<F::Out>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize + Send + 'static,
        F::Out: DeserializeOwned + Send + 'static,
    {
        let slot: Arc<Slot<F::Out>> = Arc::new(Slot {
            state: Mutex::new(SlotState {
                result: None,
                watchers: Vec::new(),
            }),
            ready: Condvar::new(),
        });
        let name = match name_of::<F, M>() {
            Ok(name) => name,
            Err(e) => {
                slot.set(Err(e));
                return RemoteHandle { slot };
            }
        };
        let (options, theirs) = (self.options.clone(), slot.clone());
        let spawned = std::thread::Builder::new()
            .name("supervisor-remote".into())
            .spawn(move || {
                let result =
                    match RemoteReports::<F::Out, _>::start(options, name, std::iter::once(arg)) {
                        Ok(mut reports) => reports.next().map_or_else(
                            || {
                                Err(ErrorKind::Cancelled {
                                    task: name.to_string(),
                                }
                                .into())
                            },
                            |r| r.result,
                        ),
                        Err(e) => Err(e),
                    };
                theirs.set(result);
            });
        if let Err(e) = spawned {
            slot.set(Err(super::connect::cluster("cannot start a thread", e)));
        }
        RemoteHandle { slot }
    }
}

fn name_of<F: Call<M> + 'static, M>() -> Result<&'static str, Error> {
    Ok(registry::by_key(supervisor_worker::call::key_of::<F>())?.name)
}

enum Inner<R, I: Iterator> {
    Running(Box<RemoteReports<R, I>>),
    /// The run could not start: each input gets the error.
    Failed(String, Option<I>),
}

/// The results of [`RemotePool::imap`] and [`RemotePool::imap_unordered`].
pub struct RemoteImap<R, I: Iterator>(Inner<R, I>);

impl<R: DeserializeOwned, I: Iterator> Iterator for RemoteImap<R, I>
where
    I::Item: Serialize,
{
    type Item = Result<R, Error>;

    fn next(&mut self) -> Option<Result<R, Error>> {
        match &mut self.0 {
            Inner::Running(r) => r.next().map(|r| r.result),
            Inner::Failed(message, inputs) => {
                inputs.as_mut()?.next()?;
                Some(Err(ErrorKind::Cluster {
                    what: message.clone(),
                    source: None,
                }
                .into()))
            }
        }
    }
}

struct SlotState<R> {
    result: Option<Result<R, Error>>,
    watchers: Vec<(mpsc::Sender<usize>, usize)>,
}

struct Slot<R> {
    state: Mutex<SlotState<R>>,
    ready: Condvar,
}

impl<R> Slot<R> {
    fn set(&self, result: Result<R, Error>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.result = Some(result);
        for (tx, i) in s.watchers.drain(..) {
            let _ = tx.send(i);
        }
        self.ready.notify_all();
    }
}

/// A task submitted with [`RemotePool::submit`].
pub struct RemoteHandle<R> {
    slot: Arc<Slot<R>>,
}

impl<R> RemoteHandle<R> {
    /// Waits for the result; a second call gives [`ErrorKind::ResultTaken`].
    pub fn wait(&self) -> Result<R, Error> {
        let mut s = self.slot.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = s.result.take() {
                // Leave a marker so a second wait does not block.
                s.result = Some(Err(ErrorKind::ResultTaken {
                    task: "remote".to_string(),
                }
                .into()));
                return r;
            }
            s = self.slot.ready.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Whether the result is in.
    pub fn ready(&self) -> bool {
        let s = self.slot.state.lock().unwrap_or_else(|p| p.into_inner());
        s.result.is_some()
    }
}

/// Yields the handles as their tasks finish (`concurrent.futures.as_completed`).
pub fn as_completed<R>(handles: impl IntoIterator<Item = RemoteHandle<R>>) -> RemoteAsCompleted<R> {
    let (tx, rx) = mpsc::channel();
    let handles: Vec<Option<RemoteHandle<R>>> = handles.into_iter().map(Some).collect();
    for (i, h) in handles.iter().enumerate() {
        if let Some(h) = h {
            let mut s = h.slot.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.result.is_some() {
                let _ = tx.send(i);
            } else {
                s.watchers.push((tx.clone(), i));
            }
        }
    }
    RemoteAsCompleted {
        left: handles.len(),
        handles,
        rx,
    }
}

/// The iterator of [`as_completed`].
pub struct RemoteAsCompleted<R> {
    handles: Vec<Option<RemoteHandle<R>>>,
    rx: mpsc::Receiver<usize>,
    left: usize,
}

impl<R> Iterator for RemoteAsCompleted<R> {
    type Item = RemoteHandle<R>;

    fn next(&mut self) -> Option<RemoteHandle<R>> {
        if self.left == 0 {
            return None;
        }
        let i = self.rx.recv().ok()?;
        self.left -= 1;
        self.handles.get_mut(i)?.take()
    }
}
