//! Commands as library tasks: bytes in and out (inline and spooled), the pool's
//! timeout, retries and nice applying to a command, and a `Process` running one.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use common::isolated;
use supervisor::{Command, CommandError, ErrorKind, ExitStatus, Pool, Process};

const DEADLINE: Duration = Duration::from_secs(60);

/// 100,000 bytes of every value, in a scrambled order.
fn random_bytes() -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn binary_output_comes_back_byte_exact_in_memory_and_spooled() {
    isolated(DEADLINE, || {
        let pool = Pool::new(2).unwrap();
        let data = random_bytes();
        // Default limit: in memory. A 4 KiB limit: spooled, read back from the file.
        for (limit, spooled) in [(supervisor::DEFAULT_INLINE_LIMIT, false), (4096, true)] {
            let out = pool
                .submit_command(Command::new("cat").stdin(data.clone()).inline_limit(limit))
                .wait()
                .unwrap()
                .unwrap();
            assert_eq!(out.status, ExitStatus::Code(0));
            assert_eq!(out.stdout.is_spooled(), spooled);
            assert_eq!(out.stdout.len(), data.len() as u64);
            assert!(
                out.stdout.to_vec().unwrap() == data,
                "cat changed the bytes"
            );
            assert!(out.stderr.is_empty());
            assert_ne!(out.pid, 0);
        }
        let gz = pool
            .submit_command(Command::shell("printf hello | gzip -c"))
            .wait()
            .unwrap()
            .unwrap();
        let back = Command::new("gzip")
            .arg("-dc")
            .stdin(gz.stdout.to_vec().unwrap())
            .output()
            .unwrap();
        assert!(back.status.success(), "gunzip refused the output");
        assert_eq!(back.stdout.to_vec().unwrap(), b"hello");
    });
}

#[test]
fn arguments_env_and_directory_reach_the_command_as_bytes() {
    isolated(DEADLINE, || {
        let pool = Pool::new(1).unwrap();
        let name = OsStr::from_bytes(b"caf\xe9.txt");
        let dir = std::env::temp_dir();
        let cmds = vec![
            Command::new("printf").arg("%s").arg(name),
            Command::shell("printf %s \"$V\"").env("V", OsStr::from_bytes(b"\xff\xfe")),
            Command::new("pwd").current_dir(&dir),
            Command::shell("printf '%s|' \"$@\"").args(["x; echo INJECTED", "$(id)"]),
            Command::shell("echo oops >&2; exit 3"),
        ];
        let outs: Vec<_> = pool
            .map_commands(cmds)
            .map(|r| r.unwrap().unwrap())
            .collect();
        assert_eq!(outs[0].stdout.to_vec().unwrap(), b"caf\xe9.txt");
        assert_eq!(outs[1].stdout.to_vec().unwrap(), b"\xff\xfe");
        assert_eq!(
            outs[2].stdout.to_vec().unwrap(),
            format!("{}\n", dir.display()).into_bytes()
        );
        assert_eq!(outs[3].stdout.to_vec().unwrap(), b"x; echo INJECTED|$(id)|");
        assert_eq!(outs[4].status, ExitStatus::Code(3));
        assert_eq!(outs[4].stderr.to_vec().unwrap(), b"oops\n");
        let missing = pool
            .submit_command(Command::new("/nonexistent/program"))
            .wait()
            .unwrap();
        assert!(
            matches!(&missing, Err(CommandError::Start { program, .. }) if program == "/nonexistent/program"),
            "{missing:?}"
        );
    });
}

/// Whether a process whose command line is exactly `argv` exists.
fn running(argv: &[&str]) -> bool {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want)
            && !std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
    })
}

