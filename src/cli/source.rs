//! Where `run`'s results come from: the local pool, or (with `--nats`) the agents of a
//! cluster. Both give the same reports, so everything after prints the same way.

use serde::Serialize;
use supervisor::{Error, JobMeta, Report, Reports};

use super::tasks::Outcome;

/// The results of a run, local or remote.
#[cfg_attr(
    feature = "cluster",
    expect(
        clippy::large_enum_variant,
        reason = "one per run, on the stack of `run`"
    )
)]
pub enum Source<I: Iterator> {
    Local(Reports<Outcome, I>),
    #[cfg(feature = "cluster")]
    Remote(Box<supervisor::cluster::RemoteReports<Outcome, I>>),
}

impl<I: Iterator> Source<I>
where
    I::Item: Serialize,
{
    /// A run on the agents of a cluster. `stopped` says whether the run is stopping
    /// (a signal, `--halt`, an output error): asked before each result is taken, so
    /// nothing that arrives after the deciding result counts. `fatal` is called once
    /// if the run cannot go on (the server unreachable past `--nats-timeout`), after
    /// the error is said on stderr; the tasks without a result are then not run.
    /// `drain` says whether a stop lets the running tasks finish (`--halt soon`);
    /// otherwise the agents stop them, and they are reported as stopped.
    #[cfg(feature = "cluster")]
    pub fn remote(
        options: supervisor::cluster::RemoteOptions,
        task: &str,
        jobs: I,
        stopped: impl Fn() -> bool + 'static,
        drain: impl Fn() -> bool + 'static,
        mut fatal: impl FnMut() + 'static,
    ) -> Result<Self, Error> {
        let remote = supervisor::cluster::RemoteReports::start(options, task, jobs)?
            .stop_when(stopped)
            .drain_when(drain)
            .on_fatal(move |e| {
                say!(
                    "supervisor: {}; the tasks without a result are given up",
                    supervisor_worker::error_chain(e)
                );
                fatal();
            });
        Ok(Source::Remote(Box::new(remote)))
    }

    pub fn input_ready(self, ready: impl FnMut() -> bool + 'static) -> Self {
        match self {
            Source::Local(r) => Source::Local(r.input_ready(ready)),
            #[cfg(feature = "cluster")]
            Source::Remote(r) => Source::Remote(Box::new(r.input_ready(ready))),
        }
    }

    /// `f(index, result, meta, host)`; the host is `:` locally (parallel's name for
    /// this machine).
    pub fn on_arrival(
        self,
        mut f: impl FnMut(usize, &Result<Outcome, Error>, &JobMeta, &str) + 'static,
    ) -> Self {
        match self {
            Source::Local(r) => Source::Local(r.on_arrival(move |i, r, m| f(i, r, m, ":"))),
            #[cfg(feature = "cluster")]
            Source::Remote(r) => Source::Remote(Box::new(r.on_arrival(f))),
        }
    }

    /// Called before a local run waits for a result that is not in (see
    /// `Reports::on_wait`); a remote run never calls it.
    pub fn on_wait(self, f: impl FnMut() + 'static) -> Self {
        match self {
            Source::Local(r) => Source::Local(r.on_wait(f)),
            #[cfg(feature = "cluster")]
            Source::Remote(r) => {
                drop(f);
                Source::Remote(r)
            }
        }
    }

    /// Whether [`Source::on_wait`] is called (a local run).
    pub fn calls_on_wait(&self) -> bool {
        matches!(self, Source::Local(_))
    }

    /// Called with each result that waits for its turn (local runs only: a remote
    /// run's results wait in its own reorder buffer, in memory, bounded by
    /// `RemoteOptions::max_held` and [`supervisor::DEFAULT_HOLD_IN_MEMORY`]).
    pub fn on_hold(self, f: impl FnMut(usize, &mut Result<Outcome, Error>) + 'static) -> Self {
        match self {
            Source::Local(r) => Source::Local(r.on_hold(f)),
            #[cfg(feature = "cluster")]
            Source::Remote(r) => {
                drop(f);
                Source::Remote(r)
            }
        }
    }

    /// Called with each later result of a task already done (remote runs only: a
    /// redelivered task that ran twice); the result is dropped.
    pub fn on_duplicate(self, f: impl FnMut(usize, &JobMeta, &str) + 'static) -> Self {
        match self {
            Source::Local(r) => {
                drop(f);
                Source::Local(r)
            }
            #[cfg(feature = "cluster")]
            Source::Remote(r) => Source::Remote(Box::new(r.on_duplicate(f))),
        }
    }

    /// The next report, with the host it ran on for a remote run.
    pub fn next(&mut self) -> Option<(Report<Outcome>, Option<String>)> {
        match self {
            Source::Local(r) => r.next().map(|r| (r, None)),
            #[cfg(feature = "cluster")]
            Source::Remote(r) => r.next_with_host().map(|(r, h)| (r, Some(h))),
        }
    }

    pub fn ready(&mut self) -> bool {
        match self {
            Source::Local(r) => r.ready(),
            #[cfg(feature = "cluster")]
            Source::Remote(r) => r.ready(),
        }
    }
}
