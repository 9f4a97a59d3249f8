//! A worker's answers: each call's outcome with its own timing, checked against the
//! unit it runs before anything is delivered.

use std::sync::Arc;
use std::time::Duration;

use supervisor_worker::protocol::{FromChild, TaskOutcome, Timing};

use super::super::job::{Deliveries, Job, JobMeta, PackedResults, Unit};
use super::super::ports::{Io, WorkerLink};
use super::state::{Dispatcher, INIT_SEQ};
use super::worker::Stop;
use crate::error::{BrokenReason, ErrorKind, Violation};
use crate::outcome::outcome_to_result;

/// A worker's answer to part of a unit: one outcome per call, or a chunk's packed
/// results.
enum Answer {
    Outcomes(Vec<TaskOutcome>, Vec<Timing>),
    Packed {
        lens: Vec<u32>,
        data: Vec<u8>,
        others: Vec<(u32, TaskOutcome)>,
        /// Each call's own (a timed chunk's; else empty).
        timings: Vec<Timing>,
    },
}

impl Answer {
    /// Keeps the answers of the first `keep` calls only.
    fn truncate(&mut self, keep: usize) {
        match self {
            Answer::Outcomes(outcomes, timings) => {
                outcomes.truncate(keep);
                timings.truncate(keep);
            }
            Answer::Packed {
                lens,
                data,
                others,
                timings,
            } => {
                lens.truncate(keep);
                data.truncate(lens.iter().map(|l| *l as usize).sum());
                others.retain(|(pos, _)| (*pos as usize) < keep);
                timings.truncate(keep);
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Answer::Outcomes(outcomes, _) => outcomes.len(),
            Answer::Packed { lens, .. } => lens.len(),
        }
    }
}

impl<X: Io> Dispatcher<X> {
    pub(super) fn on_message(&mut self, id: u64, msg: Result<FromChild, Violation>) {
        let Some(seat) = self.seat_of(id) else { return };
        let (seq, from, answer) = match msg {
            Ok(FromChild::Done {
                id,
                outcome,
                timing,
            }) => (id, 0, Answer::Outcomes(vec![outcome], vec![timing])),
            Ok(FromChild::BatchDone {
                first_id,
                from,
                outcomes,
                timings,
            }) => {
                if timings.len() != outcomes.len() {
                    return self.protocol_error(seat, Violation::Timings);
                }
                (first_id, from, Answer::Outcomes(outcomes, timings))
            }
            Ok(FromChild::PackedDone {
                first_id,
                from,
                lens,
                data,
                others,
                timings,
            }) => {
                if let Err(violation) = check_packed(&lens, data.len(), &others) {
                    return self.protocol_error(seat, violation);
                }
                (
                    first_id,
                    from,
                    Answer::Packed {
                        lens,
                        data: data.into_vec(),
                        others,
                        timings,
                    },
                )
            }
            Ok(FromChild::SetupFailed(e)) => {
                let pid = self.seats[seat].worker.as_ref().map_or(0, |w| w.link.pid());
                self.break_pool(BrokenReason::Setup {
                    pid,
                    step: e.step,
                    errno: e.errno,
                });
                return;
            }
            Ok(other) => {
                let got = other.kind();
                return self.protocol_error(seat, Violation::Unexpected { got });
            }
            Err(violation) => return self.protocol_error(seat, violation),
        };
        let worker = self.seats[seat].worker.as_mut().expect("seat_of found it");
        if worker.initializing {
            let outcome = match answer {
                Answer::Outcomes(outcomes, _) if seq == INIT_SEQ && outcomes.len() == 1 => {
                    outcomes.into_iter().next()
                }
                _ => return self.protocol_error(seat, Violation::WrongTask { seq }),
            };
            worker.initializing = false;
            let pid = worker.link.pid();
            self.on_initialized(pid, outcome);
            return;
        }
        let fits = worker.running.as_ref().is_some_and(|run| {
            run.seq == seq
                && run.answered == from
                && answer.len() as u64 + u64::from(from) <= u64::from(run.limit)
                && match (&run.unit.chunk, &answer) {
                    // A timed chunk's answer times each call; an untimed one's none.
                    (Some(chunk), Answer::Packed { lens, timings, .. }) => {
                        timings.len() == if chunk.timed { lens.len() } else { 0 }
                    }
                    (None, Answer::Outcomes(..)) => true,
                    _ => false,
                }
        });
        if !fits {
            if answer.len() == 0 {
                // The end of a unit its worker gave back, said after the parent had
                // seen the give-back on the page (and settled the unit) already.
                return;
            }
            let violation = match &worker.running {
                Some(run) => Violation::Misplaced {
                    seq,
                    from: u64::from(from),
                    to: u64::from(from) + answer.len() as u64,
                    running: run.seq,
                    answered: run.answered,
                    limit: run.limit,
                },
                None => Violation::WrongTask { seq },
            };
            return self.protocol_error(seat, violation);
        }
        let clocks = self.io.clocks();
        let pid = worker.link.pid();
        let run = worker.running.as_mut().expect("checked to fit");
        let task = run.unit.task;
        let mut answer = answer;
        if let Some(expired) = run.expired {
            // The call that passed its limit is settled as timed out, whatever it says
            // (it may end because it is being stopped), unless its own timing shows it
            // ended before the limit was enforced (its answer was on its way).
            let at = expired.saturating_sub(run.answered) as usize;
            let timing = match &answer {
                Answer::Outcomes(_, timings) => timings.get(at).copied(),
                Answer::Packed { timings, .. } if !timings.is_empty() => timings.get(at).copied(),
                Answer::Packed { .. } => (at < answer.len()).then(Timing::default),
            };
            let in_time = timing.is_some_and(|t| {
                t.start_ns != 0 && t.start_ns.saturating_add(t.duration_ns) < run.expired_at_ns
            });
            if !in_time && timing.is_some() {
                // It finished while being stopped: its report keeps its own timing
                // (the page's start may since show the worker's failed claim of the
                // next call), and it is not run again.
                run.expired_answer = timing;
                run.expired_succeeded = match &answer {
                    Answer::Outcomes(outcomes, _) => matches!(
                        outcomes.get(at),
                        Some(TaskOutcome::Returned { error: None, .. })
                    ),
                    Answer::Packed { others, .. } => {
                        !others.iter().any(|(pos, _)| *pos as usize == at)
                    }
                };
            }
            answer.truncate(if in_time { at + 1 } else { at });
            if answer.len() == 0 {
                return;
            }
        }
        let n = answer.len();
        if n == 0 {
            // A unit its worker gave back, whose answers all came before: it ended
            // where the page says (see `look_after_task`).
            self.look_after_task(id);
            return;
        }
        let mut spent = Duration::ZERO;
        let mut deliveries = Deliveries::default();
        // A call it ran went over `memory_limit` (its own answer says so): its memory's
        // high-water mark stays over, so it is recycled (`WorkerConfig::memory_limit`).
        let mut over_memory = false;
        match answer {
            Answer::Outcomes(outcomes, timings) => {
                let jobs: Vec<Job> = run.unit.jobs.drain(..n).collect();
                let mut again = Vec::new();
                for ((mut job, outcome), timing) in jobs.into_iter().zip(outcomes).zip(timings) {
                    let erred = matches!(outcome, TaskOutcome::Returned { error: Some(_), .. });
                    let exceeded = matches!(outcome, TaskOutcome::MemoryExceeded { .. });
                    over_memory |= exceeded;
                    // Over the memory limit: retried as a call killed for it is.
                    if (exceeded || erred && self.cfg.retry_errors)
                        && job.retried < self.cfg.retries
                        && !self.terminating
                        && self.broken.is_none()
                    {
                        job.retried += 1;
                        spent += Duration::from_nanos(timing.duration_ns);
                        again.push(job);
                        continue;
                    }
                    let failed = !matches!(outcome, TaskOutcome::Returned { error: None, .. });
                    if failed {
                        self.failed += 1;
                    } else {
                        self.done += 1;
                    }
                    let duration = Duration::from_nanos(timing.duration_ns);
                    spent += duration;
                    let meta = JobMeta {
                        pid,
                        attempts: job.retried + 1,
                        started: Some(clocks.wall(timing.start_ns)),
                        duration,
                    };
                    deliveries.complete(job, outcome_to_result(task, pid, outcome), meta);
                }
                if !again.is_empty() {
                    // Run again before anything queued, as a retried timeout is.
                    self.queue.push_front(Unit::new(task, again));
                }
            }
            Answer::Packed {
                lens,
                data,
                others,
                timings,
            } => {
                // Checked on arrival: each of `others` is a distinct failed call.
                let failed = others.len() as u64;
                over_memory = others
                    .iter()
                    .any(|(_, o)| matches!(o, TaskOutcome::MemoryExceeded { .. }));
                self.failed += failed;
                self.done += n as u64 - failed;
                // A timed chunk's calls each have their own record (checked to fit).
                let each: Vec<JobMeta> = timings
                    .iter()
                    .map(|t| JobMeta {
                        pid,
                        attempts: 1,
                        started: Some(clocks.wall(t.start_ns)),
                        duration: Duration::from_nanos(t.duration_ns),
                    })
                    .collect();
                spent = if each.is_empty() {
                    clocks.now.saturating_duration_since(run.sent)
                } else {
                    each.iter().map(|m| m.duration).sum()
                };
                if let Some(chunk) = run.unit.chunk.as_mut() {
                    let others = others
                        .into_iter()
                        .map(|(i, o)| (i, outcome_to_result(task, pid, o)))
                        .collect();
                    let meta = JobMeta {
                        pid,
                        attempts: 1,
                        started: None,
                        duration: spent / n.max(1) as u32,
                    };
                    chunk.deliver(PackedResults {
                        first_index: chunk.next_index(),
                        lens,
                        data,
                        others,
                        meta,
                        each,
                    });
                }
            }
        }
        deliveries.flush();
        if over_memory {
            worker.retiring = true;
        }
        run.answered += n as u32;
        worker.tasks_done += n as u64;
        if n > 0 {
            let per_job = spent / n as u32;
            let average = self.job_time.entry(task).or_insert(per_job);
            *average = (*average * 7 + per_job * 3) / 10;
            self.storm.progress();
        }
        if run.answered >= run.limit {
            worker.running = None;
            if self
                .cfg
                .max_tasks_per_child
                .is_some_and(|max| worker.tasks_done >= max)
            {
                // Recycle: no more work for this one; it exits once we close its link.
                worker.link.close();
            }
        }
        self.look_after_task(id);
    }

