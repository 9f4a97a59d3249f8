//! The cluster where it went wrong (found by an adversarial pass): who may take a
//! command, a run nobody serves, a server gone for good, `--retries` and `--halt` as
//! locally, failure kinds carried over, a SIGKILLed submitter's tasks, a full store,
//! exit codes of bad credentials, an agent started before its server, the job log of
//! a duplicate. A real nats-server and real agents, as in tests/cluster.rs.

#![cfg(feature = "cluster")]

mod cluster_support;
mod common;

use std::time::Duration;

use cluster_support::{supervisor, wait_busy, Agent, Live, Server};

const DEADLINE: Duration = Duration::from_secs(120);

fn joblog(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn lines(n: u64) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn command_tasks_go_only_to_agents_that_allow_commands() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let log = server.dir.join("joblog.json");
        // Agent a may not run commands: before, it pulled some and failed them while
        // b, which may, sat idle.
        let a = Agent::start(&url, "a", 2, &[]);
        let b = Agent::start(&url, "b", 2, &["--allow-commands"]);
        let out = supervisor(
            &[
                "run",
                "--nats",
                &url,
                "--joblog",
                log.to_str().unwrap(),
                "--joblog-format",
                "json",
                "--",
                "echo",
                "line",
                "{}",
            ],
            &lines(60),
        );
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let expected: String = (1..=60).map(|i| format!("line {i}\n")).collect();
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
        let log = joblog(&log);
        assert_eq!(log.len(), 60);
        assert!(log.iter().all(|l| l["host"] == "b"), "{log:?}");
        drop((a, b));
    });
}

#[test]
fn with_no_agent_allowed_to_run_commands_the_submitter_says_so_until_one_comes() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 1, &[]);
        let mut run = Live::start(&["run", "--nats", &url, "--", "echo", "{}"], b"x\ny\n");
        let notice = run.expect_stderr("no agent that may run commands", Duration::from_secs(30));
        assert!(
            notice.contains(&format!(
                "start one with `supervisor worker --nats {url} --allow-commands`"
            )),
            "{notice}"
        );
        let b = Agent::start(&url, "b", 1, &["--allow-commands"]);
        assert_eq!(run.end(), Some(0), "{:?}", run.stderr);
        assert_eq!(run.stdout, ["x", "y"]);
        drop((a, b));
    });
}

#[test]
fn with_no_agent_at_all_the_submitter_says_so_and_goes_on_when_one_starts() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let mut run = Live::start(&["run", "--nats", &url, "--task", "prime-factors"], b"12\n");
        let notice = run.expect_stderr("no agent has taken a task for", Duration::from_secs(30));
        assert!(
            notice.contains(&format!("start one with `supervisor worker --nats {url}`")),
            "{notice}"
        );
        let a = Agent::start(&url, "a", 1, &[]);
        assert_eq!(run.end(), Some(0), "{:?}", run.stderr);
        assert_eq!(run.stdout, ["2 2 3"]);
        drop(a);
    });
}

#[test]
fn a_server_gone_for_good_ends_the_run_with_exit_4_after_the_nats_timeout() {
    common::isolated(DEADLINE, || {
        let mut server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 1, &[]);
        let input: Vec<u8> = (0..50).map(|_| "100ms\n").collect::<String>().into_bytes();
        let mut run = Live::start(
            &[
                "run",
                "--nats",
                &url,
                "--nats-timeout",
                "2s",
                "--task",
                "sleep",
            ],
            &input,
        );
        run.expect_stdout_lines(1, Duration::from_secs(30));
        server.stop();
        let t = std::time::Instant::now();
        assert_eq!(run.end(), Some(4), "{:?}", run.stderr);
        assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
        let said = run.stderr.join("\n");
        assert!(
            said.contains(&format!(
                "the NATS server at {url} has been unreachable for 2s"
            )),
            "{said}"
        );
        assert!(run.stdout.len() < 50);
        drop(a);
    });
}

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

