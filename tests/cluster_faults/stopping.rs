//! Tasks running on agents stopped by --halt now and by a signal to the submitter, as locally.

use super::*;

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
pub(super) fn by_seq(
    log: &[serde_json::Value],
) -> std::collections::BTreeMap<u64, serde_json::Value> {
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
