//! A worker's end: what each call of its unit comes to (delivered from its answer log,
//! lost, failed or retried, or queued again), and whether it counts toward a storm.

use std::sync::Arc;
use std::time::Duration;

use supervisor_worker::progress::Logged;
use supervisor_worker::protocol::{TaskOutcome, Timing};

use super::super::job::{Deliveries, Job, JobMeta, Unit};
use super::super::ports::{Io, WorkerLink};
use super::super::running::{death_split, Clocks, Running};
use super::super::stats::{WorkerState, WorkerStats};
use super::group_kill::GroupKill;
use super::state::{Dispatcher, MAX_HISTORY};
use super::worker::Stop;
use crate::error::{BrokenCall, BrokenReason, ErrorKind, StormDeath};
use crate::outcome::{no_result, outcome_to_result};

impl<X: Io> Dispatcher<X> {
    /// A worker's process exited and its channel closed: settle its jobs, replace it.
    pub(super) fn finalize(&mut self, id: u64) {
        let Some(seat) = self.seat_of(id) else { return };
        let Some(mut worker) = self.seats[seat].worker.take() else {
            return;
        };
        let clocks = self.io.clocks();
        let exit = worker.link.exit().unwrap_or(crate::reaper::Exit::UNKNOWN);
        let pid = worker.link.pid();
        let expected = !worker.link.is_open() && worker.running.is_none() && worker.stop.is_none();
        let stop = worker.stop;
        let peak_kib = worker.peak_kib;
        let seen = worker.link.page().snapshot();
        let running = worker.running.take();
        let logged = running
            .as_ref()
            .map(|run| worker.link.page().logged(run.seq))
            .unwrap_or_default();
        self.exited.push_back(WorkerStats {
            pid,
            state: WorkerState::Exited {
                status: exit.status,
            },
            tasks_done: worker.tasks_done,
            restarts: self.seats[seat].restarts,
            cpu_time: exit.cpu_time,
            rss_kib: 0,
            peak_rss_kib: exit.peak_rss_kib,
        });
        if self.exited.len() > MAX_HISTORY {
            self.exited.pop_front();
        }
        let initializing = worker.initializing;
        let kill_at = match worker.kill_at {
            Some(at) => Some(at),
            // It died on its own (crashed, killed from outside) with something of its
            // task left in its process group: that ends too, SIGTERM, then SIGKILL
            // after the grace period.
            None if !expected && !self.cfg.keep_task_children && worker.link.group_runs() => {
                worker.link.terminate_group();
                clocks.now.checked_add(self.cfg.grace)
            }
            None => None,
        };
        if let Some(kill_at) = kill_at {
            if worker.link.group_runs() {
                self.group_kills
                    .push(GroupKill::new(kill_at, worker.link, clocks.now));
            }
        }
        if initializing {
            let task = self.cfg.initializer.as_ref().map_or("", |(t, _)| *t);
            let e = no_result(task.to_string(), pid, exit);
            self.break_pool(BrokenReason::Initializer(Arc::new(e)));
            return;
        }
        let mut ran_a_call = false;
        if let Some(mut run) = running {
            // A timed chunk's logged values carry their calls' timings.
            let timed = run.unit.chunk.as_ref().is_some_and(|c| c.timed);
            run.unit.explode();
            ran_a_call = self.recover_logged(pid, logged, &mut run, &clocks, timed);
            let split = death_split(&run, run.claimed(&seen));
            let task = run.unit.task;
            let mut jobs = std::mem::take(&mut run.unit.jobs).into_iter();
            let started = Some(clocks.wall(seen.started_ns));
            for job in jobs.by_ref().take(split.lost.len()) {
                self.failed += 1;
                let meta = JobMeta {
                    pid,
                    attempts: job.retried + 1,
                    started: None,
                    duration: Duration::ZERO,
                };
                let e = ErrorKind::ResultLost {
                    task: task.to_string(),
                    pid,
                };
                job.complete_with(Err(e.into()), meta);
            }
            let mut retry = None;
            if split.culprit.is_some() {
                ran_a_call = true;
                // The call that passed its limit and answered anyway: it timed out (its
                // report is its own timing). One that succeeded all the same is not run
                // again; one that failed (it died of the stop, say) is retried as any
                // timed-out call is.
                let answered = run.expired_answer.filter(|_| split.culprit == run.expired);
                if let Some(mut job) = jobs.next() {
                    let retries_left = match stop {
                        _ if answered.is_some() && run.expired_succeeded => false,
                        // Nothing runs again in a broken pool.
                        _ if self.broken.is_some() => false,
                        Some(Stop::Shutdown | Stop::Requested) => false,
                        _ => job.retried < self.cfg.retries && !self.terminating,
                    };
                    if retries_left {
                        job.retried += 1;
                        retry = Some(job);
                    } else {
                        // Stopped by the pool's break (not for its own time limit or
                        // memory): said so, with the reason.
                        let err = match (stop, &self.broken) {
                            (Some(Stop::Shutdown), Some(reason)) => ErrorKind::PoolBroken {
                                reason: reason.clone(),
                                call: BrokenCall::Stopped {
                                    task: task.to_string(),
                                    pid,
                                },
                            }
                            .into(),
                            _ if self.terminating || stop == Some(Stop::Requested) => {
                                ErrorKind::Stopped {
                                    task: task.to_string(),
                                    pid,
                                }
                                .into()
                            }
                            _ if answered.is_some() => ErrorKind::TimedOut {
                                task: task.to_string(),
                                pid,
                                limit: job.limit_under(self.cfg.task_timeout).unwrap_or_default(),
                            }
                            .into(),
                            (Some(Stop::Timeout), _) => ErrorKind::TimedOut {
                                task: task.to_string(),
                                pid,
                                limit: job.limit_under(self.cfg.task_timeout).unwrap_or_default(),
                            }
                            .into(),
                            (Some(Stop::Memory), _) => ErrorKind::MemoryExceeded {
                                task: task.to_string(),
                                pid,
                                limit: self.cfg.memory_limit.unwrap_or_default(),
                                // What the looks saw: the exit's `ru_maxrss` of a
                                // spawned worker starts at its parent program's peak.
                                peak_rss_kib: if peak_kib > 0 {
                                    peak_kib
                                } else {
                                    exit.peak_rss_kib
                                },
                                killed: true,
                            }
                            .into(),
                            _ => no_result(task.to_string(), pid, exit),
                        };
                        self.failed += 1;
                        let since = clocks.instant(seen.started_ns);
                        let meta = match answered.filter(|t| t.start_ns != 0) {
                            Some(timing) => JobMeta {
                                pid,
                                attempts: job.retried + 1,
                                started: Some(clocks.wall(timing.start_ns)),
                                duration: Duration::from_nanos(timing.duration_ns),
                            },
                            None => JobMeta {
                                pid,
                                attempts: job.retried + 1,
                                started,
                                duration: clocks.now.saturating_duration_since(since),
                            },
                        };
                        job.complete_with(Err(err), meta);
                    }
                }
            }
            // Never started: back to the front of the queue as they were, behind the
            // retried culprit (input order).
            let unstarted: Vec<Job> = jobs.collect();
            if self.terminating || self.broken.is_some() {
                let reason = self.broken.clone();
                Unit::new(task, unstarted).fail(|task| match &reason {
                    Some(reason) => ErrorKind::PoolBroken {
                        reason: reason.clone(),
                        call: BrokenCall::NotStarted,
                    },
                    None => ErrorKind::Terminated {
                        task: task.to_string(),
                    },
                });
            } else if !unstarted.is_empty() {
                self.queue.push_front(Unit::new(task, unstarted));
            }
            if let Some(job) = retry {
                self.queue.push_front(Unit::new(task, vec![job]));
            }
        }
        if self.terminating || self.broken.is_some() {
            return;
        }
        if !expected {
            self.seats[seat].restarts += 1;
            self.restarts += 1;
            let counts = !ran_a_call && stop.is_none();
            if counts {
                let status = exit.status;
                self.storm_death(seat, StormDeath::Ended { pid, status });
                return;
            }
        }
        if self.wants_workers() {
            self.start_worker(seat);
        }
    }

