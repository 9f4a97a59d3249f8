//! What the run does with each result as it arrives, before its turn to be printed:
//! the job log line (TSV or JSON), `--halt`'s tally and `--timeout N%`'s median.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use supervisor::{JobMeta, Pool};

use super::super::halt::{Halt, Tally, When};
use super::super::replace::Template;
use super::super::specs;
use super::super::sys;
use super::super::tasks::{Failure, Outcome};
use super::jobs::Inputs;
use super::stop::{
    stopped_error, RequestStop, StoppedByRun, STOP_HALT, STOP_HALT_SOON, STOP_OUTPUT_ERROR,
    STOP_POOL_BROKEN,
};

/// A job log open for writing.
pub(super) type Log = BufWriter<File>;

/// What [`Arrivals::arrive`] reads and changes.
pub(super) struct Arrivals {
    /// Tasks that did not succeed and arrived once the run was stopping (a signal,
    /// `--halt now`, an output error): the run stopped them, whatever their command
    /// made of the SIGTERM (exited on it, killed by it, or the worker stopped before
    /// it could say). They are "stopped", and out of the job log (`--resume` runs them).
    pub stopped_by_run: Rc<RefCell<StoppedByRun>>,
    /// Halting acts on each result as it arrives, not when its turn to be printed comes.
    pub tally: Rc<RefCell<Tally>>,
    pub stop: Arc<AtomicI32>,
    pub request_stop: RequestStop,
    pub pool: Option<Arc<Pool>>,
    /// The last input's number read.
    pub read: Rc<std::cell::Cell<u64>>,
    pub inputs: Rc<RefCell<Inputs>>,
    /// The first error writing a job log.
    pub log_error: Rc<RefCell<Option<std::io::Error>>>,
    /// The job logs (one of them, or none), shared with [`JobLogs::flush`] and the
    /// duplicate callback of a remote run.
    pub tsv_log: Rc<RefCell<Option<Log>>>,
    pub json_log: Rc<RefCell<Option<Log>>>,
    /// Each line flushed as it is written (a remote run: see [`JobLogs`]).
    pub flush_each: bool,
    pub peaks: PeakRss,
    pub task: String,
    pub template: Option<Template>,
    pub of_median: Option<specs::MedianLimit>,
    pub halt: Option<Halt>,
}