/// Whether process `pid` of this host has ended (gone, or a zombie waiting for its
/// reaper).
fn ended(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// The pids written to `path`, one a line, once there are `n` (30 s at most).
fn wait_pids(path: &std::path::Path, n: usize) -> Vec<i32> {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pids: Vec<i32> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.len() >= n {
            return pids;
        }
        assert!(
            std::time::Instant::now() < until,
            "{} of {n} pids",
            pids.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks that every process in `pids` ends within 10 s.
fn assert_all_end(pids: &[i32]) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !pids.iter().all(|p| ended(*p)) {
        assert!(
            std::time::Instant::now() < until,
            "still running on the agent: {:?}",
            pids.iter().filter(|p| !ended(**p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The command of the stop tests: inputs other than 1 write their pid and sleep a
/// minute (`exec`: the pid is the sleep's); input 1 waits until `n` of them run, then
/// fails (or, with `n` 0, sleeps too).
fn stop_command(pids: &std::path::Path, n: usize) -> String {
    let pids = pids.display();
    format!(
        "if [ {{}} = 1 ] && [ {n} -gt 0 ]; then \
           while [ $(cat {pids} 2>/dev/null | wc -l) -lt {n} ]; do sleep 0.05; done; exit 1; \
         fi; echo $$ >> {pids}; exec sleep 60"
    )
}

/// The JSON job log's lines by seq, the run's own (not duplicates).
fn by_seq(log: &[serde_json::Value]) -> std::collections::BTreeMap<u64, serde_json::Value> {
    log.iter()
        .filter(|l| l["duplicate"] != true)
        .map(|l| (l["seq"].as_u64().unwrap(), l.clone()))
        .collect()
}

#[test]
fn halt_now_stops_the_tasks_running_on_agents_and_records_them_stopped_as_locally() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 3, &["--allow-commands"]);
        let mut kinds = Vec::new();
        for nats in [None, Some(url.as_str())] {
            let pids = server.dir.join("pids");
            let _ = std::fs::remove_file(&pids);
            let log = server.dir.join("joblog.json");
            let cmd = stop_command(&pids, 2);
            let log_arg = log.to_str().unwrap().to_string();
            let mut args = vec!["run"];
            match nats {
                Some(url) => args.extend(["--nats", url]),
                None => args.extend(["-j", "3"]),
            }
            args.extend(["--halt", "now,fail=1", "--joblog", &log_arg]);
            args.extend(["--joblog-format", "json", "--", "sh", "-c", &cmd]);
            let out = supervisor(&args, &lines(3));
            assert_eq!(out.code, Some(1), "{nats:?}: {}", out.stderr);
            // Before, the remote run left both sleeping on the agent for their minute.
            assert_all_end(&wait_pids(&pids, 2));
            let log = by_seq(&joblog(&log));
            for seq in [2, 3] {
                let line = &log[&seq];
                assert_eq!(line["outcome"], "stopped", "{nats:?}: {log:?}");
                assert!(line["pid"].as_u64() > Some(0), "{nats:?}: {line}");
                assert!(line["attempts"].as_u64() >= Some(1), "{nats:?}: {line}");
                assert!(line["start"].as_f64().is_some_and(|s| s > 0.0), "{line}");
                if nats.is_some() {
                    assert_eq!(line["host"], "a", "{line}");
                }
            }
            kinds.push(
                log.values()
                    .map(|l| l["outcome"].as_str().unwrap_or("?").to_string())
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(kinds[0], kinds[1], "local, then remote");
        drop(a);
    });
}

#[test]
fn a_signal_to_the_submitter_stops_the_tasks_running_on_agents_as_locally() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 2, &["--allow-commands"]);
        for (signal, code) in [
            (libc::SIGTERM, 143),
            (libc::SIGINT, 130),
            (libc::SIGHUP, 129),
        ] {
            let pids = server.dir.join("pids");
            let _ = std::fs::remove_file(&pids);
            let log = server.dir.join("joblog.json");
            let cmd = stop_command(&pids, 0);
            let mut run = Live::start(
                &[
                    "run",
                    "--nats",
                    &url,
                    "--joblog",
                    log.to_str().unwrap(),
                    "--joblog-format",
                    "json",
                    "--",
                    "sh",
                    "-c",
                    &cmd,
                ],
                &lines(4),
            );
            let running = wait_pids(&pids, 2);
            run.signal(signal);
            assert_eq!(run.end(), Some(code), "{signal}: {:?}", run.stderr);
            assert_all_end(&running);
            let said = run.stderr.join("\n");
            // Before: "0 stopped while running, 4 not started", the two still running.
            assert!(
                said.contains("2 stopped while running, 2 not started"),
                "{signal}: {said}"
            );
            let log = by_seq(&joblog(&log));
            let stopped: Vec<_> = log.values().filter(|l| l["outcome"] == "stopped").collect();
            assert_eq!(stopped.len(), 2, "{signal}: {log:?}");
            for line in stopped {
                assert!(line["pid"].as_u64() > Some(0), "{line}");
                assert!(line["attempts"].as_u64() >= Some(1), "{line}");
                assert_eq!(line["host"], "a", "{line}");
            }
        }
        drop(a);
    });
}

#[test]
fn an_agent_without_allow_files_refuses_built_ins_that_read_or_write_its_files() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let secret = server.dir.join("secret");
        std::fs::write(&secret, "root:the-secret-hash\n").unwrap();
        let out_dir = server.dir.join("words");
        std::fs::create_dir_all(&out_dir).unwrap();
        let a = Agent::start(&url, "a", 1, &[]);
        let path = format!("{}\n", secret.display());
        let out_arg = format!("out={}", out_dir.display());
        let cases: [(&[&str], &[u8], &str); 3] = [
            (
                &["--task", "search", "--arg", "pattern=root"],
                path.as_bytes(),
                "--allow-files",
            ),
            (
                &[
                    "--task",
                    "pseudowords",
                    "--arg",
                    "count=3",
                    "--arg",
                    &out_arg,
                ],
                b"ab\n",
                "--allow-files",
            ),
            (
                &["--task", "fault"],
                b"spawn-grandchild\n",
                "--allow-commands",
            ),
        ];
        for (args, input, flag) in cases {
            let out = supervisor(&[&["run", "--nats", &url][..], args].concat(), input);
            // Before: the secret came back, the words were written under DIR.
            assert_eq!(out.code, Some(1), "{args:?}: {}", out.stderr);
            let task = args[1];
            assert!(
                out.stderr
                    .contains(&format!("the agent on host a refuses task `{task}`"))
                    && out
                        .stderr
                        .contains(&format!("(start the agent with {flag})")),
                "{args:?}: {}",
                out.stderr
            );
            assert!(!String::from_utf8_lossy(&out.stdout).contains("secret"));
        }
        assert_eq!(
            std::fs::read_dir(&out_dir).unwrap().count(),
            0,
            "a file was written"
        );
        drop(a);
        // With the flag, as locally.
        let a = Agent::start(&url, "a", 1, &["--allow-files"]);
        let args = [
            "run",
            "--nats",
            &url,
            "--task",
            "search",
            "--arg",
            "pattern=root",
        ];
        let out = supervisor(&args, path.as_bytes());
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(String::from_utf8_lossy(&out.stdout).contains("the-secret-hash"));
        drop(a);
    });
}

