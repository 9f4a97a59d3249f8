//! What travels through the server: a [`Task`] on `sv.task.<run>`, a [`TaskResult`]
//! on `sv.result.<run>`, both encoded with the crate's one codec
//! (`supervisor_worker::codec`, bincode).

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::error::{Error, ErrorKind};

/// The header that names the wire version of a task or results message.
pub(crate) const VERSION_HEADER: &str = "Sv-Wire";

/// The header that names the host of an agent's results message, or of its word that
/// it cannot read a run's tasks.
pub(crate) const HOST_HEADER: &str = "Sv-Host";

/// This build's wire version: raised with every change to [`Task`], [`TaskResult`] or
/// the framing of results, or to what the CLI's tasks carry in them (3: the CLI's
/// built-in jobs and outputs in their compact form, `cli::task_wire`). Messages of
/// builds before versions carry no header.
const VERSION: u32 = 3;

/// The wire version this process speaks: [`VERSION`], or for the tests of a
/// mixed-version cluster, `SUPERVISOR_WIRE_VERSION` (not for users; undocumented
/// outside docs/ARCHITECTURE.md).
pub(crate) fn version() -> u32 {
    static OURS: std::sync::LazyLock<u32> = std::sync::LazyLock::new(|| {
        std::env::var("SUPERVISOR_WIRE_VERSION")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(VERSION)
    });
    *OURS
}

/// Headers that say this process's wire version (and host, if given).
pub(crate) fn headers(host: Option<&str>) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(VERSION_HEADER, version().to_string().as_str());
    if let Some(host) = host {
        h.insert(HOST_HEADER, host);
    }
    h
}

/// The wire version a message's headers name (`None`: no such header, as from a build
/// before versions, or one that is not a number).
pub(crate) fn version_of(headers: Option<&async_nats::HeaderMap>) -> Option<u32> {
    headers?.get(VERSION_HEADER)?.as_str().parse().ok()
}

/// The host a message's headers name, if any.
pub(crate) fn host_of(headers: Option<&async_nats::HeaderMap>) -> Option<String> {
    Some(headers?.get(HOST_HEADER)?.as_str().to_string())
}

/// The error of a run that met a message of another wire version.
pub(crate) fn mismatch(host: Option<String>, theirs: Option<u32>) -> Error {
    ErrorKind::WireMismatch {
        host,
        theirs,
        ours: version(),
    }
    .into()
}

/// One input of a run, as the submitter publishes it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Task {
    /// The run's id (the subject's last token).
    pub run: String,
    /// The input's position in the run, from 0.
    pub seq: u64,
    /// The registered task's name.
    pub task: String,
    /// The argument, encoded by the codec.
    pub arg: ByteBuf,
    /// The task runs a command (an agent without `--allow-commands` refuses it).
    pub command: bool,
    /// The run's delivery limit: the agent publishes a final failure on this delivery
    /// instead of letting the server drop the task.
    pub max_deliver: u32,
    /// A run that failed (the task returned its error: a command that exited
    /// non-zero) is run again too, within the same delivery limit (the local pool's
    /// `retry_errors`, which the CLI sets in command mode).
    pub retry_errors: bool,
    /// The run's time limit per task (`run --nats --timeout`): the agent's pool
    /// applies it to this call, and its own `--timeout` too (the shorter wins).
    pub timeout: Option<std::time::Duration>,
}

/// One run of a task, as an agent publishes it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TaskResult {
    pub run: String,
    pub seq: u64,
    /// The agent's host name.
    pub host: String,
    /// The worker's pid on that host (0 if none ran the task).
    pub pid: u32,
    /// The server's delivery count of the task message (1 on the first delivery).
    pub delivery: u32,
    /// Start of the run, nanoseconds since the epoch.
    pub started_ns: u64,
    /// How long it ran.
    pub duration_ns: u64,
    /// The value (encoded by the codec) or the error.
    pub outcome: Outcome,
    /// False for a worker death the server will deliver again (the agent did not ack
    /// it): the submitter only notes the host.
    pub last: bool,
}

impl TaskResult {
    /// This run's final result, failed with `e` instead (its value would not fit, or
    /// the server refused to store it).
    pub(crate) fn failed(&self, e: &Error) -> TaskResult {
        TaskResult {
            run: self.run.clone(),
            seq: self.seq,
            host: self.host.clone(),
            pid: self.pid,
            delivery: self.delivery,
            started_ns: self.started_ns,
            duration_ns: self.duration_ns,
            outcome: Outcome::Failed(Failure::of(e)),
            last: true,
        }
    }
}

/// A task's value or its error, as sent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome {
    Value(ByteBuf),
    Failed(Failure),
    /// The agent refuses command-mode tasks.
    CommandsRefused,
    /// The agent refuses this task (see `Agent::refuse_with`): why, and the flag
    /// that would allow it.
    Refused(String),
    /// The submitter stopped the run while the task ran, and the agent stopped it
    /// (whatever it made of the stop).
    Stopped,
}

/// An agent's error, flattened for the wire.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Failure {
    pub kind: String,
    pub message: String,
    pub signal: Option<i32>,
    pub exit_code: Option<i32>,
    pub peak_rss_kib: Option<u64>,
}

impl Failure {
    /// A note's: the run failed (its value is its error), and it runs again.
    pub(crate) fn run_failed() -> Failure {
        Failure {
            kind: "failed".to_string(),
            message: "the run failed".to_string(),
            signal: None,
            exit_code: None,
            peak_rss_kib: None,
        }
    }

    pub(crate) fn of(e: &Error) -> Failure {
        let (signal, exit_code, peak_rss_kib) = e.kind().exit_facts();
        Failure {
            kind: e.kind().word().to_string(),
            message: supervisor_worker::error_chain(e),
            signal,
            exit_code,
            peak_rss_kib,
        }
    }
}

/// Whether the server should deliver the task again after this error: its worker
/// died or it timed out (as the local pool's `retries`).
pub(crate) fn retryable(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Crashed { .. }
            | ErrorKind::Exited { .. }
            | ErrorKind::Lost { .. }
            | ErrorKind::ResultLost { .. }
            | ErrorKind::OomKilled { .. }
            | ErrorKind::TimedOut { .. }
    )
}

/// Appends one encoded [`TaskResult`] to a results message: a message on
/// `sv.result.<run>` holds one or more, each as its length (4 bytes, little endian)
/// and its bytes.
pub(crate) fn frame(message: &mut Vec<u8>, result: &[u8]) {
    message.extend_from_slice(&(result.len() as u32).to_le_bytes());
    message.extend_from_slice(result);
}

/// The framing [`frame`] adds to each result.
pub(crate) const FRAME: usize = 4;

/// The encoded results of one results message, in order; a frame cut short ends them.
pub(crate) fn frames(mut message: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (len, rest) = message.split_first_chunk::<FRAME>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let (one, rest) = (rest.get(..len)?, &rest[len..]);
        message = rest;
        Some(one)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_give_back_each_result_in_order_and_stop_at_a_cut() {
        let mut m = Vec::new();
        for r in [&b"one"[..], b"", b"three"] {
            frame(&mut m, r);
        }
        assert_eq!(frames(&m).collect::<Vec<_>>(), [&b"one"[..], b"", b"three"]);
        assert_eq!(frames(&m[..m.len() - 1]).count(), 2);
    }
}
