//! How a run takes each event: a result (kept, a duplicate, or a note of a lost
//! host), a server's refusal, an exhausted delivery limit, or a watchdog's alarm.

use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};

use serde::{de::DeserializeOwned, Serialize};
use supervisor_worker::codec;

use super::super::stream;
use super::super::watchdog::Alarm;
use super::super::wind_down::Wind;
use super::super::wire::{self, Outcome};
use super::{Event, RemoteReports};
use crate::error::{known_word, Error, ErrorKind};
use crate::exit::Signal;
use crate::pool::{JobMeta, Report};

impl<R: DeserializeOwned, I: Iterator> RemoteReports<R, I>
where
    I::Item: Serialize,
{
    pub(super) fn take(&mut self, event: Event) {
        let late = match self.winding {
            // Stopped by an earlier result or a signal: nothing after counts, until
            // the agents have been told; then only what they stopped (or, draining,
            // what they finished).
            None => self.stopping(),
            Some(Wind::Stop) => {
                !matches!(&event, Event::Result(r) if matches!(r.outcome, Outcome::Stopped))
            }
            Some(Wind::Drain) => false,
        };
        if late {
            return;
        }
        let r = match event {
            Event::Result(r) => r,
            Event::Alarm(Alarm::Notice(line)) => {
                (self.notice)(&line);
                return;
            }
            Event::Unread if self.winding.is_some() => return,
            Event::Unread => {
                self.take(Event::Alarm(Alarm::Fatal(wire::mismatch(None, None))));
                return;
            }
            Event::Alarm(Alarm::Fatal(e)) => {
                if let Some(f) = &mut self.fatal {
                    f(&e);
                }
                self.failure = Some(e);
                self.stop.store(true, Ordering::SeqCst);
                return;
            }
            Event::Refused { seq, reason } => {
                if seq < self.submitted as u64 && self.done.insert(seq) {
                    let e = ErrorKind::ServerRefused {
                        what: format!("a task `{}` in {}", self.task, stream::TASKS),
                        reason,
                    }
                    .into();
                    self.deliver(seq as usize, Err(e), JobMeta::default(), String::new());
                }
                return;
            }
            Event::Exhausted { seq, deliveries } => {
                if seq < self.submitted as u64 && self.done.insert(seq) {
                    let e = ErrorKind::DeliveryLimit {
                        task: self.task.clone(),
                        deliveries,
                        hosts: self.notes.remove(&seq).unwrap_or_default(),
                        reason: "no agent finished it (each one died or hung while it ran)"
                            .to_string(),
                        signal: None,
                        exit_code: None,
                        kind: "lost",
                    }
                    .into();
                    self.deliver(seq as usize, Err(e), JobMeta::default(), String::new());
                }
                return;
            }
        };
        if r.run != self.run || r.seq >= self.submitted as u64 {
            return;
        }
        let meta = JobMeta {
            pid: r.pid,
            attempts: r.delivery,
            started: UNIX_EPOCH.checked_add(Duration::from_nanos(r.started_ns)),
            duration: Duration::from_nanos(r.duration_ns),
        };
        if self.done.contains(&r.seq) {
            if self.kept.get(&r.seq) == Some(&(r.pid, r.started_ns)) {
                return;
            }
            if let Some(f) = &mut self.duplicate {
                f(r.seq as usize, &meta, &r.host);
            }
            return;
        }
        if !r.last {
            self.notes.entry(r.seq).or_default().push(r.host);
            return;
        }
        self.done.insert(r.seq);
        self.kept.insert(r.seq, (r.pid, r.started_ns));
        let size = match &r.outcome {
            Outcome::Value(bytes) => bytes.len(),
            _ => 0,
        };
        let result = match r.outcome {
            Outcome::Value(bytes) => {
                self.notes.remove(&r.seq);
                codec::decode(&bytes).map_err(|source| {
                    ErrorKind::DecodeResult {
                        task: self.task.clone(),
                        pid: r.pid,
                        source,
                    }
                    .into()
                })
            }
            Outcome::Stopped => Err(ErrorKind::Stopped {
                task: self.task.clone(),
                pid: r.pid,
            }
            .into()),
            Outcome::Refused(reason) => Err(ErrorKind::TaskRefused {
                host: r.host.clone(),
                task: self.task.clone(),
                reason,
            }
            .into()),
            Outcome::CommandsRefused => Err(ErrorKind::CommandsRefused {
                host: r.host.clone(),
            }
            .into()),
            Outcome::Failed(f) => {
                let mut hosts = self.notes.remove(&r.seq).unwrap_or_default();
                if hosts.is_empty() {
                    Err(ErrorKind::Remote {
                        host: r.host.clone(),
                        pid: r.pid,
                        kind: f.kind,
                        message: f.message,
                        signal: f.signal,
                        exit_code: f.exit_code,
                        peak_rss_kib: f.peak_rss_kib,
                    }
                    .into())
                } else {
                    hosts.push(r.host.clone());
                    let signal = f.signal.map(Signal::from_number);
                    let reason = match signal {
                        Some(s) => format!("its worker was killed by {s}"),
                        None => f.message,
                    };
                    Err(ErrorKind::DeliveryLimit {
                        task: self.task.clone(),
                        deliveries: r.delivery,
                        hosts,
                        reason,
                        signal,
                        exit_code: f.exit_code,
                        kind: known_word(&f.kind),
                    }
                    .into())
                }
            }
        };
        self.deliver(r.seq as usize, result, meta, r.host);
        if self.options.ordered && size > 0 {
            self.sizes.insert(r.seq as usize, size);
            self.buffered_bytes += size;
        }
    }

    pub(super) fn deliver(
        &mut self,
        index: usize,
        result: Result<R, Error>,
        meta: JobMeta,
        host: String,
    ) {
        if let Some(f) = &mut self.arrived {
            f(index, &result, &meta, &host);
        }
        let report = Report {
            index,
            result,
            meta,
        };
        if self.options.ordered {
            self.buffer.insert(index, (report, host));
        } else {
            self.ready.push_back((report, host));
        }
    }
}
