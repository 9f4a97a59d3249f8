//! Whether a run's submitter is still there, as an agent sees it: the agent asks
//! `sv.run.<run>.alive` (core request/reply) every [`CHECK_EVERY`]; a task starts only
//! while the last answer said yes, so a SIGKILLed submitter's tasks stop starting
//! within about one check, and after [`GONE_AFTER`] of "no responders" the run is
//! taken for abandoned (its unstarted tasks are dropped).
//!
//! "No responders" is the server saying nobody listens on the subject: the
//! submitter's connection is gone. A server that is away is no answer either way. An
//! agent that has just reconnected (a server restart) may be back before the submitter
//! is: for [`ABANDONED_AFTER`] after its own reconnect it waits that long instead.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::defaults::{ABANDONED_AFTER, GONE_AFTER};
use super::stream::alive_subject;

/// How often an agent asks whether a run's submitter is there.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(250);

/// What the last answers said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Submitter {
    /// It answered (or nobody asked yet: a run is taken for alive when first seen).
    Answering,
    /// "No responders" since a moment: nothing starts until it answers again.
    Silent,
    /// Silent for the whole window: the run is abandoned.
    Gone,
}

/// The agent's view of one run's submitter, updated by [`watch_submitter`].
#[derive(Clone)]
pub(crate) struct Liveness(watch::Receiver<Submitter>);

impl Liveness {
    /// Waits while the submitter is silent; true once it answers, false if it is gone.
    pub(crate) async fn answering(&mut self) -> bool {
        let state = self.0.wait_for(|s| *s != Submitter::Silent).await;
        matches!(state.as_deref(), Ok(Submitter::Answering))
    }

    pub(crate) fn gone(&self) -> bool {
        *self.0.borrow() == Submitter::Gone
    }
}

/// Starts asking after run `run`'s submitter; the returned view follows the answers
/// until the run is gone (or the view is dropped).
pub(crate) fn watch_submitter(client: async_nats::Client, run: String) -> Liveness {
    let (tx, rx) = watch::channel(Submitter::Answering);
    tokio::spawn(async move {
        let stats = client.statistics();
        let mut connects = stats.connects.load(Ordering::Relaxed);
        let mut reconnected: Option<Instant> = None;
        let mut silent_since: Option<Instant> = None;
        loop {
            let now = stats.connects.load(Ordering::Relaxed);
            if now != connects {
                connects = now;
                reconnected = Some(Instant::now());
            }
            let asked = tokio::time::timeout(
                Duration::from_secs(2),
                client.request(alive_subject(&run), "".into()),
            )
            .await;
            let state = match asked {
                Ok(Ok(_)) => {
                    silent_since = None;
                    Submitter::Answering
                }
                Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                    let since = *silent_since.get_or_insert_with(Instant::now);
                    let window = if reconnected.is_some_and(|t| t.elapsed() < ABANDONED_AFTER) {
                        ABANDONED_AFTER
                    } else {
                        GONE_AFTER
                    };
                    if since.elapsed() >= window {
                        Submitter::Gone
                    } else {
                        Submitter::Silent
                    }
                }
                // The server is away or slow: no news.
                _ => *tx.borrow(),
            };
            if tx.send(state).is_err() || state == Submitter::Gone {
                return;
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
    });
    Liveness(rx)
}