#[test]
fn a_remote_failure_says_the_host_it_ran_on_in_text_json_and_the_job_log() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let log = server.dir.join("joblog.json");
        let a = Agent::start(&url, "hx", 1, &[]);
        let out = supervisor(&["run", "--nats", &url, "--task", "fault"], b"fail boom\n");
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        // Before: "boom (worker 123)", with no word of where.
        assert!(out.stderr.contains("boom (worker "), "{}", out.stderr);
        assert!(out.stderr.contains(" on host hx)"), "{}", out.stderr);
        let out = supervisor(
            &[
                "run",
                "--nats",
                &url,
                "--format",
                "json",
                "--task",
                "fault",
                "--joblog",
                log.to_str().unwrap(),
                "--joblog-format",
                "json",
            ],
            b"fail boom\nok\n",
        );
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 2);
        let logged = by_seq(&joblog(&log));
        for r in &records {
            assert_eq!(r["host"], "hx", "{r}");
            assert_eq!(logged[&r["seq"].as_u64().unwrap()]["host"], "hx");
        }
        drop(a);
    });
}

#[test]
fn halt_soon_lets_the_tasks_running_on_agents_finish_and_prints_them_as_locally() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 3, &["--allow-commands"]);
        let mut seen = Vec::new();
        for nats in [None, Some(url.as_str())] {
            let ran = server.dir.join("ran");
            let _ = std::fs::remove_file(&ran);
            let r = ran.display();
            // Input 1 fails once 2 and 3 run; they finish a moment later.
            let cmd = format!(
                "if [ {{}} = 1 ]; then \
                   while [ $(cat {r} 2>/dev/null | wc -l) -lt 2 ]; do sleep 0.05; done; exit 1; \
                 fi; echo {{}} >> {r}; sleep 1; echo done {{}}"
            );
            let mut args = vec!["run"];
            match nats {
                Some(url) => args.extend(["--nats", url]),
                None => args.extend(["-j", "3"]),
            }
            args.extend(["--halt", "soon,fail=1", "--", "sh", "-c", &cmd]);
            // As many inputs as workers: an agent's worker freed by the failure may
            // start a next task before the agent hears of the halt (it does not know
            // the rule), which a local pool's gate prevents.
            let out = supervisor(&args, &lines(3));
            assert_eq!(out.code, Some(1), "{nats:?}: {}", out.stderr);
            seen.push(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        // Before: the remote run printed nothing; 2 and 3 ran out unseen.
        assert_eq!(seen[0], "done 2\ndone 3\n");
        assert_eq!(seen[1], seen[0], "remote, as locally");
        drop(a);
    });
}

