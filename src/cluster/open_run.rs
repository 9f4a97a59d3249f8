//! Opening a run on the server (its consumers, the subscriptions a submitter answers
//! on) and the submitter's background tasks: publishing the tasks, reading the
//! results, the server's advisories, the agents' requests, the run's watch.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use futures_util::{FutureExt, StreamExt};
use supervisor_worker::codec;

use super::connect::cluster;
use super::defaults::HOST_LOSSES;
use super::stream;
use super::submit::{Event, Published, RemoteOptions};
use super::watchdog::{self, Alarm, Watched};
use super::wind_down::Answer;
use super::wire::{self, TaskResult};
use crate::error::Error;

/// Makes run `run`'s consumers and starts its background tasks; they send what they
/// hear to `tx` and publish what comes on `prx` (seq, encoded task).
pub(crate) async fn open(
    options: &RemoteOptions,
    run: &str,
    tx: mpsc::Sender<Event>,
    prx: tokio::sync::mpsc::UnboundedReceiver<(u64, Vec<u8>)>,
    said: Answer,
) -> Result<(jetstream::Context, Vec<tokio::task::JoinHandle<()>>, usize), Error> {
    let run = run.to_string();
    let client = options.connect.client("supervisor run").await?;
    let js = jetstream::new(client.clone());
    let (tasks, results) = stream::streams(&js).await?;
    // Answering before an agent can see the run: one that asked first would
    // take it for abandoned.
    let mut alive = client
        .subscribe(stream::alive_subject(&run))
        .await
        .map_err(|e| cluster("cannot subscribe", e))?;
    let mut refused = client
        .subscribe(stream::refused_subject(&run))
        .await
        .map_err(|e| cluster("cannot subscribe", e))?;
    let mut other_version = client
        .subscribe(stream::wire_subject(&run))
        .await
        .map_err(|e| cluster("cannot subscribe", e))?;
    let consumer = stream::task_consumer(&run, options.command);
    tasks
        .create_consumer(stream::task_consumer_config(
            &run,
            options.command,
            options.ack_wait,
            options.retries + 1 + HOST_LOSSES,
        ))
        .await
        .map_err(|e| cluster("cannot create the run's task consumer", e))?;
    let reader: PullConsumer = results
        .create_consumer(stream::result_consumer_config(&run))
        .await
        .map_err(|e| cluster("cannot create the run's result consumer", e))?;
    // Agents serving already take the run up at once (else at their next listing).
    let _ = client
        .publish(stream::ANNOUNCE, consumer.clone().into())
        .await;
    let answer = client.clone();
    let published: Published = Arc::default();
    let mut exhausted = client
        .subscribe(format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{consumer}",
            stream::TASKS,
        ))
        .await
        .map_err(|e| cluster("cannot subscribe", e))?;
    // A task ended unread (`AckKind::Term`): by an agent of a build before wire
    // versions, unless the run winds down (agents end the tasks they will not start
    // then; `Event::Unread`), or the server ended it itself (`ended_by_an_agent`).
    let mut unread = client
        .subscribe(format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{}.{consumer}",
            stream::TASKS,
        ))
        .await
        .map_err(|e| cluster("cannot subscribe", e))?;
    let (seqs, events) = (published.clone(), tx.clone());
    let (mismatched, unread_told) = (tx.clone(), tx.clone());
    let (told, answer_refused) = (tx.clone(), client.clone());
    let alarms = tx.clone();
    let watched = Watched {
        client: client.clone(),
        tasks: tasks.clone(),
        consumer,
        url: options.connect.shown(),
        command: options.command,
        server_timeout: options.server_timeout,
    };
    let helpers = vec![
        tokio::spawn(async move {
            if let Some(m) = other_version.next().await {
                let e = wire::mismatch(
                    wire::host_of(m.headers.as_ref()),
                    wire::version_of(m.headers.as_ref()),
                );
                let _ = mismatched.send(Event::Alarm(Alarm::Fatal(e)));
            }
        }),
        tokio::spawn(async move {
            while let Some(m) = unread.next().await {
                if !ended_by_an_agent(&m.payload) {
                    continue;
                }
                if unread_told.send(Event::Unread).is_err() {
                    return;
                }
            }
        }),
        tokio::spawn(async move {
            while let Some(m) = refused.next().await {
                if wire::version_of(m.headers.as_ref()) != Some(wire::version()) {
                    let e = wire::mismatch(
                        wire::host_of(m.headers.as_ref()),
                        wire::version_of(m.headers.as_ref()),
                    );
                    if told.send(Event::Alarm(Alarm::Fatal(e))).is_err() {
                        return;
                    }
                    continue;
                }
                if let Ok(result) = codec::decode::<TaskResult>(&m.payload) {
                    if told.send(Event::Result(result)).is_err() {
                        return;
                    }
                }
                if let Some(reply) = m.reply {
                    let _ = answer_refused.publish(reply, "taken".into()).await;
                }
            }
        }),
        tokio::spawn(watchdog::watch(watched, move |a| {
            alarms.send(Event::Alarm(a)).is_ok()
        })),
        tokio::spawn(async move {
            while let Some(m) = alive.next().await {
                if let Some(reply) = m.reply {
                    let _ = answer.publish(reply, said.word().into()).await;
                }
            }
        }),
        tokio::spawn(async move {
            while let Some(m) = exhausted.next().await {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&m.payload) else {
                    continue;
                };
                let stream_seq = v["stream_seq"].as_u64().unwrap_or(0);
                let deliveries = v["deliveries"].as_u64().unwrap_or(0) as u32;
                let seq = seqs.lock().ok().and_then(|m| m.get(&stream_seq).copied());
                if let Some(seq) = seq {
                    let _ = events.send(Event::Exhausted { seq, deliveries });
                }
            }
        }),
        tokio::spawn(read_results(
            results,
            reader,
            stream::result_consumer(&run),
            tx.clone(),
        )),
        tokio::spawn(publish_tasks(js.clone(), run.clone(), prx, published, tx)),
    ];
    let max_payload = client.server_info().max_payload;
    Ok((js, helpers, max_payload))
}

