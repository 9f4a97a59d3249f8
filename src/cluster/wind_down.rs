//! A run that ends before its tasks do (`--halt`, a signal, [`super::RemoteReports`]'s
//! stopper): the submitter tells its agents how (`drain`: start nothing more, running
//! tasks finish; `stop`: start nothing more, stop the running tasks), on
//! `sv.run.<run>.stop` once and in every answer on `sv.run.<run>.alive` after, and
//! waits for their reports. The server says when they are all in: every task the
//! agents took is acknowledged (its report published first) or terminated (never
//! started), and the submitter's result consumer has handed over everything.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

use super::stream;

/// How the run goes, as the submitter answers its agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wind {
    /// Start nothing more; running tasks finish and report as usual.
    Drain,
    /// Start nothing more; running tasks are stopped and reported as stopped.
    Stop,
}

/// The submitter's answer on `sv.run.<run>.alive`, shared with its responder.
#[derive(Clone, Default)]
pub(crate) struct Answer(Arc<AtomicU8>);

impl Answer {
    pub(crate) fn set(&self, wind: Wind) {
        let v = match wind {
            Wind::Drain => 1,
            Wind::Stop => 2,
        };
        self.0.store(v, Ordering::SeqCst);
    }

    /// The word an agent hears (see `liveness`).
    pub(crate) fn word(&self) -> &'static str {
        match self.0.load(Ordering::SeqCst) {
            1 => "drain",
            2 => "stop",
            _ => "yes",
        }
    }
}

/// Tells the agents serving run `run` at once (the answers say it from now on).
pub(crate) async fn tell(client: &async_nats::Client, run: &str, answer: &Answer) {
    let word = answer.word();
    let told = async {
        let _ = client.publish(stream::stop_subject(run), word.into()).await;
        let _ = client.flush().await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), told).await;
}

/// Whether every task the agents took has been reported or given back, and every
/// report handed to the submitter (false if the server does not say in time).
pub(crate) async fn all_reported(js: &jetstream::Context, run: &str, command: bool) -> bool {
    let look = async {
        let tasks = js.get_stream(stream::TASKS).await.ok()?;
        let info = tasks
            .consumer_info(stream::task_consumer(run, command))
            .await
            .ok()?;
        if info.num_ack_pending > 0 {
            return Some(false);
        }
        let results = js.get_stream(stream::RESULTS).await.ok()?;
        let info = results
            .consumer_info(stream::result_consumer(run))
            .await
            .ok()?;
        Some(info.num_pending == 0 && info.num_ack_pending == 0)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), look).await,
        Ok(Some(true))
    )
}
