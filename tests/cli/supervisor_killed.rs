//! A SIGKILLed supervisor leaves no worker or grandchild behind, also workers that outlive
//! their fork server.

use super::*;

/// Starts `run -j 2 --task fault` (plus `extra`) on two `spawn-grandchild` lines and
/// returns it with the pids of the two grandchildren its workers left running.
fn start_with_grandchildren(extra: &[&str]) -> (Child, Vec<i32>) {
    let mut args = vec!["run", "-j", "2", "--task", "fault"];
    args.extend_from_slice(extra);
    let mut child = start(&args);
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"spawn-grandchild\nspawn-grandchild\n")
        .unwrap();
    drop(stdin);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut grandchildren = Vec::new();
    while grandchildren.len() < 2 {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "{extra:?}: supervisor ended early"
        );
        if let Some(pid) = line
            .strip_prefix("fault: left grandchild ")
            .and_then(|r| r.split_whitespace().next())
        {
            grandchildren.push(pid.parse::<i32>().unwrap());
        }
    }
    (child, grandchildren)
}

#[test]
fn a_sigkilled_supervisor_leaves_no_worker_or_grandchild_behind() {
    isolated(DEADLINE, || {
        let (mut child, grandchildren) = start_with_grandchildren(&[]);
        child.kill().unwrap();
        child.wait().unwrap();
        for pid in grandchildren {
            assert!(
                wait_exit(pid, Duration::from_secs(2)),
                "grandchild {pid} survived"
            );
        }
        assert_all_gone(Duration::from_secs(2));
    });
}

/// The same with the fork server of each server start method SIGKILLed first: its
/// workers outlive it (they watch the run, not the server), and still end, with their
/// commands, when the run is SIGKILLed.
#[test]
fn workers_outliving_their_fork_server_still_end_with_a_sigkilled_supervisor() {
    isolated(DEADLINE, || {
        for method in ["fork", "forkserver"] {
            let (mut child, grandchildren) = start_with_grandchildren(&["--start-method", method]);
            let parent = |pid: i32| stat_fields(pid).map(|s| s.ppid).unwrap_or(0);
            let workers: Vec<i32> = grandchildren.iter().map(|&g| parent(g)).collect();
            let server = parent(workers[0]);
            assert_ne!(
                server,
                child.id() as i32,
                "{method}: workers are the server's"
            );
            // SAFETY: kill with plain integers; the run's own fork server.
            unsafe { libc::kill(server, libc::SIGKILL) };
            assert!(
                wait_exit(server, Duration::from_secs(5)),
                "{method}: server lives"
            );
            for &w in &workers {
                assert!(!has_exited(w), "{method}: worker {w} died with its server");
            }
            child.kill().unwrap();
            child.wait().unwrap();
            for pid in workers.into_iter().chain(grandchildren) {
                assert!(
                    wait_exit(pid, Duration::from_secs(2)),
                    "{method}: {pid} survived the run"
                );
            }
        }
        assert_all_gone(Duration::from_secs(2));
    });
}
