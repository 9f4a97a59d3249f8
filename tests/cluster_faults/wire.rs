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
