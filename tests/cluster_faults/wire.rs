//! The wire: commands not marked as one, agents of another wire version or an older build.

use super::*;

/// The CLI's task input, as its `command` task decodes it in full form (field for
/// field; sent after the full form's variant number, see [`FULL_FORM`]).
#[derive(serde::Serialize)]
enum CliStream {
    Group,
}

/// The variant number of the full form of the CLI's job (`cli::task_wire`): bincode
/// writes a variant's number, then its fields, as it writes the pair `(number, fields)`.
const FULL_FORM: u32 = 1;

#[derive(serde::Serialize)]
struct CliJob {
    line: String,
    seq: u64,
    args: std::collections::BTreeMap<String, String>,
    argv: Vec<serde_bytes::ByteBuf>,
    slots: Vec<(u32, u32)>,
    stream: CliStream,
    tag: Option<serde_bytes::ByteBuf>,
    lock: Option<serde_bytes::ByteBuf>,
}

#[test]
fn a_command_not_marked_as_one_is_refused_by_an_agent_without_allow_commands() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 1, &[]);
        let marker = server.dir.join("ran");
        let script = format!("touch {}", marker.display());
        let job = CliJob {
            line: String::new(),
            seq: 1,
            args: Default::default(),
            argv: ["sh", "-c", &script]
                .iter()
                .map(|a| serde_bytes::ByteBuf::from(a.as_bytes().to_vec()))
                .collect(),
            slots: Vec::new(),
            stream: CliStream::Group,
            tag: None,
            lock: None,
        };
        // A hostile client's run of the `command` task on a built-in run's consumer,
        // which every agent pulls from: before, the agent ran the command.
        let options =
            supervisor::cluster::RemoteOptions::new(supervisor::cluster::Connect::new(url.clone()));
        let mut reports = supervisor::cluster::RemoteReports::<String, _>::start(
            options,
            "command",
            std::iter::once((FULL_FORM, job)),
        )
        .unwrap();
        let report = reports.next().expect("one report");
        let e = report.result.expect_err("refused");
        assert!(
            matches!(e.kind(), supervisor::ErrorKind::TaskRefused { .. }),
            "{e}"
        );
        assert!(e.to_string().contains("--allow-commands"), "{e}");
        drop(reports);
        assert!(!marker.exists(), "the command ran");
        drop(a);
    });
}

/// `supervisor run --nats URL --task sleep` over `0ms` lines, speaking wire version
/// `version` (the tests' stand-in for another build).
fn run_speaking(version: &str, url: &str, n: u64) -> (Option<i32>, String, Duration) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let t = std::time::Instant::now();
    let mut child = Command::new(cluster_support::BIN)
        .args(["run", "--nats", url, "--task", "sleep"])
        .env("SUPERVISOR_WIRE_VERSION", version)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("supervisor starts");
    let input = "0ms\n".repeat(n as usize);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("supervisor ends");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr, t.elapsed())
}

#[test]
fn an_agent_of_another_wire_version_fails_the_run_at_once_naming_its_host() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        // Before, a run and an agent of different builds could not read each other's
        // messages, and the run waited for ever.
        let old = Agent::start_with(&["env", "SUPERVISOR_WIRE_VERSION=1"], &url, "old", 1, &[]);
        let (code, stderr, took) = run_speaking("2", &url, 20);
        assert_eq!(code, Some(4), "{stderr}");
        assert!(
            stderr.contains(
                "the supervisor on host old speaks wire version 1, this one wire version 2: \
                 run the same version of supervisor on every host"
            ),
            "{stderr}"
        );
        assert!(took < Duration::from_secs(20), "it took {took:?}");
        drop(old);
        // And a submitter of another version than the agent's.
        let new = Agent::start(&url, "new", 1, &[]);
        let (code, stderr, _) = run_speaking("7", &url, 20);
        assert_eq!(code, Some(4), "{stderr}");
        assert!(
            stderr.contains(
                "the supervisor on host new speaks wire version 3, this one wire version 7"
            ),
            "{stderr}"
        );
        drop(new);
    });
}

