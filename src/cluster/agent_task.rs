//! One task on an agent: wait for its submitter, run it on the local pool, publish
//! its result, then acknowledge the task message (see [`super::agent`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, AckKind};
use serde_bytes::ByteBuf;

use super::agent::{Shared, RESULT_HEADROOM};
use super::liveness::Liveness;
use super::result_batch::Published;
use super::stream::{self, refused_subject};
use super::wire::{self, retryable, Failure, Outcome, Task, TaskResult};
use crate::error::ErrorKind;

/// A run's task times on this agent: total nanoseconds, count.
pub(super) type Timing = Arc<(AtomicU64, AtomicU64)>;

pub(super) async fn run_task(
    shared: Arc<Shared>,
    message: jetstream::Message,
    ack_wait: Duration,
    permit: tokio::sync::OwnedSemaphorePermit,
    timing: Timing,
    mut liveness: Liveness,
) {
    let delivery = message.info().map_or(1, |i| i.delivered.max(1) as u32);
    if wire::version_of(message.headers.as_ref()) != Some(wire::version()) {
        // Of another version of supervisor: its submitter hears why (see
        // `wire_subject`) and gives the run up. The task is handed back, not ended:
        // ending it would tell the submitter too, without the host (as an agent of a
        // build before versions does), and might come first.
        if let Some(run) = message.subject.as_str().strip_prefix("sv.task.") {
            let _ = shared
                .client
                .publish_with_headers(
                    stream::wire_subject(run),
                    wire::headers(Some(&shared.host)),
                    bytes::Bytes::new(),
                )
                .await;
        }
        let _ = message
            .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
            .await;
        return;
    }
    let task: Task = match supervisor_worker::codec::decode(&message.payload) {
        Ok(task) => task,
        Err(_) => {
            // Not ours to read: no agent can.
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let every = (ack_wait / 3).max(Duration::from_millis(100));
    // Nothing starts while the submitter is silent; its tasks wait here (kept alive)
    // until it answers again or is taken for gone.
    let answering = loop {
        tokio::select! {
            answering = liveness.answering() => break answering,
            () = tokio::time::sleep(every) => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    };
    if !answering {
        if liveness.winding_down() {
            // Never started, and never to start: not delivered again.
            let _ = message.ack_with(AckKind::Term).await;
        }
        return;
    }
    let started = SystemTime::now();
    let clock = Instant::now();
    let (outcome, pid, mut last) = if task.command && !shared.allow_commands {
        // Only from a run that put a command among tasks that are not (an agent
        // without --allow-commands never pulls a command-mode run's tasks).
        (Outcome::CommandsRefused, 0, true)
    } else if let Some(reason) = shared
        .refuse
        .as_ref()
        .and_then(|f| f(&task.task, &task.arg))
    {
        (Outcome::Refused(reason), 0, true)
    } else {
        let call = shared
            .pool
            .start_encoded(&task.task, task.arg.to_vec(), task.timeout);
        let id = call.id;
        let mut job = call;
        // The submitter stops its run (`--halt now`, a signal): the call is stopped
        // through the pool's own stop path (SIGTERM to its worker's group, the grace,
        // SIGKILL) and reported as stopped.
        let mut stop_asked = false;
        let ran = loop {
            tokio::select! {
                ran = &mut job => break ran,
                () = tokio::time::sleep(every) => {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
                () = liveness.stopping(), if !stop_asked => {
                    stop_asked = true;
                    shared.pool.stop_call(id);
                }
            }
        };
        let (result, pid) = ran;
        if stop_asked {
            if matches!(&result, Err(e) if matches!(e.kind(), ErrorKind::Cancelled { .. })) {
                // The pool had not started it: never started, not run again.
                let _ = message.ack_with(AckKind::Term).await;
                return;
            }
            let _ = stopped_result(&shared, &task, pid, delivery, started, clock).await;
            drop(permit);
            let _ = message.ack().await;
            return;
        }
        timing
            .0
            .fetch_add(clock.elapsed().as_nanos() as u64, Ordering::Relaxed);
        timing.1.fetch_add(1, Ordering::Relaxed);
        let deliveries_left = delivery < task.max_deliver;
        match result {
            Ok(value) => {
                let again = task.retry_errors
                    && deliveries_left
                    && shared
                        .failed_when
                        .as_ref()
                        .is_some_and(|f| f(&task.task, &value));
                if again {
                    // A failed run with runs left: a note, and the server delivers it
                    // again (the local pool's retry_errors).
                    (Outcome::Failed(Failure::run_failed()), pid, false)
                } else {
                    let value = match &shared.finish {
                        Some(finish) => finish(&task.task, value),
                        None => value,
                    };
                    (Outcome::Value(ByteBuf::from(value)), pid, true)
                }
            }
            Err(e) => {
                let again = retryable(&e) && deliveries_left;
                (Outcome::Failed(Failure::of(&e)), pid, !again)
            }
        }
    };
    if shared.stop.stopped() {
        // Stopped under it: the server delivers it again.
        return;
    }
    match &outcome {
        Outcome::Value(_) => shared.done.fetch_add(1, Ordering::Relaxed),
        _ => shared.failed.fetch_add(1, Ordering::Relaxed),
    };
    let result = run_report(
        &shared,
        &task,
        pid,
        delivery,
        (started, clock),
        outcome,
        last,
    );
    let Ok(mut bytes) = supervisor_worker::codec::encode(&result) else {
        return;
    };
    // A result the server would refuse, again and again: say so, in one final result
    // that fits (before, the publish failed quietly and the task ran again).
    let limit = shared
        .client
        .server_info()
        .max_payload
        .saturating_sub(RESULT_HEADROOM);
    if bytes.len() > limit {
        let e = crate::Error::from(ErrorKind::TooLarge {
            kind: "NATS message (a task's result)",
            requested: bytes.len() as u64,
            limit: limit as u64,
        });
        let Ok(encoded) = supervisor_worker::codec::encode(&result.failed(&e)) else {
            return;
        };
        bytes = encoded;
        last = true;
    }
    // The result first, confirmed by the server (in one message with the results
    // of the run ready at the same moment); then the ack (or, for a run with
    // deliveries left, a nak: the server delivers it again).
    match shared.results.publish(&task.run, bytes).await {
        Published::Stored => {}
        // No answer in time (the server away): it is delivered again.
        Published::Lost => return,
        Published::Refused(reason) => {
            // Refused (the result stream or the store is full): it would be refused
            // on every delivery, so the submitter is told directly, once, and the
            // task is done.
            let e = crate::Error::from(ErrorKind::ServerRefused {
                what: format!("a result of task `{}` in {}", task.task, stream::RESULTS),
                reason,
            });
            let Ok(encoded) = supervisor_worker::codec::encode(&result.failed(&e)) else {
                return;
            };
            let told = tokio::time::timeout(
                Duration::from_secs(5),
                shared.client.request_with_headers(
                    refused_subject(&task.run),
                    wire::headers(Some(&shared.host)),
                    encoded.into(),
                ),
            )
            .await;
            if !matches!(told, Ok(Ok(_))) {
                return;
            }
            last = true;
        }
    }
    drop(permit);
    let _ = if last {
        message.ack().await
    } else {
        message.ack_with(AckKind::Nak(None)).await
    };
}

/// The report of one run of `task` on this host, started at `started` (wall clock
/// and monotonic, for its duration), ending now.
fn run_report(
    shared: &Shared,
    task: &Task,
    pid: u32,
    delivery: u32,
    (started, clock): (SystemTime, Instant),
    outcome: Outcome,
    last: bool,
) -> TaskResult {
    TaskResult {
        run: task.run.clone(),
        seq: task.seq,
        host: shared.host.clone(),
        pid,
        delivery,
        started_ns: started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        duration_ns: clock.elapsed().as_nanos() as u64,
        outcome,
        last,
    }
}

/// Publishes a stopped task's report (its value or error, whatever the stop made of
/// it, is dropped: the submitter stopped the run), confirmed by the server.
async fn stopped_result(
    shared: &Shared,
    task: &Task,
    pid: u32,
    delivery: u32,
    started: SystemTime,
    clock: Instant,
) -> Result<(), ()> {
    let result = run_report(
        shared,
        task,
        pid,
        delivery,
        (started, clock),
        Outcome::Stopped,
        true,
    );
    let bytes = supervisor_worker::codec::encode(&result).map_err(|_| ())?;
    match shared.results.publish(&task.run, bytes).await {
        Published::Stored => Ok(()),
        _ => Err(()),
    }
}
