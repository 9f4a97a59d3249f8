//! A submitter's watch over its run, so that it never waits silently: a notice when
//! tasks wait and no agent has taken one for [`IDLE_NOTICE`], and the end of the run
//! when the server has been unreachable for the run's server timeout or the run's
//! consumer is gone (agents took the submitter for gone while it was away).

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::ConsumerInfoErrorKind};

use super::defaults::IDLE_NOTICE;
use crate::error::{Error, ErrorKind};

/// How often the watch looks.
const EVERY: Duration = Duration::from_secs(1);

/// What the watch found.
pub(crate) enum Alarm {
    /// Said on the submitter's stderr (or its notice callback); the run goes on.
    Notice(String),
    /// The run cannot go on.
    Fatal(Error),
}

/// What the watch needs to know of its run.
pub(crate) struct Watched {
    pub client: async_nats::Client,
    pub tasks: jetstream::stream::Stream,
    pub consumer: String,
    /// The server, without credentials, for messages.
    pub url: String,
    pub command: bool,
    pub server_timeout: Duration,
}

/// Watches until it raises a fatal alarm or `alarm` is refused (the run ended).
pub(crate) async fn watch(run: Watched, alarm: impl Fn(Alarm) -> bool) {
    let mut away_since: Option<Instant> = None;
    let mut taken = (0u64, Instant::now());
    let mut noticed = false;
    let mut missing = 0;
    loop {
        tokio::time::sleep(EVERY).await;
        if run.client.connection_state() != async_nats::connection::State::Connected {
            let since = *away_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= run.server_timeout {
                let e = ErrorKind::ServerLost {
                    url: run.url.clone(),
                    waited: since.elapsed(),
                };
                alarm(Alarm::Fatal(e.into()));
                return;
            }
            continue;
        }
        away_since = None;
        let info = match run.tasks.consumer_info(&run.consumer).await {
            Ok(info) => info,
            Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {
                // Twice in a row: not a server still recovering its state.
                missing += 1;
                if missing >= 2 {
                    let e = ErrorKind::Cluster {
                        what: format!(
                            "the run's consumer {} is gone from the server (the agents took this submitter for gone while it was away, and dropped its tasks)",
                            run.consumer
                        ),
                        source: None,
                    };
                    alarm(Alarm::Fatal(e.into()));
                    return;
                }
                continue;
            }
            Err(_) => continue,
        };
        missing = 0;
        let delivered = info.delivered.consumer_sequence;
        if delivered != taken.0 || info.num_pending == 0 || info.num_ack_pending > 0 {
            taken = (delivered, Instant::now());
            noticed = false;
            continue;
        }
        if !noticed && taken.1.elapsed() >= IDLE_NOTICE {
            noticed = true;
            let secs = taken.1.elapsed().as_secs();
            let line = if run.command {
                format!(
                    "no agent that may run commands has taken a task for {secs}s; command-mode tasks run only on agents started with --allow-commands: start one with `supervisor worker --nats {} --allow-commands`",
                    run.url
                )
            } else {
                format!(
                    "no agent has taken a task for {secs}s; start one with `supervisor worker --nats {}`",
                    run.url
                )
            };
            if !alarm(Alarm::Notice(line)) {
                return;
            }
        }
    }
}
