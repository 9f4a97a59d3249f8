//! One call at a time: `apply`, `apply_async` / `submit`, and the cluster agent's
//! calls with an argument already encoded (`start_encoded`, `stop_call`).

use std::marker::PhantomData;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};
use supervisor_worker::codec;
#[cfg(feature = "cluster")]
use supervisor_worker::registry;
use supervisor_worker::Call;

#[cfg(feature = "cluster")]
use super::event::Event;
use super::job::{HandleState, Job, Sink, Unit};
use super::{resolve, Pool, TaskHandle};

use crate::error::{Error, ErrorKind};
use crate::sync::shipped;

/// A call made with `Pool::start_encoded`: its id, and its result to wait for.
#[cfg(feature = "cluster")]
pub(crate) struct EncodedCall {
    pub(crate) id: u64,
    task: String,
    state: Arc<HandleState>,
    /// Refused before it was submitted (an unknown task).
    early: Option<Error>,
}

#[cfg(feature = "cluster")]
impl std::future::Future for EncodedCall {
    type Output = (Result<Vec<u8>, Error>, u32);

    /// The encoded value or the typed error, and the pid that ran it (0 if none did);
    /// no thread waits for it: the task is woken by whoever settles the job (see
    /// `HandleState::poll_take`).
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        if let Some(e) = self.early.take() {
            return std::task::Poll::Ready((Err(e), 0));
        }
        self.state.poll_take(cx).map(|taken| match taken {
            Some((result, pid)) => (result, pid),
            None => (
                Err(ErrorKind::ResultTaken {
                    task: self.task.clone(),
                }
                .into()),
                0,
            ),
        })
    }
}

impl Pool {
    /// Runs one task and waits for it.
    pub fn apply<F, M>(&self, task: F, arg: F::Arg) -> Result<F::Out, Error>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
        F::Out: DeserializeOwned,
    {
        let handle = self.submit_one(task, arg, HandleState::for_caller());
        // Read the worker's reply on this thread if its link was lent to it: two
        // wake-ups per round trip (the worker's, this thread's) instead of three.
        handle.state.serve_lent_link();
        handle.wait()
    }

    /// Submits one task and returns a handle at once.
    pub fn apply_async<F, M>(&self, task: F, arg: F::Arg) -> TaskHandle<F::Out>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
    {
        self.submit_one(task, arg, HandleState::new())
    }

    fn submit_one<F, M>(&self, _task: F, arg: F::Arg, state: Arc<HandleState>) -> TaskHandle<F::Out>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
    {
        let id = self.shared.next_id();
        let name = resolve::<F>();
        let task = name.as_ref().map_or("?", |n| *n);
        let handle = TaskHandle {
            state: state.clone(),
            shared: self.shared.clone(),
            id,
            task,
            result: PhantomData,
        };
        let (encoded, shipped) = shipped::collecting(|| codec::encode_value(&arg));
        // The caller gave the argument away: a big one is not held beside its encoding
        // while the task is sent.
        drop(arg);
        let job = name.map_err(Error::from).and_then(|name| {
            encoded
                .map(|bytes| {
                    let mut job = Job::new(id, name, bytes, Sink::Handle(state.clone()));
                    job.shipped = shipped;
                    job
                })
                .map_err(|source| {
                    Error::from(ErrorKind::EncodeArgument {
                        task: name.to_string(),
                        source,
                    })
                })
        });
        match job {
            Ok(job) => self.shared.submit(vec![Unit::new(task, vec![job])]),
            Err(e) => Job::new(id, task, Vec::new(), Sink::Handle(state)).complete(Err(e)),
        }
        handle
    }

    /// Submits task `name` with its argument already encoded (the cluster agent's
    /// path: the bytes came over the network), and returns at once: the call's id
    /// (for [`Pool::stop_call`]) and what waits for its result. `limit` is the call's
    /// own time limit (the run's `--timeout`): the shorter of it and the pool's
    /// applies, to this call alone, as the pool's applies to each call.
    #[cfg(feature = "cluster")]
    pub(crate) fn start_encoded(
        &self,
        name: &str,
        bytes: Vec<u8>,
        limit: Option<std::time::Duration>,
    ) -> EncodedCall {
        let state = HandleState::new();
        let id = self.shared.next_id();
        let early = match registry::by_name(name) {
            Ok(entry) => {
                let mut job = Job::new(id, entry.name, bytes, Sink::Handle(state.clone()));
                job.limit = limit;
                self.shared.submit(vec![Unit::new(entry.name, vec![job])]);
                None
            }
            Err(e) => Some(e.into()),
        };
        EncodedCall {
            id,
            task: name.to_string(),
            state,
            early,
        }
    }

    /// Stops one call, by its id, through the pool's own stop path: a call that has
    /// not started is cancelled ([`ErrorKind::Cancelled`]); a running one has its
    /// worker stopped (SIGTERM to its group, the grace period, SIGKILL) and fails as
    /// [`ErrorKind::Stopped`] unless it answers first; the pool starts a replacement
    /// and goes on. A finished call is left alone. (The cluster agent's stop of a
    /// run's running tasks.)
    #[cfg(feature = "cluster")]
    pub(crate) fn stop_call(&self, id: u64) {
        self.shared.hub.post(Event::StopCall(id));
    }

    /// `concurrent.futures` spelling of [`Pool::apply_async`].
    pub fn submit<F, M>(&self, task: F, arg: F::Arg) -> TaskHandle<F::Out>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
    {
        self.apply_async(task, arg)
    }
}