    fn on_initialized(&mut self, pid: u32, outcome: Option<TaskOutcome>) {
        let task = self.cfg.initializer.as_ref().map_or("", |(t, _)| *t);
        match outcome {
            Some(TaskOutcome::Returned { error: None, .. }) | None => {}
            Some(TaskOutcome::Returned {
                error: Some(message),
                ..
            }) => {
                self.break_pool(BrokenReason::InitializerReturned {
                    task: task.to_string(),
                    pid,
                    message,
                });
            }
            Some(outcome) => {
                if let Err(e) = outcome_to_result(task, pid, outcome) {
                    self.break_pool(BrokenReason::Initializer(Arc::new(e)));
                }
            }
        }
    }

    pub(super) fn protocol_error(&mut self, seat: usize, violation: Violation) {
        let grace = self.cfg.escalation();
        let now = self.io.clocks().now;
        if let Some(worker) = self.seats[seat].worker.as_mut() {
            let pid = worker.link.pid();
            if let Some(run) = worker.running.take() {
                run.unit.fail(move |_| ErrorKind::Protocol {
                    pid,
                    violation: violation.clone(),
                });
            }
            worker.stop(Stop::Shutdown, grace, now);
        }
    }
}

/// A worker's packed answer must describe its data exactly: the values' lengths add
/// up to the data, and the failed calls are listed once each, in order, at positions
/// that have no value.
fn check_packed(lens: &[u32], data: usize, others: &[(u32, TaskOutcome)]) -> Result<(), Violation> {
    let total: u64 = lens.iter().map(|l| u64::from(*l)).sum();
    if total != data as u64 {
        return Err(Violation::ChunkLength {
            total,
            data: data as u64,
        });
    }
    let mut next = 0usize;
    for (position, outcome) in others {
        let pos = *position as usize;
        if pos < next || lens.get(pos).is_none_or(|l| *l != 0) {
            return Err(Violation::ChunkOrder {
                position: *position,
            });
        }
        if matches!(outcome, TaskOutcome::Returned { error: None, .. }) {
            return Err(Violation::ChunkPlain {
                position: *position,
            });
        }
        next = pos + 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panicked() -> TaskOutcome {
        TaskOutcome::Panicked {
            message: "boom".into(),
            location: None,
            backtrace: None,
        }
    }

    /// A worker's packed answer that does not describe its data exactly is refused
    /// (the worker is then stopped as a protocol offender), so a failure can never be
    /// read as a value.
    #[test]
    fn packed_answers_must_describe_their_data_exactly() {
        assert!(check_packed(&[2, 0, 1], 3, &[(1, panicked())]).is_ok());
        assert!(check_packed(&[], 0, &[]).is_ok());
        // Out of order, repeated, out of range, or where a value is.
        assert!(check_packed(&[0, 0, 0], 0, &[(2, panicked()), (1, panicked())]).is_err());
        assert!(check_packed(&[0, 0], 0, &[(1, panicked()), (1, panicked())]).is_err());
        assert!(check_packed(&[0], 0, &[(1, panicked())]).is_err());
        assert!(check_packed(&[1, 0], 1, &[(0, panicked())]).is_err());
        let plain = TaskOutcome::Returned {
            value: vec![1],
            error: None,
        };
        assert!(check_packed(&[0], 0, &[(0, plain)]).is_err());
        // Lengths that do not add up to the data.
        assert!(check_packed(&[2, 2], 3, &[]).is_err());
        assert!(check_packed(&[u32::MAX, u32::MAX], 10, &[]).is_err());
    }
}
