//! An agent's results on their way to the server: the results of a run that are ready
//! together go out in one message on `sv.result.<run>` (see `wire::frame`), so the
//! server stores, confirms and delivers one message for them instead of one each.
//! Nothing waits to fill a message on a timer: a result goes at once when fewer than
//! [`ROUNDS`] rounds of messages wait for their PubAcks; otherwise the results that
//! finish meanwhile gather for the next round, which goes when one is in. Each task still waits for the PubAck of the message that holds its result
//! before it is acknowledged, and is delivered again by the server if none comes.

use std::collections::HashMap;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::stream::{self, result_subject};
use super::wire;

/// What became of a result's publish.
#[derive(Debug, Clone)]
pub(crate) enum Published {
    /// The server stored it.
    Stored,
    /// The server refused to store it (the results stream or the store full), in its
    /// words: it would again.
    Refused(String),
    /// No answer (the server away): the task is left to be delivered again.
    Lost,
}

/// One encoded result, the run it belongs to, and where to say what became of it.
struct Ready {
    run: String,
    bytes: Vec<u8>,
    told: oneshot::Sender<Published>,
}

/// Hands results to the batcher; cheap to clone.
#[derive(Clone)]
pub(crate) struct Results(mpsc::UnboundedSender<Ready>);

/// Results in one message, at most (beside the server's max payload).
const MOST: usize = 256;

/// Rounds of messages out at once (published, their PubAcks not yet in).
const ROUNDS: usize = 2;

impl Results {
    /// Starts the batcher of `js`'s results: a message holds `limit` bytes at most.
    pub(crate) fn start(js: async_nats::jetstream::Context, limit: usize, host: &str) -> Results {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(batch(js, rx, limit, wire::headers(Some(host))));
        Results(tx)
    }

    /// Publishes one encoded result of run `run` (no bigger than the limit, framing
    /// aside) and returns once the server has stored it, or would not.
    pub(crate) async fn publish(&self, run: &str, bytes: Vec<u8>) -> Published {
        let (told, answer) = oneshot::channel();
        let ready = Ready {
            run: run.to_string(),
            bytes,
            told,
        };
        if self.0.send(ready).is_err() {
            return Published::Lost;
        }
        answer.await.unwrap_or(Published::Lost)
    }
}

async fn batch(
    js: async_nats::jetstream::Context,
    mut rx: mpsc::UnboundedReceiver<Ready>,
    limit: usize,
    headers: async_nats::HeaderMap,
) {
    let rounds = Arc::new(Semaphore::new(ROUNDS));
    loop {
        // A free round first: while both wait for their PubAcks, results gather.
        let Ok(round) = rounds.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        // Everything ready now, without waiting for more: per run, the messages and
        // whom each tells.
        let mut messages: Vec<(String, Vec<u8>, Vec<oneshot::Sender<Published>>)> = Vec::new();
        let mut open: HashMap<String, usize> = HashMap::new();
        let mut next = Some(first);
        while let Some(r) = next.take().or_else(|| rx.try_recv().ok()) {
            let at = match open.get(&r.run) {
                Some(&i)
                    if messages[i].2.len() < MOST
                        && messages[i].1.len() + wire::FRAME + r.bytes.len() <= limit =>
                {
                    i
                }
                _ => {
                    messages.push((r.run.clone(), Vec::new(), Vec::new()));
                    open.insert(r.run.clone(), messages.len() - 1);
                    messages.len() - 1
                }
            };
            let (_, message, told) = &mut messages[at];
            wire::frame(message, &r.bytes);
            told.push(r.told);
        }
        let mut sent = Vec::with_capacity(messages.len());
        for (run, message, told) in messages {
            let subject = result_subject(&run);
            let sent_one = js
                .publish_with_headers(subject, headers.clone(), message.into())
                .await;
            sent.push((sent_one, told));
        }
        // The PubAcks awaited apart; the round is free again once they are in.
        tokio::spawn(async move {
            for (sent, told) in sent {
                let published = match sent {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                };
                let outcome = match published {
                    Ok(_) => Published::Stored,
                    Err(e) => match stream::refusal(&e) {
                        Some(reason) => Published::Refused(reason),
                        None => Published::Lost,
                    },
                };
                for t in told {
                    let _ = t.send(outcome.clone());
                }
            }
            drop(round);
        });
    }
}
