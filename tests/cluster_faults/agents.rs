//! What agents refuse and report: files without --allow-files, the host a failure ran on, --halt soon, timeouts.

use super::stopping::by_seq;
use super::*;

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