/// Whether a `MSG_TERMINATED` advisory tells of a task an agent ended, not of one the
/// server ended itself. An agent's `Term` is a bare `+TERM` (async-nats sends no
/// reason; so did every build before wire versions), and the advisory has no reason.
/// The server ends a task of its own accord when its message leaves the stream while an
/// agent holds it, and says why (since nats-server 2.10.4): deleted by the stream's
/// limits or by hand, or, after a SIGKILLed server restarts, a task acked and removed
/// whose ack the consumer's state had not stored yet ("Unacknowledged message was
/// deleted"). The agent that holds such a task still runs it and publishes its result.
/// An advisory that cannot be read counts as an agent's, as before.
fn ended_by_an_agent(advisory: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(advisory)
        .map_or(true, |v| v["reason"].as_str().is_none_or(str::is_empty))
}

/// Publishes the run's tasks in order, the server's acks awaited in the background
/// (pipelined); a task whose ack does not come is published again under the same
/// message id, which the stream's duplicate window drops if the first one landed.
async fn publish_tasks(
    js: jetstream::Context,
    run: String,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(u64, Vec<u8>)>,
    published: Published,
    events: mpsc::Sender<Event>,
) {
    let subject = stream::task_subject(&run);
    while let Some((seq, bytes)) = rx.recv().await {
        let id = format!("{run}.{seq}");
        let bytes = bytes::Bytes::from(bytes);
        let mut headers = wire::headers(None);
        headers.insert("Nats-Msg-Id", id.as_str());
        let first = js
            .publish_with_headers(subject.clone(), headers.clone(), bytes.clone())
            .await;
        let (js, subject, published) = (js.clone(), subject.clone(), published.clone());
        let events = events.clone();
        tokio::spawn(async move {
            let mut acked = match first {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            loop {
                match acked {
                    Ok(ack) => {
                        if let Ok(mut map) = published.lock() {
                            map.insert(ack.sequence, seq);
                        }
                        return;
                    }
                    // Refused (the stream or the store is full): it would be again.
                    Err(e) => {
                        if let Some(reason) = stream::refusal(&e) {
                            let _ = events.send(Event::Refused { seq, reason });
                            return;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                acked = match js
                    .publish_with_headers(subject.clone(), headers.clone(), bytes.clone())
                    .await
                {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                };
            }
        });
    }
}

/// Results read before one ack covers them all, at most.
const ACK_EVERY: usize = 256;

/// Reads the run's results and hands them to the caller's thread; after the server
/// went away, takes up the durable consumer again where it was.
async fn read_results(
    results: jetstream::stream::Stream,
    mut consumer: PullConsumer,
    name: String,
    tx: mpsc::Sender<Event>,
) {
    loop {
        if let Ok(mut messages) = consumer.messages().await {
            // The consumer acks all up to the one acked (`AckPolicy::All`): one ack
            // for what came in together, sent before waiting for more, and at least
            // every `ACK_EVERY` results.
            let mut unacked: Option<jetstream::Message> = None;
            let mut since = 0;
            loop {
                let next = match messages.next().now_or_never() {
                    Some(next) => next,
                    None => {
                        if let Some(m) = unacked.take() {
                            let _ = m.ack().await;
                            since = 0;
                        }
                        messages.next().await
                    }
                };
                let Some(message) = next else { break };
                let Ok(message) = message else { continue };
                let theirs = wire::version_of(message.headers.as_ref());
                if theirs != Some(wire::version()) {
                    let host = wire::host_of(message.headers.as_ref());
                    let e = wire::mismatch(host, theirs);
                    if tx.send(Event::Alarm(Alarm::Fatal(e))).is_err() {
                        return;
                    }
                    continue;
                }
                // One or more results (see `result_batch`).
                for one in wire::frames(&message.payload) {
                    since += 1;
                    if let Ok(result) = codec::decode::<TaskResult>(one) {
                        if tx.send(Event::Result(result)).is_err() {
                            return;
                        }
                    }
                }
                if since >= ACK_EVERY {
                    let _ = message.ack().await;
                    since = 0;
                } else {
                    unacked = Some(message);
                }
            }
            if let Some(m) = unacked.take() {
                let _ = m.ack().await;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Ok(c) = results.get_consumer(&name).await {
            consumer = c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ended_by_an_agent;

    #[test]
    fn only_a_task_ended_without_a_reason_counts_as_ended_unread_by_an_agent() {
        let advisory = |reason: &str| {
            format!(
                r#"{{"type":"io.nats.jetstream.advisory.v1.terminated","stream":"SV_TASKS",
                "consumer":"run-1","consumer_seq":3,"stream_seq":3,"deliveries":1{reason}}}"#
            )
        };
        // An agent's bare `+TERM` (the server omits an empty reason).
        assert!(ended_by_an_agent(advisory("").as_bytes()));
        assert!(ended_by_an_agent(advisory(r#","reason":"""#).as_bytes()));
        // The server's own: after a SIGKILLed server restarted, and by the limits.
        for reason in [
            "Unacknowledged message was deleted",
            "Message deleted by stream limits",
        ] {
            let text = advisory(&format!(r#","reason":"{reason}""#));
            assert!(!ended_by_an_agent(text.as_bytes()), "{text}");
        }
        assert!(ended_by_an_agent(b"not json"));
    }
}