#[test]
fn timeout_travels_with_each_task_and_the_agents_pool_applies_it_as_locally() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 2, &[]);
        let mut seen = Vec::new();
        for nats in [None, Some(url.as_str())] {
            let log = server.dir.join("joblog.json");
            let log_arg = log.to_str().unwrap().to_string();
            let mut args = vec!["run"];
            if let Some(url) = nats {
                args.extend(["--nats", url]);
            }
            // Before: `--timeout is a setting of the local pool`, exit 2.
            args.extend(["--timeout", "1s", "--retries", "1", "--task", "sleep"]);
            args.extend(["--joblog", &log_arg, "--joblog-format", "json"]);
            let t = std::time::Instant::now();
            let out = supervisor(&args, b"100ms\n30s\n");
            assert_eq!(out.code, Some(1), "{nats:?}: {}", out.stderr);
            assert!(t.elapsed() < Duration::from_secs(25), "{:?}", t.elapsed());
            // `sleep` prints how long it slept (101ms on a loaded machine).
            let slept = String::from_utf8_lossy(&out.stdout);
            let ms: u64 = slept
                .strip_suffix("ms\n")
                .and_then(|m| m.parse().ok())
                .unwrap_or_else(|| panic!("{nats:?}: printed {slept:?}"));
            assert!((100..1000).contains(&ms), "{nats:?}: printed {slept:?}");
            assert!(out.stderr.contains("timed out"), "{nats:?}: {}", out.stderr);
            let log = by_seq(&joblog(&log));
            seen.push(
                log.values()
                    .map(|l| (l["outcome"].clone(), l["attempts"].clone()))
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(seen[0], seen[1], "local, then remote");
        assert_eq!(seen[0][1], ("timed_out".into(), 2.into()), "{seen:?}");
        drop(a);
    });
}

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
