//! A SIGKILLed parent takes its pool's idle and bootstrapping workers with it, and what
//! its running task started, also in sessions of their own.

use super::*;

#[test]
fn a_sigkilled_parent_takes_idle_and_bootstrapping_pool_workers_with_it() {
    use std::io::BufRead;
    isolated(DEADLINE, || {
        for method in StartMethod::ALL {
            for bootstrapping in [false, true] {
                if bootstrapping && method != StartMethod::Spawn {
                    continue; // only spawned workers have a bootstrap
                }
                let mut cmd = common::scenario("pool_parent");
                cmd.env("METHOD", method.name());
                if bootstrapping {
                    cmd.env("SUPERVISOR_FAULT", "hang-before-connect");
                }
                let dirs_before = common::bootstrap_dirs();
                let mut parent = cmd.spawn().unwrap();
                let mut line = String::new();
                std::io::BufReader::new(parent.stdout.take().unwrap())
                    .read_line(&mut line)
                    .unwrap();
                let pids: Vec<i32> = line
                    .split_whitespace()
                    .map(|p| p.parse().unwrap())
                    .collect();
                assert!(pids.len() >= 3, "{method}: {line}");
                parent.kill().unwrap();
                parent.wait().unwrap();
                for pid in pids {
                    assert!(
                        common::wait_exit(pid, Duration::from_secs(2)),
                        "{method} (bootstrapping: {bootstrapping}): worker {pid} outlived its parent"
                    );
                }
                // A parent SIGKILLed mid-bootstrap cannot remove its socket
                // directories, nor the probes that record them (a later start's sweep
                // removes both): the OS gives no hook. Documented; removed here.
                let left: Vec<_> = common::bootstrap_dirs()
                    .difference(&dirs_before)
                    .cloned()
                    .collect();
                for dir in &left {
                    assert!(
                        bootstrapping,
                        "{method}: a bootstrap directory was left: {dir}"
                    );
                    let _ = std::fs::remove_dir_all(dir);
                }
                let probe = format!(".supervisor-probe-{}-", parent.id());
                for entry in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if let Some(made) = name.strip_prefix(&probe) {
                        // After the namespaces it records (`nNET-pPIDNS-`).
                        let made = made.rsplit('-').next().unwrap_or(made);
                        assert!(
                            left.iter().any(|d| d.ends_with(made)),
                            "{method}: a probe names no directory left: {name} ({left:?})"
                        );
                        // A file (an earlier version's probe was a directory).
                        let path = entry.path();
                        if path.is_dir() {
                            std::fs::remove_dir(&path).unwrap();
                        } else {
                            std::fs::remove_file(&path).unwrap();
                        }
                    }
                }
            }
        }
    });
}

/// A SIGKILLed parent takes with it what its running task started, also processes in
/// sessions of their own that ignore SIGTERM (before: the worker killed its process
/// group and died, and the chain ran on under init).
#[test]
fn a_sigkilled_parent_takes_the_tasks_escaped_descendants_with_it() {
    use std::io::BufRead;
    isolated(DEADLINE, || {
        for method in StartMethod::ALL {
            let mut cmd = common::scenario("chain_parent");
            cmd.env("METHOD", method.name());
            let mut parent = cmd.spawn().unwrap();
            let mut line = String::new();
            std::io::BufReader::new(parent.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            let last: i32 = line.trim().parse().unwrap_or_else(|_| panic!("{line}"));
            parent.kill().unwrap();
            parent.wait().unwrap();
            let gone = common::wait_exit(last, Duration::from_secs(3));
            if !gone {
                // SAFETY: kill with plain integers; the process is still there.
                unsafe { libc::kill(last, libc::SIGKILL) };
            }
            assert!(gone, "{method}: {last} outlived the SIGKILLed parent");
        }
    });
}