#[test]
fn a_task_ended_unread_by_an_agent_of_a_build_before_wire_versions_fails_the_run() {
    use futures_util::StreamExt;
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        // Such an agent ends (`Term`) a task it cannot decode and says nothing; the
        // submitter hears of it from the server's advisory. Played here by a client
        // that takes the run up from its announcement and ends its first task.
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let nats = url.clone();
        let old = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let client = async_nats::connect(nats.as_str()).await.unwrap();
                let mut news = client.subscribe("sv.runs.new").await.unwrap();
                client.flush().await.unwrap();
                ready_tx.send(()).unwrap();
                let name = news.next().await.unwrap().payload;
                let name = String::from_utf8(name.to_vec()).unwrap();
                let js = async_nats::jetstream::new(client.clone());
                let stream = js.get_stream("SV_TASKS").await.unwrap();
                let consumer: async_nats::jetstream::consumer::PullConsumer =
                    stream.get_consumer(&name).await.unwrap();
                // The announcement comes before the run's first task is stored: a
                // `fetch` (no wait) may come back empty, so wait for a task in turns.
                let m = loop {
                    let mut batch = consumer
                        .batch()
                        .max_messages(1)
                        .expires(Duration::from_millis(500))
                        .messages()
                        .await
                        .unwrap();
                    if let Some(m) = batch.next().await {
                        break m.unwrap();
                    }
                };
                m.ack_with(async_nats::jetstream::AckKind::Term)
                    .await
                    .unwrap();
                client.flush().await.unwrap();
            });
        });
        ready.recv().unwrap();
        let (code, stderr, took) = run_speaking("2", &url, 5);
        old.join().unwrap();
        assert_eq!(code, Some(4), "{stderr}");
        assert!(
            stderr.contains(
                "an agent ended a task of this run unread (this program speaks wire version \
                 2): run the same version of supervisor on every host"
            ),
            "{stderr}"
        );
        assert!(took < Duration::from_secs(20), "it took {took:?}");
    });
}

/// The server ends a task of its own accord when the task's message leaves the stream
/// while an agent holds it (deleted by the stream's limits, or by hand; after a
/// SIGKILLed server restarts, a task acked and removed whose ack its consumer's state
/// had not stored yet), and says so in the same advisory as an agent of a build before
/// wire versions that ended a task unread, with a reason. Before, the run took it for
/// such an agent and failed with exit 4 ("an agent ended a task of this run unread"),
/// although the agent ran the task and its result came: once in CI, in tests/cluster's
/// `a_result_read_again_after_a_server_restart_is_not_a_duplicate_run`.
#[test]
fn a_task_the_server_ends_while_an_agent_runs_it_is_not_taken_for_one_ended_unread() {
    use futures_util::StreamExt;
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 1, &[]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut run = rt.block_on(async {
            let client = async_nats::connect(url.as_str()).await.unwrap();
            let mut news = client.subscribe("sv.runs.new").await.unwrap();
            client.flush().await.unwrap();
            let run = Live::start(&["run", "--nats", &url, "--task", "sleep"], b"5s\n");
            let name = news.next().await.expect("the run is announced").payload;
            let name = String::from_utf8(name.to_vec()).unwrap();
            let subject = format!("sv.task.{}", name.trim_start_matches("run-"));
            let mut ended = client
                .subscribe(format!(
                    "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.SV_TASKS.{name}"
                ))
                .await
                .unwrap();
            client.flush().await.unwrap();
            let js = async_nats::jetstream::new(client.clone());
            let tasks = js.get_stream("SV_TASKS").await.unwrap();
            // Agent a holds the run's one task (its 5 s run acks it at the end): the
            // server's count of the consumer's messages out and not acknowledged says
            // so.
            while tasks.consumer_info(&name).await.unwrap().num_ack_pending != 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let task = tasks
                .get_last_raw_message_by_subject(&subject)
                .await
                .expect("the task is still stored: not acknowledged yet");
            assert!(tasks.delete_message(task.sequence).await.unwrap());
            // The server ended it while agent a runs it, in the advisory the run hears.
            let advisory = tokio::time::timeout(Duration::from_secs(10), ended.next())
                .await
                .expect("the server's advisory within 10 s")
                .expect("the subscription lives");
            let advisory: serde_json::Value = serde_json::from_slice(&advisory.payload).unwrap();
            assert_eq!(advisory["stream_seq"], task.sequence, "{advisory}");
            let reason = advisory["reason"].as_str().unwrap_or_default();
            assert!(!reason.is_empty(), "{advisory}");
            run
        });
        drop(rt);
        // The run goes on: agent a ran the task, and its result came.
        let code = run.end();
        assert_eq!(code, Some(0), "{:?}", run.stderr);
        assert_eq!(run.stdout.len(), 1, "{:?}", run.stdout);
        drop(a);
    });
}
