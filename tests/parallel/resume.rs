//! --resume after a SIGKILLed run, slow tasks and the job log while the run waits.

use super::output::{run, scratch};
use super::*;

/// The job log is parallel's (tab-separated, same columns); `--resume` after a SIGKILLed
/// run runs every input exactly once over both runs.
#[test]
fn resume_after_a_sigkilled_run_runs_every_input_exactly_once() {
    isolated(DEADLINE, || {
        let dir = scratch("resume");
        let done = dir.join("done");
        std::fs::create_dir_all(&done).unwrap();
        let joblog = dir.join("jobs.tsv");
        // Each job appends to a file of its own per run; the last ones are slow, so the
        // kill comes while some have finished and some have not started.
        // The mark is made at the end: a job killed midway leaves none.
        let script = "sleep $(( {} > 10 ? 2 : 0 )); echo {} >> done/{}";
        let inputs: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
        let mut args: Vec<&str> = vec!["run", "-j", "2", "--joblog", "jobs.tsv", script, ":::"];
        args.extend(inputs.iter().map(String::as_str));
        let mut first = Command::new(BIN)
            .args(&args)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        while std::fs::read_to_string(&joblog).map_or(0, |l| l.lines().count()) < 11 {
            assert!(Instant::now() < until, "the first run logged too little");
            std::thread::yield_now();
        }
        first.kill().unwrap();
        first.wait().unwrap();
        let log = std::fs::read_to_string(&joblog).unwrap();
        assert!(log.starts_with(
            "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"
        ));
        let mut again: Vec<&str> = vec!["run", "-j", "4", "--resume", "--joblog", "jobs.tsv"];
        again.extend(&args[5..]);
        let second = run(BIN, &again, b"", &dir);
        assert_eq!(second.code, 0, "{}", second.stderr);
        for i in &inputs {
            let runs = std::fs::read_to_string(done.join(i)).unwrap_or_default();
            assert_eq!(
                runs.lines().count(),
                1,
                "input {i} ran {} times",
                runs.lines().count()
            );
        }
        let seqs: Vec<u64> = std::fs::read_to_string(&joblog)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split('\t').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            seqs.len(),
            20,
            "each job logged once over both runs: {seqs:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// The job log gets a task's line when it ends, not when its turn to be printed comes:
/// a run SIGKILLed while its first task still runs has logged the nine after it, and
/// `--resume` runs only the first again (before: nothing was logged behind it, and the
/// nine ran twice).
#[test]
fn resume_keeps_the_lines_of_tasks_that_ended_behind_a_slow_one() {
    isolated(DEADLINE, || {
        let dir = scratch("resume-behind");
        std::fs::create_dir_all(dir.join("done")).unwrap();
        let script = "sleep $(( {} == 1 ? 30 : 0 )); echo {} >> done/{}";
        let inputs: Vec<String> = (1..=10).map(|i| i.to_string()).collect();
        let mut args: Vec<&str> = vec!["run", "-j", "2", "--joblog", "jobs.tsv", script, ":::"];
        args.extend(inputs.iter().map(String::as_str));
        let mut first = Command::new(BIN)
            .args(&args)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let joblog = dir.join("jobs.tsv");
        let until = Instant::now() + Duration::from_secs(20);
        while std::fs::read_to_string(&joblog).map_or(0, |l| l.lines().count()) < 10 {
            assert!(
                Instant::now() < until,
                "the nine fast tasks were not logged while the first ran: {:?}",
                std::fs::read_to_string(&joblog)
            );
            std::thread::yield_now();
        }
        first.kill().unwrap();
        first.wait().unwrap();
        let mut again: Vec<&str> = vec!["run", "--resume", "--joblog", "jobs.tsv"];
        // The first task is quick this time.
        let quick = "echo {} >> done/{}";
        again.extend([quick, ":::"]);
        again.extend(inputs.iter().map(String::as_str));
        let second = run(BIN, &again, b"", &dir);
        assert_eq!(second.code, 0, "{}", second.stderr);
        for i in &inputs {
            let runs = std::fs::read_to_string(dir.join("done").join(i)).unwrap_or_default();
            assert_eq!(
                runs.lines().count(),
                1,
                "input {i} ran {} times",
                runs.lines().count()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// Built-in tasks' job-log lines are written out once per burst of results, not once
/// per line: still, the lines of the tasks that ended behind a slow one are in the file
/// while the run waits for it (a SIGKILL then loses none of them).
#[test]
fn builtin_tasks_lines_are_in_the_job_log_while_the_run_waits() {
    isolated(DEADLINE, || {
        let dir = scratch("builtin-joblog");
        std::fs::create_dir_all(&dir).unwrap();
        let args = ["run", "-j", "2", "--joblog", "jobs.tsv", "--task", "sleep"];
        let mut first = Command::new(BIN)
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let input = format!("30s\n{}", "0ms\n".repeat(9));
        let mut stdin = first.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        let joblog = dir.join("jobs.tsv");
        let until = Instant::now() + Duration::from_secs(20);
        while std::fs::read_to_string(&joblog).map_or(0, |l| l.lines().count()) < 10 {
            assert!(
                Instant::now() < until,
                "the nine fast tasks were not logged while the first ran: {:?}",
                std::fs::read_to_string(&joblog)
            );
            std::thread::yield_now();
        }
        first.kill().unwrap();
        first.wait().unwrap();
        let mut seqs: Vec<u64> = std::fs::read_to_string(&joblog)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split('\t').next().unwrap().parse().unwrap())
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (2..=10).collect::<Vec<u64>>());
        std::fs::remove_dir_all(&dir).unwrap();
    });
}
