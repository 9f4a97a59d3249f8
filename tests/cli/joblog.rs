//! The job log, in parallel's format and as JSON lines: stats, retries, recycling and
//! start methods, lines written as tasks end, and retries one budget for failures and
//! timeouts.

use super::*;

#[test]
fn joblog_stats_retries_recycling_and_start_methods() {
    isolated(DEADLINE, || {
        let dir = temp_dir("joblog");
        let log = dir.join("jobs.jsonl");
        let out = cli(
            &[
                "run",
                "-j",
                "2",
                "--retries",
                "2",
                "--stats",
                "--joblog-format",
                "json",
                "--joblog",
                log.to_str().unwrap(),
                "--start-method",
                "forkserver",
                "--task",
                "fault",
            ],
            "ok\nsegfault\nsleep 10ms\n",
        );
        assert_eq!(out.code, 1);
        let records: Vec<Value> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 3);
        for key in [
            "seq",
            "input",
            "pid",
            "start",
            "duration_ms",
            "outcome",
            "signal",
            "exit_code",
            "peak_rss_kib",
            "attempts",
        ] {
            assert!(records[0].get(key).is_some(), "joblog lacks {key}");
        }
        let crash = records.iter().find(|r| r["input"] == "segfault").unwrap();
        assert_eq!(crash["outcome"], "crashed");
        assert_eq!(crash["signal"], 11);
        assert_eq!(crash["attempts"], 3, "1 run + 2 retries");
        assert!(crash["peak_rss_kib"].as_u64().unwrap() > 0);
        // --stats: the workers live at the end, then apart those replaced: one per
        // segfault attempt. None to 2 are live: a worker is not started again once
        // nothing is left to run (the last attempt's worker may be the last to die).
        let stats = &out.stderr;
        let live = stats
            .find("supervisor: workers at the end of the run: ")
            .unwrap_or_else(|| panic!("{stats}"));
        let replaced = stats
            .find("supervisor: workers replaced during the run: 3\n")
            .unwrap_or_else(|| panic!("{stats}"));
        assert!(live < replaced, "{stats}");
        let rows = |table: &str| table.lines().filter(|l| l.ends_with(" KiB")).count();
        assert!(rows(&stats[live..replaced]) <= 2, "{stats}");
        assert_eq!(rows(&stats[replaced..]), 3, "{stats}");
        // Recycling: a worker per task; fork start method.
        let out = cli(
            &[
                "run",
                "-j",
                "2",
                "--max-tasks-per-child",
                "1",
                "--start-method",
                "fork",
                "--format",
                "json",
                "--task",
                "whoami",
            ],
            &lines(6, "x"),
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let pids: HashSet<u64> = out
            .json()
            .iter()
            .map(|r| r["pid"].as_u64().unwrap())
            .collect();
        assert_eq!(pids.len(), 6);
        std::fs::remove_dir_all(dir).unwrap();
        assert_all_gone(Duration::from_secs(5));
    });
}

