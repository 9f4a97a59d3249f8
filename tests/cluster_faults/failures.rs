//! Retries, failure kinds and --halt as locally, a SIGKILLed submitter, a full store, bad credentials, an agent started before its server, a duplicate's job log.

use super::*;

#[test]
fn retries_run_a_failing_command_again_on_the_cluster_as_locally() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 1, &["--allow-commands"]);
        let count = server.dir.join("runs");
        let cmd = format!("echo run >> {}; exit 3", count.display());
        let mut attempts = Vec::new();
        for nats in [None, Some(url.as_str())] {
            let log = server.dir.join("joblog.json");
            let mut args = vec!["run"];
            if let Some(url) = nats {
                args.extend(["--nats", url]);
            }
            let log_arg = log.to_str().unwrap().to_string();
            args.extend([
                "--retries",
                "2",
                "--joblog",
                &log_arg,
                "--joblog-format",
                "json",
                "--",
                "sh",
                "-c",
                &cmd,
            ]);
            let out = supervisor(&args, b"1\n");
            assert_eq!(out.code, Some(1), "{}", out.stderr);
            let runs = std::fs::read_to_string(&count).unwrap();
            assert_eq!(runs.lines().count(), 3, "{nats:?}: 1 run and 2 retries");
            std::fs::remove_file(&count).unwrap();
            let line = joblog(&log).remove(0);
            attempts.push((line["attempts"].clone(), line["exit_code"].clone()));
        }
        assert_eq!(attempts[0], attempts[1]);
        assert_eq!(attempts[0], (3.into(), 3.into()));
        drop(a);
    });
}

/// kind, signal and exit code of each record, the same locally and remotely.
fn failures(json_lines: &str) -> Vec<(String, String, String)> {
    json_lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| {
            let e = if v["error"].is_null() {
                &v
            } else {
                &v["error"]
            };
            let kind = v["outcome"].as_str().or(e["kind"].as_str());
            (
                kind.unwrap_or("ok").to_string(),
                e["signal"].to_string(),
                e["exit_code"].to_string(),
            )
        })
        .collect()
}

#[test]
fn task_failure_kinds_signals_and_exit_codes_are_the_local_ones() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 1, &[]);
        let input = b"panic\nsegfault\nexit 3\nok\n";
        let mut seen = Vec::new();
        for nats in [None, Some(url.as_str())] {
            let json_log = server.dir.join("joblog.json");
            let tsv_log = server.dir.join("joblog.tsv");
            let mut base = vec!["run"];
            if let Some(url) = nats {
                base.extend(["--nats", url]);
            }
            let json_arg = json_log.to_str().unwrap().to_string();
            let tsv_arg = tsv_log.to_str().unwrap().to_string();
            let mut args = base.clone();
            args.extend(["--format", "json", "--task", "fault", "--joblog", &json_arg]);
            args.extend(["--joblog-format", "json"]);
            let out = supervisor(&args, input);
            assert_eq!(out.code, Some(1), "{}", out.stderr);
            let records = failures(&String::from_utf8_lossy(&out.stdout));
            let mut logged = failures(&std::fs::read_to_string(&json_log).unwrap());
            logged.sort();
            let mut args = base;
            args.extend(["--task", "fault", "--joblog", &tsv_arg]);
            let out = supervisor(&args, input);
            assert_eq!(out.code, Some(1), "{}", out.stderr);
            // Seq, then exit value and signal (parallel's columns 7 and 8).
            let mut tsv: Vec<(String, String, String)> = std::fs::read_to_string(&tsv_log)
                .unwrap()
                .lines()
                .skip(1)
                .map(|l| {
                    let c: Vec<&str> = l.split('\t').collect();
                    (c[0].to_string(), c[6].to_string(), c[7].to_string())
                })
                .collect();
            tsv.sort();
            seen.push((records, logged, tsv));
        }
        assert_eq!(seen[0], seen[1], "local, then remote");
        let kinds: Vec<&str> = seen[1].0.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(kinds, ["panicked", "crashed", "exited", "ok"]);
        assert_eq!(seen[1].0[1].1, "11");
        assert_eq!(seen[1].0[2].2, "3");
        drop(a);
    });
}

#[test]
fn halt_now_prints_nothing_that_arrives_after_the_deciding_failure_as_locally() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 1, &[]);
        let mut input = b"fail boom\n".to_vec();
        input.extend((0..200).flat_map(|_| b"ok\n".iter().copied()));
        let halt = ["--halt", "now,fail=1", "--task", "fault"];
        let local = supervisor(&[&["run", "-j", "1"][..], &halt].concat(), &input);
        let remote = supervisor(&[&["run", "--nats", &url][..], &halt].concat(), &input);
        assert_eq!(local.code, Some(1), "{}", local.stderr);
        assert_eq!(remote.code, Some(1), "{}", remote.stderr);
        assert_eq!(String::from_utf8_lossy(&local.stdout), "");
        assert_eq!(
            String::from_utf8_lossy(&remote.stdout),
            String::from_utf8_lossy(&local.stdout)
        );
        assert!(remote.stderr.contains("boom"), "{}", remote.stderr);
        drop(a);
    });
}

#[test]
fn a_sigkilled_submitter_s_tasks_stop_starting_within_about_a_second() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 2, &["--allow-commands"]);
        let starts = server.dir.join("starts");
        let cmd = format!("echo {{}} >> {}; echo {{}}; sleep 0.2", starts.display());
        let mut run = Live::start(
            &["run", "--nats", &url, "--", "sh", "-c", &cmd],
            &lines(300),
        );
        run.expect_stdout_lines(4, Duration::from_secs(30));
        run.signal(libc::SIGKILL);
        let at_kill = std::fs::read_to_string(&starts).unwrap().lines().count();
        assert_eq!(run.end(), None, "killed");
        let line = a.expect_line("its submitter is gone", Duration::from_secs(30));
        let after = std::fs::read_to_string(&starts).unwrap().lines().count();
        println!("{at_kill} tasks had started at the kill, {after} in all: {line}");
        // Two workers, 200 ms tasks: before, about ten seconds' worth (~100) started.
        assert!(
            after - at_kill <= 8,
            "{} started after the kill",
            after - at_kill
        );
        drop(a);
    });
}

