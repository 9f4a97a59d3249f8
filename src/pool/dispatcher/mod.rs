//! The dispatcher: the one owner of a pool's state.
//!
//! Everything else talks to it through [`Event`](super::event::Event)s posted to the
//! hub (`hub.rs`): callers (submit, cancel, close, terminate, stats), worker starters,
//! one reader per worker (its messages, then `LinkClosed`), and the reaper (`Exited`).
//! Deadlines (task timeouts, kill-after-grace, exit settling, delayed restarts) are the
//! hub's timer thread's business: it calls `on_timers`.
//!
//! A worker runs one unit at a time: one call, a batch of calls of one task, or a chunk
//! of a `map`. Every call stays the dispatcher's until the worker claims it on its
//! progress page (`supervisor_worker::progress`), so the dispatcher always knows which
//! call runs and since when, and takes unstarted calls back when another worker is
//! idle, when the running call times out, or when the worker dies.
//!
//! The dispatcher decides; it touches no process, socket or clock itself. Starting a
//! worker, sending it a unit, signalling it, and reading the time go through the
//! [`Io`](super::ports::Io) and [`WorkerLink`](super::ports::WorkerLink) it is built
//! with: `live.rs` with real processes, `sim.rs` (tests) with simulated workers on a
//! virtual clock. The pure pieces of policy are in `running.rs` (time limits, deaths)
//! and `storm.rs` (restarts).
//!
//! - `state.rs`: the state, and the events that change it directly; `worker.rs`: a
//!   worker and its seat; `start.rs`: starting workers; `cancel.rs`: cancelling calls;
//!   `shutdown.rs`: breaking, terminating, killing the pool;
//! - `answers.rs`: a worker's answers;
//! - `settle.rs`: a worker's end, call by call;
//! - `assign.rs`: handing out work;
//! - `take_back.rs`: taking unstarted calls back, for idle workers first;
//! - `timers.rs`: deadlines; `group_kill.rs`: emptying a dead worker's group;
//! - `memory.rs`: memory limits (looks at busy workers, recycling after a task);
//! - `snapshot.rs`: `stats()`.

mod answers;
mod assign;
mod cancel;
mod group_kill;
mod memory;
mod settle;
mod shutdown;
mod snapshot;
mod start;
mod state;
mod take_back;
mod timers;
mod worker;

#[cfg(test)]
mod sim;

pub(crate) use state::Dispatcher;
