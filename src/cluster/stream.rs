//! The server side: stream and consumer names and settings, made idempotently by
//! whoever comes first (submitter or agent).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use super::connect::cluster;
use crate::error::Error;

/// The work-queue stream of every run's tasks.
pub(crate) const TASKS: &str = "SV_TASKS";
/// The stream of every run's results.
pub(crate) const RESULTS: &str = "SV_RESULTS";
/// The key-value bucket of the agents' status (`supervisor workers`).
pub(crate) const AGENTS: &str = "sv_agents";

pub(crate) fn task_subject(run: &str) -> String {
    format!("sv.task.{run}")
}

pub(crate) fn result_subject(run: &str) -> String {
    format!("sv.result.{run}")
}

/// Where a submitter announces a new run (core publish, the task consumer's name), so
/// that agents start pulling from it at once; their listing of the consumers is the
/// fallback for an announcement missed (an agent reconnecting, or started later).
pub(crate) const ANNOUNCE: &str = "sv.runs.new";

/// Where a submitter answers "is this run still wanted?".
pub(crate) fn alive_subject(run: &str) -> String {
    format!("sv.run.{run}.alive")
}

/// Where a submitter tells its agents, once, that its run winds down (`drain` or
/// `stop`; its answers on [`alive_subject`] say it from then on).
pub(crate) fn stop_subject(run: &str) -> String {
    format!("sv.run.{run}.stop")
}

/// Where an agent tells a submitter of a result the server refused to store (a core
/// request: a full store takes no more messages).
pub(crate) fn refused_subject(run: &str) -> String {
    format!("sv.run.{run}.refused")
}

/// Where an agent tells a submitter that it cannot read the run's tasks: they are of
/// another wire version (core NATS; the headers say the agent's version and host, the
/// payload is empty, so that any version can read it).
pub(crate) fn wire_subject(run: &str) -> String {
    format!("sv.run.{run}.wire")
}

/// The run's task consumer, shared by every agent that may run its tasks: `run-<run>`
/// for built-in tasks, `cmd-<run>` for command-mode tasks, which only agents started
/// with `--allow-commands` pull from (the others never see them, so they cannot take
/// one from an agent that may run it).
pub(crate) fn task_consumer(run: &str, command: bool) -> String {
    if command {
        format!("cmd-{run}")
    } else {
        format!("run-{run}")
    }
}

/// The run and whether it runs commands, from a task consumer's name (none: not a
/// run's consumer).
pub(crate) fn run_of_consumer(name: &str) -> Option<(&str, bool)> {
    if let Some(run) = name.strip_prefix("cmd-") {
        Some((run, true))
    } else {
        name.strip_prefix("run-").map(|run| (run, false))
    }
}

/// The run's result consumer, the submitter's.
pub(crate) fn result_consumer(run: &str) -> String {
    format!("res-{run}")
}

/// The server's refusal to store a message (a stream or the store full, an account
/// limit...), in its words; none for an error that may pass (no ack in time: the
/// server away), after which publishing again is right.
pub(crate) fn refusal(e: &jetstream::context::PublishError) -> Option<String> {
    use jetstream::context::PublishErrorKind as K;
    match e.kind() {
        K::Other => std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<jetstream::Error>())
            .map(|s| s.to_string()),
        K::MaxPayloadExceeded => Some(e.to_string()),
        _ => None,
    }
}

/// Makes (or finds) both streams. File storage: a restarted server loses nothing.
pub(crate) async fn streams(
    js: &jetstream::Context,
) -> Result<(stream::Stream, stream::Stream), Error> {
    let tasks = js
        .get_or_create_stream(stream::Config {
            name: TASKS.to_string(),
            subjects: vec!["sv.task.>".to_string()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            // A run nobody finishes is gone after a day whatever happens.
            max_age: Duration::from_secs(24 * 3600),
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| cluster(format!("cannot create the stream {TASKS}"), e))?;
    let results = js
        .get_or_create_stream(stream::Config {
            name: RESULTS.to_string(),
            subjects: vec!["sv.result.>".to_string()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(3600),
            ..Default::default()
        })
        .await
        .map_err(|e| cluster(format!("cannot create the stream {RESULTS}"), e))?;
    Ok((tasks, results))
}

/// The run's task consumer: durable, explicit acks, `ack_wait`, the delivery limit
/// `max_deliver`, removed by the server an hour after the last agent pulled from it.
pub(crate) fn task_consumer_config(
    run: &str,
    command: bool,
    ack_wait: Duration,
    max_deliver: u32,
) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(task_consumer(run, command)),
        filter_subject: task_subject(run),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait,
        max_deliver: i64::from(max_deliver),
        max_ack_pending: 100_000,
        inactive_threshold: Duration::from_secs(3600),
        ..Default::default()
    }
}

/// The submitter's result consumer: durable, acks cumulative (`AckPolicy::All`).
pub(crate) fn result_consumer_config(run: &str) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(result_consumer(run)),
        filter_subject: result_subject(run),
        // One reader, in order: an ack covers every result before it.
        ack_policy: consumer::AckPolicy::All,
        ack_wait: Duration::from_secs(30),
        inactive_threshold: Duration::from_secs(3600),
        ..Default::default()
    }
}