#[test]
fn a_normal_run_leaves_no_submitter_is_gone_line_on_the_agent() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 1, &[]);
        let out = supervisor(
            &["run", "--nats", &url, "--task", "prime-factors"],
            &lines(5),
        );
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        // The agent has let the run go once it serves none (it said so, or not, then).
        let idle = (0..300).any(|_| {
            let out = supervisor(&["workers", "--nats", &url, "--format", "json"], b"");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if v[0]["runs"] == 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
            false
        });
        assert!(idle, "the agent still serves the run");
        let said = a.finish();
        assert!(
            !said.iter().any(|l| l.contains("submitter is gone")),
            "{said:?}"
        );
    });
}

#[test]
fn a_full_store_fails_tasks_with_the_servers_reason_and_runs_each_once() {
    common::isolated(DEADLINE, || {
        let dir = std::env::temp_dir().join(format!("sv-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("server.conf");
        std::fs::write(&conf, "jetstream { max_file_store: 2MB }\n").unwrap();
        let server = Server::start(&["-c", conf.to_str().unwrap()]);
        let url = server.url();
        let a = Agent::start(&url, "a", 1, &["--allow-commands"]);
        let count = server.dir.join("runs");
        // 20 outputs of 300 kB: the store holds a few of them.
        let cmd = format!(
            "echo {{}} >> {}; head -c 300000 /dev/zero | tr '\\0' x",
            count.display()
        );
        let out = supervisor(&["run", "--nats", &url, "--", "sh", "-c", &cmd], &lines(20));
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        assert!(
            out.stderr.contains("the NATS server refused to store"),
            "{}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("no agent finished it"),
            "{}",
            out.stderr
        );
        let runs = std::fs::read_to_string(&count).unwrap();
        let mut seqs: Vec<&str> = runs.lines().collect();
        let n = seqs.len();
        seqs.sort();
        seqs.dedup();
        assert_eq!(seqs.len(), n, "a command ran twice: {runs}");
        drop(a);
        drop(server);
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

#[test]
fn workers_and_worker_exit_2_on_bad_credentials_as_run_does() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&["--user", "alice", "--pass", "s3cret"]);
        let url = format!("nats://alice:wrong@127.0.0.1:{}", server.port);
        for sub in ["run", "worker", "workers"] {
            let mut args = vec![sub, "--nats", &url];
            if sub == "run" {
                args.extend(["--task", "prime-factors"]);
            }
            let out = supervisor(&args, b"12\n");
            assert_eq!(out.code, Some(2), "{sub}: {}", out.stderr);
            assert!(
                out.stderr.contains("cannot connect to the NATS server"),
                "{sub}: {}",
                out.stderr
            );
            assert!(!out.stderr.contains("wrong"), "{sub}: {}", out.stderr);
        }
    });
}

#[test]
fn an_agent_started_before_its_server_waits_for_it_and_serves() {
    common::isolated(DEADLINE, || {
        let mut server = Server::start(&[]);
        let url = server.url();
        server.stop();
        let a = Agent::start(&url, "a", 1, &[]);
        let line = a.expect_line("trying again every 1s", Duration::from_secs(20));
        assert!(line.contains("cannot connect to the NATS server"), "{line}");
        server.launch(&[]);
        a.expect_line("connected to", Duration::from_secs(20));
        let out = supervisor(&["run", "--nats", &url, "--task", "prime-factors"], b"12\n");
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert_eq!(out.stdout, b"2 2 3\n");
        drop(a);
    });
}

#[test]
fn a_duplicate_run_s_job_log_line_has_its_own_start() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let log = server.dir.join("joblog.json");
        let a = Agent::start(&url, "a", 1, &[]);
        let mut run = Live::start(
            &[
                "run",
                "--nats",
                &url,
                "--ack-wait",
                "2s",
                "--task",
                "sleep",
                "--joblog",
                log.to_str().unwrap(),
                "--joblog-format",
                "json",
            ],
            b"3s\n8s\n",
        );
        // Agent a runs the first task; stopped, it cannot ack it: after the ack wait
        // b runs it too. Its worker goes on: once a continues, it reports its run, a
        // duplicate, while b still runs the second task.
        wait_busy(&url, "a");
        a.signal(libc::SIGSTOP);
        let b = Agent::start(&url, "b", 2, &[]);
        run.expect_stdout_lines(1, Duration::from_secs(30));
        a.signal(libc::SIGCONT);
        assert_eq!(run.end(), Some(0), "{:?}", run.stderr);
        let all = joblog(&log);
        let dup: Vec<_> = all.iter().filter(|l| l["duplicate"] == true).collect();
        assert_eq!(dup.len(), 1, "{all:?}");
        assert_eq!(dup[0]["host"], "a");
        assert!(dup[0]["start"].as_f64().is_some_and(|s| s > 0.0), "{all:?}");
        let first = all.iter().find(|l| l["seq"] == 1 && l["duplicate"] != true);
        let first_start = first.and_then(|l| l["start"].as_f64()).unwrap();
        // a started it before b did.
        assert!(dup[0]["start"].as_f64().unwrap() < first_start, "{all:?}");
        drop((a, b));
    });
}
