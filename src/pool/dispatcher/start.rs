//! Starting workers: a seat's new worker, its initializer, and what a start that
//! failed means (a storm death, or a pool that cannot start workers at all).

use std::sync::Arc;

use supervisor_worker::protocol::{TaskRequest, ToChild};

use super::super::ports::{Io, WorkerLink};
use super::super::storm::Verdict;
use super::super::RestartLimit;
use super::state::{Dispatcher, INIT_SEQ};
use super::worker::{Stop, Worker};
use crate::error::{resource_limit, BrokenReason, Error, ErrorKind, StormDeath};
use crate::launch::Spec;

impl<X: Io> Dispatcher<X> {
    pub(super) fn start_worker(&mut self, seat: usize) {
        self.seats[seat].starting = true;
        self.seats[seat].start_at = None;
        let spec = Spec {
            method: self.cfg.method,
            nice: self.cfg.nice,
            daemon: true,
            name: format!("{}-{seat}", self.cfg.name),
            env_allowlist: self.cfg.env_allowlist.clone(),
            end_task_children: (!self.cfg.keep_task_children).then_some(self.cfg.grace),
            retire_above: crate::memory::retire_above(
                self.cfg.max_memory_per_child,
                self.cfg.memory_limit,
            ),
            memory_limit: self.cfg.memory_limit,
            seat: u32::try_from(seat).ok(),
        };
        if let Err(e) = self.io.start(seat, spec) {
            self.seats[seat].starting = false;
            let death = StormDeath::NoThread {
                limit: resource_limit(&e),
                cause: Arc::new(e),
            };
            self.storm_death(seat, death);
        }
    }

    /// A worker died (or could not start) before it finished anything: a replacement
    /// after a back-off, or the pool breaks.
    pub(super) fn storm_death(&mut self, seat: usize, last: StormDeath) {
        let now = self.io.clocks().now;
        let short_of_a_resource = matches!(
            last,
            StormDeath::CannotStart { limit: Some(_), .. }
                | StormDeath::NoThread { limit: Some(_), .. }
        );
        if short_of_a_resource && self.others_run(seat) {
            // Fewer workers for now, not a storm (see `pool::storm`).
            self.seats[seat].start_at = Some(self.storm.defer(now));
            return;
        }
        match self.storm.death(now) {
            Verdict::RestartAt(at) => self.seats[seat].start_at = Some(at),
            Verdict::Break(deaths) => {
                let RestartLimit { max, within } = self.cfg.restart_limit;
                self.break_pool(BrokenReason::Storm {
                    deaths,
                    max,
                    within,
                    last,
                });
            }
        }
    }

    /// A worker could not be started (or set up) for a reason that may pass: a storm
    /// death, with the resource limit behind it named.
    pub(super) fn start_failed(&mut self, seat: usize, e: Error) {
        let death = StormDeath::CannotStart {
            limit: resource_limit(&e),
            cause: Arc::new(e),
        };
        self.storm_death(seat, death);
    }

    pub(super) fn on_started(&mut self, seat: usize, result: Result<X::Started, Error>) {
        self.seats[seat].starting = false;
        let started = match result {
            Ok(started) => started,
            Err(e) => {
                let permanent = matches!(
                    e.kind(),
                    ErrorKind::NiceNotPermitted { .. }
                        | ErrorKind::NiceOutOfRange(_)
                        | ErrorKind::ForkUnavailable { .. }
                        | ErrorKind::Registry(_)
                        | ErrorKind::DaemonCannotStart { .. }
                        | ErrorKind::NotInitialised { .. }
                ) || temp_dir_unfit(&e);
                if permanent {
                    self.break_pool(BrokenReason::CannotStart(Arc::new(e)));
                } else {
                    self.start_failed(seat, e);
                }
                return;
            }
        };
        let id = self.next_worker;
        self.next_worker += 1;
        let link = match self.io.attach(id, started) {
            Ok(link) => link,
            Err(e) => return self.start_failed(seat, e),
        };
        let mut worker = Worker::new(id, link);
        if let Some((task, arg)) = &self.cfg.initializer {
            let req = ToChild::Task(TaskRequest {
                id: INIT_SEQ,
                task: task.to_string(),
                arg: arg.clone(),
            });
            worker.initializing = true;
            worker.link.page().begin(INIT_SEQ, 1);
            if worker.link.is_open() {
                // A failed send closes the link: it is going away, and its exit is
                // handled as any other.
                let _ = worker.link.send_init(&req);
            }
        }
        let reading = worker.link.reading();
        if self.terminating || self.broken.is_some() || !reading {
            // Without a reader nobody would hear from this worker: stop it now.
            worker.link_closed = !reading;
            worker.stop(Stop::Shutdown, self.cfg.escalation(), self.io.clocks().now);
        }
        self.seats[seat].worker = Some(worker);
    }

    /// Whether a worker of a seat other than `seat` runs (set up, not being stopped).
    fn others_run(&self, seat: usize) -> bool {
        self.seats.iter().enumerate().any(|(i, s)| {
            i != seat
                && s.worker
                    .as_ref()
                    .is_some_and(|w| !w.exited && !w.initializing && w.stop.is_none())
        })
    }

    pub(super) fn wants_workers(&self) -> bool {
        !self.terminating && self.broken.is_none() && (!self.closing || !self.queue.is_empty())
    }
}

/// Whether a start failed on a temporary directory no retry can mend, for a spawned
/// worker or the fork server it would be forked from.
fn temp_dir_unfit(e: &Error) -> bool {
    match e.kind() {
        ErrorKind::Channel(io) => crate::os::temp_dir_unfit(io),
        ErrorKind::Forkserver(inner) => temp_dir_unfit(inner),
        _ => false,
    }
}
