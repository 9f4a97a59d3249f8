//! Listing agents, agents in other network namespaces, SIGTERM while the server is away, messages past the server limit.

use super::failover::joblog;
use super::results::{lines, same_as_local};
use super::*;

#[test]
fn workers_lists_the_live_agents_in_text_and_json() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "alpha", 2, &[]);
        let b = Agent::start(&url, "beta", 1, &[]);
        let out = supervisor(
            &["run", "--nats", &url, "--task", "prime-factors"],
            &lines(10),
        );
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let mut listed = serde_json::Value::Null;
        for _ in 0..100 {
            let out = supervisor(&["workers", "--nats", &url, "--format", "json"], b"");
            assert_eq!(out.code, Some(0), "{}", out.stderr);
            listed = serde_json::from_slice(&out.stdout).unwrap();
            let done: u64 = listed
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["done"].as_u64().unwrap())
                .sum();
            if listed.as_array().unwrap().len() == 2 && done == 10 {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let agents = listed.as_array().unwrap();
        assert_eq!(agents.len(), 2, "{listed}");
        assert_eq!(agents[0]["host"], "alpha");
        assert_eq!(agents[0]["procs"], 2);
        assert_eq!(agents[1]["host"], "beta");
        assert_eq!(agents[0]["pid"], a.child.id());
        let text = supervisor(&["workers", "--nats", &url], b"");
        let text = String::from_utf8(text.stdout).unwrap();
        let mut rows = text.lines();
        assert_eq!(
            rows.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ["host", "pid", "procs", "busy", "done", "failed"]
        );
        assert!(rows.next().unwrap().starts_with("alpha"));
        assert!(rows.next().unwrap().starts_with("beta"));
        drop((a, b));
    });
}

/// Two agents that reach the server over a network: each in a network namespace of
/// its own, linked by veth pairs to the server's namespace; the loopback variant where
/// namespaces cannot be made. Says which one ran.
#[test]
fn agents_in_other_network_namespaces_print_what_a_local_run_prints() {
    common::isolated(DEADLINE, || {
        let input = lines(200);
        let local = supervisor(&["run", "--task", "prime-factors"], &input);
        match Netns::make(2) {
            Ok(net) => {
                println!(
                    "variant: network namespaces ({} and {:?}, server at {})",
                    net.server_ns, net.agent_ns, net.server_addr
                );
                let prefix = Netns::exec(&net.server_ns);
                let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
                let server = Server::start_in(&prefix, &net.server_addr, &[]);
                let url = server.url();
                let agents: Vec<Agent> = net
                    .agent_ns
                    .iter()
                    .enumerate()
                    .map(|(i, ns)| {
                        let prefix = Netns::exec(ns);
                        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
                        Agent::start_with(&prefix, &url, &format!("ns{i}"), 1, &[])
                    })
                    .collect();
                let log = server.dir.join("joblog.json");
                let remote = supervisor(
                    &[
                        "run",
                        "--nats",
                        &url,
                        "--task",
                        "prime-factors",
                        "--joblog",
                        log.to_str().unwrap(),
                        "--joblog-format",
                        "json",
                    ],
                    &input,
                );
                assert_eq!(remote.code, Some(0), "{}", remote.stderr);
                assert_eq!(remote.stdout, local.stdout);
                let hosts: std::collections::BTreeSet<String> = joblog(&log)
                    .iter()
                    .map(|l| l["host"].as_str().unwrap_or_default().to_string())
                    .collect();
                println!("hosts that ran tasks: {hosts:?}");
                // The submitter cannot read another host's memory: no peak for a task
                // that succeeded there (it was read from this host's `/proc` under the
                // agent's pid, another process's or none).
                for l in joblog(&log) {
                    assert!(l["peak_rss_kib"].is_null(), "{l}");
                }
                drop(agents);
                drop(server);
                drop(net);
            }
            Err(why) => {
                println!("variant: loopback (cannot make network namespaces: {why})");
                same_as_local(&["--task", "prime-factors"], &input, &[]);
            }
        }
    });
}

#[test]
fn an_agent_stops_at_once_on_sigterm_while_the_server_is_away() {
    common::isolated(DEADLINE, || {
        let mut server = Server::start(&[]);
        let url = server.url();
        let mut a = Agent::start(&url, "a", 1, &[]);
        // Connected once it is listed.
        let listed = (0..200).any(|_| {
            let out = supervisor(&["workers", "--nats", &url, "--format", "json"], b"");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if v[0]["host"] == "a" {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
            false
        });
        assert!(listed);
        server.stop();
        a.signal(libc::SIGTERM);
        let t = std::time::Instant::now();
        let status = a.child.wait().unwrap();
        assert!(status.success(), "{status}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "took {:?}",
            t.elapsed()
        );
    });
}

/// Over NATS's largest message: a 2 MB input fails at once with a clear error (it hung
/// the submitter for ever, republished every 250 ms), and so does a 2 MB output, from
/// one run of its command (it ran three times, then "no agent finished it").
#[test]
fn inputs_and_outputs_past_the_servers_largest_message_fail_clearly_once() {
    common::isolated(DEADLINE, || {
        let server = Server::start(&[]);
        let url = server.url();
        let a = Agent::start(&url, "a", 1, &["--allow-commands", "--ack-wait", "2s"]);
        let mut big = vec![b'y'; 2_000_000];
        big.push(b'\n');
        big.extend_from_slice(b"12\n");
        let out = supervisor(&["run", "--nats", &url, "--task", "prime-factors"], &big);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        assert!(out.stderr.contains("over the limit of"), "{}", out.stderr);
        assert!(
            stdout.contains("2 2 3"),
            "the small input still ran: {stdout}"
        );

        let dir = std::env::temp_dir().join(format!("sv-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let count = dir.join("runs");
        let cmd = format!(
            "echo run >> {}; head -c 2000000 /dev/zero | tr '\\0' x",
            count.display()
        );
        let out = supervisor(&["run", "--nats", &url, "--", "sh", "-c", &cmd], b"1\n");
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        assert!(
            out.stderr.contains("result") && out.stderr.contains("over the limit of"),
            "{}",
            out.stderr
        );
        let runs = std::fs::read_to_string(&count).unwrap();
        assert_eq!(
            runs.lines().count(),
            1,
            "the command ran {} times",
            runs.lines().count()
        );
        std::fs::remove_dir_all(&dir).unwrap();
        drop(a);
    });
}
