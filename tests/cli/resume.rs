//! `--resume` from a job log: tasks logged under their own number and command, never
//! rerun, and tasks running at a SIGTERM stopped unlogged and run by the resume.

use super::*;

/// Seq, Exitval and Command of each line of a job log, header left out.
fn joblog_lines(path: &std::path::Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[0].to_string(), c[6].to_string(), c[8].to_string())
        })
        .collect()
}

#[test]
fn resumed_tasks_are_logged_under_their_own_number_and_command_and_never_rerun() {
    isolated(DEADLINE, || {
        let dir = temp_dir("resume-seq");
        let log = dir.join("jobs.tsv");
        let log_arg = log.to_str().unwrap();
        let input = "exit 0\nexit 1\nexit 0\nexit 0\n";
        let run = |extra: &[&str]| {
            let mut args = vec!["run", "-j", "1", "--joblog", log_arg];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["--", "sh", "-c", "echo {#}; {}"]);
            cli(&args, input)
        };
        assert_eq!(run(&[]).code, 1);
        // Keep the lines of inputs 1 and 2 only, as a run killed then would have.
        let text = std::fs::read_to_string(&log).unwrap();
        let kept: Vec<&str> = text.lines().take(3).collect();
        std::fs::write(&log, kept.join("\n") + "\n").unwrap();

        let resumed = run(&["--resume"]);
        assert_eq!(resumed.code, 0, "{}", resumed.stderr);
        assert_eq!(resumed.stdout, "3\n4\n");
        let logged = joblog_lines(&log);
        assert_eq!(
            logged
                .iter()
                .map(|l| (l.0.as_str(), l.1.as_str()))
                .collect::<Vec<_>>(),
            [("1", "0"), ("2", "1"), ("3", "0"), ("4", "0")]
        );
        assert!(
            logged[2].2.contains("exit 0") && logged[3].2.contains("exit 0"),
            "{logged:?}"
        );
        // Nothing is left to run, twice over.
        let again = run(&["--resume"]);
        assert_eq!((again.code, again.stdout.as_str()), (0, ""));
        // `--resume-failed` runs input 2 alone, logged as 2.
        let failed = run(&["--resume-failed"]);
        assert_eq!((failed.code, failed.stdout.as_str()), (1, "2\n"));
        let logged = joblog_lines(&log);
        assert_eq!(logged.len(), 5);
        assert_eq!((logged[4].0.as_str(), logged[4].1.as_str()), ("2", "1"));
        assert!(logged[4].2.contains("exit 1"), "{logged:?}");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn tasks_running_at_a_sigterm_are_stopped_unlogged_and_run_by_resume() {
    isolated(DEADLINE, || {
        let dir = temp_dir("sigterm-resume");
        let log = dir.join("jobs.tsv");
        let d = dir.display();
        // Inputs past 2 take 30 s until `fast` exists; each says when it starts and,
        // in `done.N`, that it finished.
        let script = format!(
            "echo $0 > {d}/start.$0; [ $0 -le 2 ] || [ -e {d}/fast ] || sleep 30; echo $0 >> {d}/done.$0"
        );
        let args = |resume: bool| {
            let mut a = vec!["run", "-j", "2", "--joblog", log.to_str().unwrap()];
            if resume {
                a.push("--resume");
            }
            a.extend_from_slice(&["sh", "-c", &script, ":::", "1", "2", "3", "4", "5", "6"]);
            a.into_iter().map(String::from).collect::<Vec<_>>()
        };
        let first = args(false);
        let mut child = start(&first.iter().map(String::as_str).collect::<Vec<_>>());
        drop(child.stdin.take());
        for i in [3, 4] {
            wait_number_in(&dir.join(format!("start.{i}")), Duration::from_secs(30));
        }
        // SAFETY: a plain kill of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(143), "{stderr}");
        assert!(
            stderr.contains("2 tasks succeeded, 0 failed, 2 stopped while running, 2 not started"),
            "{stderr}"
        );
        let logged: Vec<String> = joblog_lines(&log).into_iter().map(|l| l.0).collect();
        assert_eq!(logged.len(), 2, "{logged:?}");
        assert!(
            logged.contains(&"1".into()) && logged.contains(&"2".into()),
            "{logged:?}"
        );

        std::fs::write(dir.join("fast"), "").unwrap();
        let second = args(true);
        let again = cli(&second.iter().map(String::as_str).collect::<Vec<_>>(), "");
        assert_eq!(again.code, 0, "{}", again.stderr);
        for i in 1..=6 {
            let done = std::fs::read_to_string(dir.join(format!("done.{i}"))).unwrap_or_default();
            assert_eq!(done, format!("{i}\n"), "input {i} ran to its end once");
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// A run killed while it wrote a job log line leaves the line cut short, without its
/// newline. `--resume` takes that job as run (its line is written once it ended), says
/// so, ends the cut line before appending, and a later `--resume` reads the log again.
#[test]
fn a_job_log_whose_last_line_was_cut_short_is_resumed_from() {
    isolated(DEADLINE, || {
        let dir = temp_dir("resume-cut");
        let log = dir.join("jobs.tsv");
        let log_arg = log.to_str().unwrap();
        let input = "a\nb\nc\nd\n";
        let run = |extra: &[&str]| {
            let mut args = vec!["run", "-j", "1", "--joblog", log_arg];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["--", "echo", "{#}"]);
            cli(&args, input)
        };
        assert_eq!(run(&[]).code, 0);
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // The header, jobs 1 and 2, then job 3's line cut inside its run time.
        let cut = format!("{}\n{}", lines[..3].join("\n"), &lines[3][..18]);
        std::fs::write(&log, &cut).unwrap();

        let resumed = run(&["--resume"]);
        assert_eq!(resumed.code, 0, "{}", resumed.stderr);
        assert_eq!(resumed.stdout, "4\n", "job 3 is taken as run");
        assert!(
            resumed.stderr.contains("line 4 was cut short")
                && resumed.stderr.contains("job 3 is taken as run"),
            "{}",
            resumed.stderr
        );
        let after = std::fs::read_to_string(&log).unwrap();
        assert!(after.starts_with(&format!("{cut}\n4\t")), "{after:?}");
        let again = run(&["--resume-failed"]);
        assert_eq!(
            (again.code, again.stdout.as_str()),
            (0, ""),
            "{}",
            again.stderr
        );

        // Cut inside its number: the line is ignored and that job runs.
        std::fs::write(&log, format!("{}\n3", lines[..3].join("\n"))).unwrap();
        let resumed = run(&["--resume"]);
        assert_eq!(resumed.stdout, "3\n4\n", "{}", resumed.stderr);
        assert!(
            resumed
                .stderr
                .contains("it is ignored (the job it logged runs again)"),
            "{}",
            resumed.stderr
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}