#[test]
fn a_command_gets_the_pools_timeout_retries_and_nice() {
    isolated(DEADLINE, || {
        let pool = Pool::builder()
            .procs(2)
            .nice(7)
            .retries(1)
            .task_timeout(Duration::from_millis(500))
            .grace(Duration::from_millis(200))
            .build()
            .unwrap();
        // Nice value of the command itself.
        let nice = pool
            .submit_command(Command::new("nice"))
            .wait()
            .unwrap()
            .unwrap();
        assert_eq!(nice.stdout.to_vec().unwrap(), b"7\n");

        // Past the limit: the worker's group is killed, the command with it (after
        // the retry timed out as well).
        let t = Instant::now();
        let slow = pool
            .submit_command(Command::new("sleep").arg("31.25"))
            .wait();
        assert!(
            matches!(
                slow.as_ref().map_err(|e| e.kind()),
                Err(ErrorKind::TimedOut { .. })
            ),
            "{slow:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(20));
        let gone = Instant::now() + Duration::from_secs(10);
        while running(&["sleep", "31.25"]) {
            assert!(
                Instant::now() < gone,
                "the timed-out command is still running"
            );
            std::thread::sleep(Duration::from_millis(10));
        }

        // The first attempt kills its worker; the retry finds the marker and prints
        // binary output.
        let marker = std::env::temp_dir().join("retry-marker");
        let script = "if [ -e \"$1\" ]; then rm \"$1\"; printf '\\377\\000\\376'; else : > \"$1\"; kill -KILL $PPID; sleep 5; fi";
        let retried = pool
            .submit_command(Command::shell(script).arg(&marker))
            .wait()
            .unwrap()
            .unwrap();
        assert_eq!(retried.stdout.to_vec().unwrap(), b"\xff\x00\xfe");
        assert!(!marker.exists());
    });
}

#[test]
fn a_process_runs_a_command_and_hands_back_a_spooled_output() {
    isolated(DEADLINE, || {
        let cmd = Command::shell("head -c 3000000 /dev/zero; printf end").inline_limit(1 << 16);
        let mut p = Process::command(cmd).start().unwrap();
        let out = p.join().unwrap().unwrap();
        assert!(out.status.success());
        assert!(out.stdout.is_spooled());
        assert_eq!(out.stdout.len(), 3_000_003);
        let all = out.stdout.to_vec().unwrap();
        assert!(all[..3_000_000].iter().all(|b| *b == 0));
        assert_eq!(&all[3_000_000..], b"end");
        let mut sink = Vec::new();
        assert_eq!(out.stdout.write_to(&mut sink).unwrap(), 3_000_003);
        assert!(sink == all);
    });
}

#[test]
fn spooled_results_waiting_behind_a_slow_one_are_all_delivered() {
    isolated(DEADLINE, || {
        // More spools than a worker keeps for its receiver (256) finish while the
        // first, slow command holds up the ordered output.
        let pool = Pool::builder().procs(2).read_ahead(1000).build().unwrap();
        let cmds = std::iter::once(Command::new("sleep").arg("3"))
            .chain((0..400).map(|i| Command::new("echo").arg(i.to_string()).inline_limit(0)));
        let mut n = 0;
        for (i, r) in pool.map_commands(cmds).enumerate() {
            let out = r.unwrap().unwrap();
            if i > 0 {
                assert!(out.stdout.is_spooled());
                assert_eq!(
                    out.stdout.to_vec().unwrap(),
                    format!("{}\n", i - 1).into_bytes()
                );
            }
            n += 1;
        }
        assert_eq!(n, 401);
    });
}

#[test]
fn a_spooled_result_decodes_after_its_worker_has_exited() {
    isolated(DEADLINE, || {
        // Every worker ends after one task; the results are taken only after that.
        let pool = Pool::builder()
            .procs(2)
            .max_tasks_per_child(1)
            .build()
            .unwrap();
        let dir = std::env::temp_dir();
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let pid_file = dir.join(format!("spool-worker-{i}"));
                let cmd = Command::shell("echo $PPID > \"$1\"; seq 20000")
                    .arg(&pid_file)
                    .inline_limit(0);
                (pool.submit_command(cmd), pid_file)
            })
            .collect();
        for (handle, pid_file) in &handles {
            let until = Instant::now() + Duration::from_secs(30);
            let worker: i32 = loop {
                let read = std::fs::read_to_string(pid_file).ok();
                if let Some(pid) = read.and_then(|s| s.trim().parse().ok()) {
                    break pid;
                }
                assert!(Instant::now() < until, "the task never started");
                std::thread::sleep(Duration::from_millis(5));
            };
            assert!(common::wait_exit(worker, Duration::from_secs(30)));
            assert!(handle.is_ready());
        }
        let all: String = (1..=20000).map(|n| format!("{n}\n")).collect();
        for (handle, pid_file) in handles {
            let out = handle.wait().unwrap().unwrap();
            assert!(out.stdout.is_spooled());
            assert!(out.stdout.to_vec().unwrap() == all.as_bytes());
            std::fs::remove_file(pid_file).unwrap();
        }
    });
}

#[test]
fn nothing_starts_once_the_pools_halt_condition_holds() {
    isolated(DEADLINE, || {
        let pool = Pool::new(1).unwrap();
        pool.cancel_pending_when(|_succeeded, failed| failed >= 1);
        let dir = std::env::temp_dir();
        let marker = dir.join("halt-gate-ran");
        // Cannot start: the task returns `Err`, a failure.
        let first = pool.submit_command(Command::new("/nonexistent/program"));
        let second = pool.submit_command(Command::shell("touch \"$1\"").arg(&marker));
        assert!(matches!(first.wait(), Ok(Err(_))));
        let second = second.wait();
        assert!(
            matches!(
                second.as_ref().map_err(|e| e.kind()),
                Err(ErrorKind::Cancelled { .. })
            ),
            "{second:?}"
        );
        assert!(
            !marker.exists(),
            "a task started after the halt condition held"
        );
    });
}
