//! Agents print what a local run prints; credentials, tokens in the URL, SIGINT, a task that kills its worker on every delivery.

use super::failover::run_watching_pid;
use super::*;

pub(super) fn lines(n: u64) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

pub(super) fn same_as_local(run: &[&str], input: &[u8], agent_args: &[&str]) {
    let server = Server::start(&[]);
    let url = server.url();
    let a = Agent::start(&url, "a", 2, agent_args);
    let b = Agent::start(&url, "b", 2, agent_args);
    let local = supervisor(&[&["run"], run].concat(), input);
    let remote = supervisor(&[&["run", "--nats", &url], run].concat(), input);
    assert_eq!(remote.code, local.code, "remote stderr: {}", remote.stderr);
    assert_eq!(
        String::from_utf8_lossy(&remote.stdout),
        String::from_utf8_lossy(&local.stdout)
    );
    assert!(!local.stdout.is_empty());
    drop((a, b));
}

#[test]
fn two_agents_print_what_a_local_run_prints_for_sha512_chain() {
    common::isolated(DEADLINE, || {
        let words: Vec<u8> = (0..40)
            .map(|i| format!("word{i}\n"))
            .collect::<String>()
            .into_bytes();
        same_as_local(
            &["--task", "sha512-chain", "--arg", "iterations=2000"],
            &words,
            &[],
        );
    });
}

#[test]
fn two_agents_print_what_a_local_run_prints_for_prime_factors() {
    common::isolated(DEADLINE, || {
        same_as_local(&["--task", "prime-factors"], &lines(300), &[]);
    });
}

#[test]
fn two_agents_print_what_a_local_run_prints_for_a_command() {
    common::isolated(DEADLINE, || {
        same_as_local(
            &["--", "echo", "line", "{}"],
            &lines(100),
            &["--allow-commands"],
        );
    });
}

#[test]
fn a_client_without_the_credentials_is_refused() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&["--user", "alice", "--pass", "s3cret"]);
        let url = server.url();
        let with = format!("nats://alice:s3cret@127.0.0.1:{}", server.port);
        let out = supervisor(&["run", "--nats", &url, "--task", "prime-factors"], b"12\n");
        assert_eq!(out.code, Some(2), "{}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("cannot connect to the NATS server at {url}"))
                && out.stderr.to_lowercase().contains("author"),
            "{}",
            out.stderr
        );
        let refused = supervisor(&["worker", "--nats", &url], b"");
        assert_eq!(refused.code, Some(2), "{}", refused.stderr);
        let a = Agent::start(&with, "a", 1, &[]);
        let ok = supervisor(
            &["run", "--nats", &with, "--task", "prime-factors"],
            b"12\n",
        );
        assert_eq!(ok.code, Some(0), "{}", ok.stderr);
        assert_eq!(ok.stdout, b"2 2 3\n");
        // The password is not shown.
        assert!(!out.stderr.contains("s3cret"));
        drop(a);
    });
}

#[test]
fn a_token_in_the_url_is_the_credential() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&["--auth", "t0ken"]);
        let url = server.url();
        let with = format!("nats://t0ken@127.0.0.1:{}", server.port);
        let refused = supervisor(&["workers", "--nats", &url], b"");
        assert_eq!(refused.code, Some(2), "{}", refused.stderr);
        assert!(
            refused.stderr.contains("cannot connect to the NATS server"),
            "{}",
            refused.stderr
        );
        let a = Agent::start(&with, "a", 1, &[]);
        let ok = supervisor(
            &["run", "--nats", &with, "--task", "prime-factors"],
            b"30\n",
        );
        assert_eq!(ok.code, Some(0), "{}", ok.stderr);
        assert_eq!(ok.stdout, b"2 3 5\n");
        drop(a);
    });
}

#[test]
fn sigint_stops_a_remote_run_as_a_local_one_with_130() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 1, &[]);
        let input: Vec<u8> = (0..40).map(|_| "200ms\n").collect::<String>().into_bytes();
        let (code, got, err) = run_watching_pid(
            &["run", "--nats", &url, "--task", "sleep"],
            input,
            |n, pid| {
                if n == 1 {
                    // SAFETY: our child, not yet reaped.
                    unsafe { libc::kill(pid as i32, libc::SIGINT) };
                }
            },
        );
        assert_eq!(code, Some(130), "{err}");
        assert!(got.len() < 40);
        assert!(err.contains("supervisor: stopped by signal: "), "{err}");
        drop(a);
    });
}

#[test]
fn a_task_that_kills_its_worker_on_every_delivery_fails_naming_the_hosts_and_signal() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 1, &[]);
        let b = Agent::start(&url, "b", 1, &[]);
        let out = supervisor(
            &["run", "--nats", &url, "--retries", "2", "--task", "fault"],
            b"ok\nsegfault\nok\n",
        );
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        assert_eq!(out.stdout, b"ok\nok\n");
        assert!(
            out.stderr.contains("task `fault` failed on every one of its 3 deliveries: its worker was killed by SIGSEGV (hosts: "),
            "{}",
            out.stderr
        );
        drop((a, b));
    });
}
