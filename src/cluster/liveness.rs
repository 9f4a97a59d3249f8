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
//!
//! The answer also says how the run goes: `yes`, `drain` (`--halt soon`: start
//! nothing more, running tasks finish) or `stop` (`--halt now`, a signal: start
//! nothing more and stop the running tasks). A submitter that winds its run down
//! also publishes the word once on `sv.run.<run>.stop`, which the watch hears at
//! once; the answer is what makes it stick (an agent that comes to the run later,
//! or missed the message while reconnecting, hears it on its first ask).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::defaults::{ABANDONED_AFTER, GONE_AFTER};
use futures_util::StreamExt;

use super::stream::{alive_subject, stop_subject};

/// How often an agent asks whether a run's submitter is there.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(250);

/// What the last answers said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Submitter {
    /// It answered yes.
    Answering,
    /// "No responders" since a moment (or no answer yet: nothing starts on a run
    /// before its submitter has said how it goes): nothing starts until it answers.
    Silent,
    /// Silent for the whole window: the run is abandoned.
    Gone,
    /// The run winds down (`drain`): nothing more starts, running tasks finish.
    Draining,
    /// The run stops (`stop`): nothing more starts, running tasks are stopped.
    Stopping,
}

/// What the submitter's word on its run means (see the module docs).
fn word(payload: &[u8]) -> Submitter {
    match payload {
        b"stop" => Submitter::Stopping,
        b"drain" => Submitter::Draining,
        _ => Submitter::Answering,
    }
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

    /// The submitter has said the run winds down (drain or stop): a task not started
    /// never starts.
    pub(crate) fn winding_down(&self) -> bool {
        matches!(*self.0.borrow(), Submitter::Draining | Submitter::Stopping)
    }

    /// Returns once the submitter has said the run stops (never, if it does not).
    pub(crate) async fn stopping(&mut self) {
        if self
            .0
            .wait_for(|s| *s == Submitter::Stopping)
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
    }
}

/// Starts asking after run `run`'s submitter; the returned view follows the answers
/// until the run is gone (or the view is dropped).
pub(crate) fn watch_submitter(client: async_nats::Client, run: String) -> Liveness {
    let (tx, rx) = watch::channel(Submitter::Silent);
    tokio::spawn(async move {
        // Subscribed before the first ask: a word published after the answer that
        // said yes is heard.
        let mut told = client.subscribe(stop_subject(&run)).await.ok();
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
                Ok(Ok(answer)) => {
                    silent_since = None;
                    word(&answer.payload)
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
            if tx.send(state).is_err() || matches!(state, Submitter::Gone | Submitter::Stopping) {
                return;
            }
            let heard = async {
                match told.as_mut() {
                    Some(told) => told.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(CHECK_EVERY) => {}
                Some(m) = heard => {
                    let state = word(&m.payload);
                    let stops = state == Submitter::Stopping;
                    if state != Submitter::Answering && (tx.send(state).is_err() || stops) {
                        return;
                    }
                }
            }
        }
    });
    Liveness(rx)
}