impl Arrivals {
    /// Task `index`'s result arrived from `host`.
    pub(super) fn arrive(
        &mut self,
        index: usize,
        result: &Result<Outcome, supervisor::Error>,
        meta: &JobMeta,
        host: &str,
    ) {
        let Arrivals {
            stopped_by_run,
            tally,
            stop,
            request_stop,
            pool,
            read,
            inputs,
            log_error,
            tsv_log,
            json_log,
            flush_each,
            peaks,
            task,
            template,
            of_median,
            halt,
        } = self;
        let seq = inputs
            .borrow()
            .get(index)
            .map_or(index as u64 + 1, |p| p.seq);
        let why = stop.load(Ordering::SeqCst);
        // A broken pool's own errors say what happened to its tasks.
        let stopped_now = why != 0
            && why != STOP_HALT_SOON
            && why != STOP_POOL_BROKEN
            && !matches!(result, Ok(Ok(_)))
            && !matches!(result, Err(e) if super::super::report::kind_of(e) == "cancelled");
        // A command killed by the stop of its worker (SIGTERM, SIGKILL after the grace)
        // because the pool broke under the run: stopped with the pool, as the library
        // says of a built-in task whose worker it stopped.
        let killed = matches!(
            result,
            Ok(Err(Failure::Failed {
                signal: Some(libc::SIGTERM | libc::SIGKILL),
                ..
            }))
        );
        let broke = match pool {
            Some(pool) if (why == 0 || why == STOP_POOL_BROKEN) && killed => pool.broken(),
            _ => None,
        };
        let as_stopped;
        let result = if stopped_now || broke.is_some() {
            stopped_by_run.borrow_mut().insert(index, broke.clone());
            as_stopped = Err(stopped_error(task, meta.pid, broke));
            &as_stopped
        } else {
            result
        };
        // `--timeout N%`: the limit follows the median run time of the tasks
        // that succeeded, for the running ones too.
        if let (Some(median), Ok(Ok(_))) = (of_median.as_mut(), result) {
            if let (Some(limit), Some(pool)) = (median.add(meta.duration), &pool) {
                pool.set_task_timeout(Some(limit));
            }
        }
        let mut json_log = json_log.borrow_mut();
        if let Some(log) = json_log.as_mut() {
            // Only this host's workers can be looked up in its `/proc` (an agent's pid is
            // another machine's, or another namespace's, process).
            let local = host == ":";
            let peak = (local && meta.pid != 0)
                .then(|| peaks.get(meta.pid, meta))
                .flatten();
            let written = {
                let inputs = inputs.borrow();
                let pending = inputs.get(index);
                let command = pending.and_then(|p| p.command_line(template.as_ref(), seq, result));
                super::super::report::write_joblog_json(
                    log,
                    seq,
                    pending.map_or(&[][..], |p| &p.input),
                    command.as_deref(),
                    result,
                    meta,
                    peak,
                    (host != ":").then_some(host),
                )
                .and_then(|()| log.write_all(b"\n"))
                .and_then(|()| if *flush_each { log.flush() } else { Ok(()) })
            };
            if let Err(e) = written {
                log_error.borrow_mut().get_or_insert(e);
                *json_log = None;
                request_stop(STOP_OUTPUT_ERROR);
            }
        }
        drop(json_log);
        let mut tsv_log = tsv_log.borrow_mut();
        if let Some(log) = tsv_log.as_mut() {
            let line = {
                let inputs = inputs.borrow();
                let pending = inputs.get(index);
                let line = pending.and_then(|p| p.command_line(template.as_ref(), seq, result));
                let command: [&[u8]; 3] = match (&line, pending) {
                    (Some(line), _) => [line, b"", b""],
                    (None, Some(p)) => [task.as_bytes(), b" ", &p.input],
                    (None, None) => [b"", b"", b""],
                };
                super::super::report::joblog_row(seq, result, meta, &command, host).map(|row| {
                    let mut bytes = Vec::with_capacity(64);
                    row.write_into(&mut bytes);
                    bytes.push(b'\n');
                    bytes
                })
            };
            if let Some(line) = line {
                let written =
                    log.write_all(&line)
                        .and_then(|()| if *flush_each { log.flush() } else { Ok(()) });
                if let Err(e) = written {
                    log_error.borrow_mut().get_or_insert(e);
                    *tsv_log = None;
                    request_stop(STOP_OUTPUT_ERROR);
                }
            }
        }
        drop(tsv_log);
        let Some(rule) = halt else { return };
        let mut t = tally.borrow_mut();
        match result {
            Ok(Ok(_)) => t.succeeded += 1,
            Ok(Err(_)) => t.failed += 1,
            // Never started or stopped (by the run, or with a broken pool's workers).
            Err(e) if matches!(super::super::report::kind_of(e), "cancelled" | "stopped") => {}
            Err(_) => t.failed += 1,
        }
        t.total = read.get();
        if stop.load(Ordering::SeqCst) == 0 && rule.reached(&t) {
            match rule.when {
                When::Now => request_stop(STOP_HALT),
                When::Soon => {
                    let _ = stop.compare_exchange(
                        0,
                        STOP_HALT_SOON,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                    if let Some(pool) = &pool {
                        pool.cancel_pending();
                    }
                }
            }
        }
    }
}

/// A task that ran twice (delivered again after its host went quiet): the first
/// result counts, the JSON job log notes the other when it arrives.
pub(super) fn on_duplicate(
    json_log: Rc<RefCell<Option<Log>>>,
    log_error: Rc<RefCell<Option<std::io::Error>>>,
    request_stop: RequestStop,
) -> impl FnMut(usize, &JobMeta, &str) {
    move |index, meta, host| {
        let mut json_log = json_log.borrow_mut();
        let Some(log) = json_log.as_mut() else { return };
        let line = crate::cli::report::joblog_duplicate(index as u64 + 1, meta, host);
        if let Err(e) = write_line(log, &line) {
            log_error.borrow_mut().get_or_insert(e);
            *json_log = None;
            request_stop(STOP_OUTPUT_ERROR);
        }
    }
}

/// Workers' peak RSS for the job log, read from `/proc` at most every 50 ms per worker
/// (a read per record cost 30 µs: 3 s of a run of 100,000 tiny tasks), by the clock of
/// the tasks' ends (no clock read per lookup: it was most of one). The worker of the
/// last lookup is kept apart: results come in bursts from one worker, and most
/// lookups then need no hashing.
#[derive(Default)]
pub(super) struct PeakRss {
    /// The pid last looked up, when it was read and what it read.
    last: Option<(u32, SystemTime, Option<u64>)>,
    /// The other workers'.
    others: HashMap<u32, (SystemTime, Option<u64>)>,
}

impl PeakRss {
    /// How long a read stands.
    const FRESH: std::time::Duration = std::time::Duration::from_millis(50);

    /// Worker `pid`'s peak for the task of `meta`, which it ran.
    fn get(&mut self, pid: u32, meta: &JobMeta) -> Option<u64> {
        // When the task ended: now for one that never started.
        let now = meta
            .started
            .and_then(|s| s.checked_add(meta.duration))
            .unwrap_or_else(SystemTime::now);
        self.get_with(pid, now, sys::peak_rss_kib)
    }