    /// Delivers the answers a dead worker logged but never sent (see
    /// `supervisor_worker::progress`): those calls finished, so they are never run
    /// again. True if there were any. `timed`: the values carry their calls' timings
    /// (a timed chunk's; see `Timing::append_to`).
    fn recover_logged(
        &mut self,
        pid: u32,
        logged: Vec<(u32, Logged)>,
        run: &mut Running,
        clocks: &Clocks,
        timed: bool,
    ) -> bool {
        let task = run.unit.task;
        let mut deliveries = Deliveries::default();
        let mut any = false;
        for (position, logged) in logged {
            if position < run.answered {
                continue;
            }
            if position > run.answered || run.unit.jobs.is_empty() {
                break;
            }
            let (result, timing, failed) = match logged {
                Logged::Value(value) if timed => match Timing::split_from(&value) {
                    Some((bytes, timing)) => (Ok(bytes.to_vec()), timing, false),
                    None => break,
                },
                Logged::Value(value) => (Ok(value), Timing::default(), false),
                Logged::Outcome(bytes) => {
                    match supervisor_worker::codec::decode::<(TaskOutcome, Timing)>(&bytes) {
                        Ok((outcome, timing)) => {
                            let failed =
                                !matches!(outcome, TaskOutcome::Returned { error: None, .. });
                            (outcome_to_result(task, pid, outcome), timing, failed)
                        }
                        Err(_) => break,
                    }
                }
            };
            // The call that passed its time limit is settled as timed out, as its
            // answer would be (`on_message`), unless its own timing shows it ended
            // before the limit was enforced. It finished, so it is not run again
            // (before: a retried call that finished during its stop's grace was
            // delivered from the log as a success).
            let (result, failed) = match run.expired {
                Some(expired) if position > expired => break,
                Some(expired)
                    if position == expired
                        && !(timing.start_ns != 0
                            && timing.start_ns.saturating_add(timing.duration_ns)
                                < run.expired_at_ns) =>
                {
                    let timed_out: crate::error::Error = ErrorKind::TimedOut {
                        task: task.to_string(),
                        pid,
                        limit: run
                            .unit
                            .jobs
                            .first()
                            .and_then(|j| j.limit_under(self.cfg.task_timeout))
                            .unwrap_or_default(),
                    }
                    .into();
                    (Err(timed_out), true)
                }
                _ => (result, failed),
            };
            let job = run.unit.jobs.remove(0);
            if failed {
                self.failed += 1;
            } else {
                self.done += 1;
            }
            let meta = JobMeta {
                pid,
                attempts: job.retried + 1,
                started: (timing.start_ns != 0).then(|| clocks.wall(timing.start_ns)),
                duration: Duration::from_nanos(timing.duration_ns),
            };
            deliveries.complete(job, result, meta);
            run.answered += 1;
            any = true;
        }
        any
    }
}
