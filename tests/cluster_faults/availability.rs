//! Who may take a command, a run nobody serves, a server gone for good.

use super::*;

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