/// The JSON job log gets each task's line when it ends, as the TSV one does (before:
/// in print order, so a SIGKILLed run lost the lines of tasks that ended behind a slow
/// one); a line names the command line and the command's own pid beside the worker's,
/// and a command that succeeded has exit code 0, not null.
#[test]
fn the_json_joblog_is_written_as_tasks_end_and_names_the_command() {
    isolated(DEADLINE, || {
        let dir = temp_dir("json-joblog-arrival");
        let log = dir.join("jobs.jsonl");
        let mut child = Command::new(BIN)
            .args([
                "run",
                "-j",
                "2",
                "--joblog-format",
                "json",
                "--joblog",
                log.to_str().unwrap(),
                "sh",
                "-c",
                "[ $0 = slow ] && exec sleep 60; echo $0; exit $1",
                ":::",
                "slow",
                "a",
                "b",
                "c",
                ":::+",
                "-",
                "0",
                "3",
                "0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        let read = || std::fs::read_to_string(&log).unwrap_or_default();
        while read().lines().count() < 3 {
            assert!(
                Instant::now() < until,
                "not logged while the first ran: {}",
                read()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let records: Vec<Value> = read()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(records.len(), 3, "{records:?}");
        for r in &records {
            let worker = r["pid"].as_u64().unwrap();
            let own = r["command_pid"].as_u64().unwrap();
            assert!(worker > 0 && own > 0 && own != worker, "{r}");
            let input = r["input"].as_str().unwrap();
            let (value, code) = input.split_once(' ').unwrap();
            assert_eq!(
                r["command"],
                format!("sh -c '[ $0 = slow ] && exec sleep 60; echo $0; exit $1' {value} {code}"),
                "{r}"
            );
            assert_eq!(r["exit_code"], code.parse::<u64>().unwrap(), "{r}");
            assert_eq!(
                r["outcome"],
                if code == "0" { "ok" } else { "failed" },
                "{r}"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn retries_are_one_budget_for_failures_and_timeouts_and_attempts_say_how_many_ran() {
    isolated(DEADLINE, || {
        let dir = temp_dir("retry-budget");
        let d = dir.display();
        // Fails every time (within its limit, or past it on a slow machine: both
        // count).
        let always = format!("echo run >> {d}/always; sleep 0.6; exit 1");
        let out = cli(
            &[
                "run",
                "--retries",
                "2",
                "--timeout",
                "1s",
                "--format",
                "json",
                &always,
            ],
            "a\n",
        );
        assert_eq!(out.code, 1, "{}", out.stderr);
        let runs = std::fs::read_to_string(dir.join("always")).unwrap();
        assert_eq!(
            runs.lines().count(),
            3,
            "--retries 2 runs a command 3 times at most"
        );
        assert_eq!(out.json()[0]["attempts"], 3, "{}", out.stdout);
        // Times out, then fails, then succeeds: three runs of one budget.
        let mixed = format!(
            "echo run >> {d}/mixed; n=$(wc -l < {d}/mixed); [ $n = 1 ] && sleep 30; [ $n = 2 ] && exit 3; echo ok"
        );
        let out = cli(
            &[
                "run",
                "--retries",
                "2",
                "--timeout",
                "2s",
                "--format",
                "json",
                &mixed,
            ],
            "a\n",
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let record = &out.json()[0];
        assert_eq!(
            (record["attempts"].as_u64(), record["output"].as_str()),
            (Some(3), Some("ok a\n"))
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// A command that cannot be started is logged with the exit status a shell gives it
/// (GNU parallel runs commands through one): 127 for a program not found, 126 for one
/// that cannot be run; grouped and streamed (`-u`) alike. Before, both were -1.
#[test]
fn a_command_that_cannot_start_is_logged_as_a_shell_would_exit() {
    isolated(DEADLINE, || {
        let dir = temp_dir("joblog-start");
        let log = dir.join("jobs.tsv");
        let plain = dir.join("not-executable");
        std::fs::write(&plain, "echo never\n").unwrap();
        for mode in [None, Some("-u")] {
            for (program, want) in [
                (dir.join("missing").to_str().unwrap().to_string(), "127"),
                (plain.to_str().unwrap().to_string(), "126"),
            ] {
                let mut args = vec!["run", "--joblog", log.to_str().unwrap()];
                args.extend(mode);
                args.extend(["--", program.as_str(), ":::", "a"]);
                let out = cli(&args, "");
                assert_eq!(out.code, 1, "{mode:?} {program}: {}", out.stderr);
                assert!(out.stderr.contains("cannot start `"), "{}", out.stderr);
                let text = std::fs::read_to_string(&log).unwrap();
                let line: Vec<&str> = text.lines().nth(1).unwrap().split('\t').collect();
                assert_eq!(
                    (line[6], line[7]),
                    (want, "0"),
                    "{mode:?} {program}: {text}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}