    /// [`PeakRss::get`] at `now`, reading with `read`.
    fn get_with(
        &mut self,
        pid: u32,
        now: SystemTime,
        read: impl FnOnce(u32) -> Option<u64>,
    ) -> Option<u64> {
        let cached = match self.last {
            Some((last, at, kib)) if last == pid => Some((at, kib)),
            _ => {
                if let Some((last, at, kib)) = self.last.take() {
                    if self.others.len() > 4096 {
                        self.others.clear();
                    }
                    self.others.insert(last, (at, kib));
                }
                self.others.remove(&pid)
            }
        };
        let (at, kib) = match cached {
            // A clock set back makes the value stale.
            Some((at, kib)) if now.duration_since(at).is_ok_and(|d| d < Self::FRESH) => (at, kib),
            _ => (now, read(pid)),
        };
        self.last = Some((pid, at, kib));
        kib
    }
}

/// Writes one JSON job-log line, flushed (a SIGKILLed run keeps the lines of the
/// tasks that ended).
fn write_line(log: &mut Log, line: &serde_json::Value) -> std::io::Result<()> {
    serde_json::to_writer(&mut *log, line)?;
    log.write_all(b"\n")?;
    log.flush()
}

/// The job logs' lines reach the file once per burst of results, not once per line (a
/// system call per task was a third of a run of tiny tasks): [`JobLogs::flush`] runs
/// before the run waits for a result that is not in (`Reports::on_wait`) and before
/// each write of its stdout, so a line is in the file before the run sleeps, and
/// before the output of its task or of any later one is printed. A SIGKILLed run keeps
/// the lines of the tasks whose results it had taken but for those of the burst it was
/// handling, which it had not printed. Command mode (whose commands' side effects make
/// `--resume` matter, and whose tasks take a fork and exec each) and a remote run
/// (which has no such hook) flush each line.
#[derive(Clone)]
pub(super) struct JobLogs {
    pub logs: [Rc<RefCell<Option<Log>>>; 2],
    pub log_error: Rc<RefCell<Option<std::io::Error>>>,
    pub request_stop: RequestStop,
}

impl JobLogs {
    /// Writes out what the job logs buffer; a log that fails is dropped and the run
    /// stops, as when one of its lines cannot be written.
    pub(super) fn flush(&self) {
        for log in &self.logs {
            let mut log = log.borrow_mut();
            if let Some(Err(e)) = log.as_mut().map(Write::flush) {
                self.log_error.borrow_mut().get_or_insert(e);
                *log = None;
                (self.request_stop)(STOP_OUTPUT_ERROR);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use super::PeakRss;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_796_000_000_000 + ms)
    }

    /// Each worker's value is read once per 50 ms of its tasks' ends, whatever order
    /// the lookups come in; a clock set back reads again.
    #[test]
    fn peak_rss_is_read_once_per_worker_while_fresh() {
        let mut peaks = PeakRss::default();
        let mut reads = Vec::new();
        for (pid, ms) in [
            (7, 0),
            (7, 1),
            (8, 2),
            (7, 3),
            (9, 4),
            (8, 5),
            (8, 49),
            (7, 49),
        ] {
            let got = peaks.get_with(pid, at(ms), |p| {
                reads.push(p);
                Some(u64::from(p) * 10)
            });
            assert_eq!(got, Some(u64::from(pid) * 10));
        }
        assert_eq!(reads, [7, 8, 9]);
        let mut again = Vec::new();
        for (pid, ms) in [(8, 52), (8, 53), (7, 60), (9, 20), (9, 21)] {
            peaks.get_with(pid, at(ms), |p| {
                again.push(p);
                None
            });
        }
        assert_eq!(again, [8, 7]);
        assert_eq!(peaks.get_with(8, at(60), |_| Some(1)), None, "fresh again");
        assert_eq!(peaks.get_with(8, at(10), |_| Some(1)), Some(1), "set back");
    }

    /// What a lookup costs, a worker's burst after another's, against the lookup as
    /// it was (run with `cargo test --release --bin supervisor -- --ignored
    /// --nocapture peak_rss_cost`).
    #[test]
    #[ignore = "a measurement, not a check"]
    fn peak_rss_cost() {
        const LOOKUPS: u32 = 1_000_000;
        let pid = |i: u32| 40_000 + (i / 300) % 2;
        let mut peaks = PeakRss::default();
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for i in 0..LOOKUPS {
                let end = at(u64::from(i) / 100);
                std::hint::black_box(peaks.get_with(pid(i), end, |_| Some(5796)));
            }
            best = best.min(t.elapsed().as_nanos() as f64 / f64::from(LOOKUPS));
        }
        let mut map: HashMap<u32, (Instant, Option<u64>)> = HashMap::new();
        let mut before = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for i in 0..LOOKUPS {
                let now = Instant::now();
                let kib = match map.get(&pid(i)) {
                    Some((at, kib)) if now.duration_since(*at) < PeakRss::FRESH => *kib,
                    _ => {
                        map.insert(pid(i), (now, Some(5796)));
                        Some(5796)
                    }
                };
                std::hint::black_box(kib);
            }
            before = before.min(t.elapsed().as_nanos() as f64 / f64::from(LOOKUPS));
        }
        eprintln!("peak_rss_cost: {best:.1} ns per lookup, {before:.1} ns as it was");
    }
}
