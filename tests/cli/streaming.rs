//! Output while commands run: line-buffered and ungrouped output, and spooled results that
//! outlive their workers while output waits for a slow reader.

use super::*;

/// `--line-buffer` prints a command's line as soon as it is written and `-u` passes it
/// through as it comes: the command prints a line, then waits on a FIFO that this test
/// writes only after it has read that line on supervisor's stdout (before: output was
/// grouped, so the line came only after the command ended: here, never). Bytes are kept
/// whatever the line lengths.
#[test]
fn line_buffer_and_ungroup_print_output_while_the_command_runs() {
    isolated(DEADLINE, || {
        let dir = temp_dir("line-buffer");
        let fifo = dir.join("fifo");
        for option in ["--line-buffer", "-u"] {
            assert!(Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success());
            let mut child = Command::new(BIN)
                .current_dir(&dir)
                .args([
                    "run",
                    option,
                    "echo first {}; cat fifo; echo third",
                    ":::",
                    "x",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdout = BufReader::new(child.stdout.take().unwrap());
            let (tx, rx) = std::sync::mpsc::channel();
            let reader = std::thread::spawn(move || {
                let mut line = String::new();
                stdout.read_line(&mut line).unwrap();
                tx.send(line).unwrap();
                let mut rest = String::new();
                std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
                rest
            });
            let first = rx.recv_timeout(Duration::from_secs(20));
            // Let the command go on (and end) whatever happened.
            std::fs::write(&fifo, "second\n").unwrap();
            let rest = reader.join().unwrap();
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                first.as_deref(),
                Ok("first x\n"),
                "{option}: the first line did not come while the command ran"
            );
            assert_eq!(rest, "second\nthird\n", "{option}");
            assert!(
                out.status.success(),
                "{option}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::remove_file(&fifo).unwrap();
        }
        // A SIGKILLed --line-buffer run leaves nothing in TMPDIR (the leak check of
        // `isolated` looks): its lock file has no name. Before, its named lock file
        // stayed behind.
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let mut child = Command::new(BIN)
            .current_dir(&dir)
            .args([
                "run",
                "--line-buffer",
                "echo first {}; cat fifo",
                ":::",
                "x",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "first x\n");
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_file(&fifo).unwrap();
        // A worker's start the SIGKILL cut short may have left its bootstrap directory:
        // the next start sweeps what a dead parent left (documented), as here, once it
        // is older than a live start could be (2 s: a sweep never takes a directory a
        // start in another network namespace, whose socket it cannot see, still uses).
        let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                // A bootstrap directory, or the probe that names it (a probe left by
                // the SIGKILL is swept only when as old, too: a CI failure).
                name.starts_with(".tmp") || name.starts_with(".supervisor-probe-")
            })
            .collect();
        for dir in &left {
            let until = Instant::now() + Duration::from_secs(10);
            while dir
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age < Duration::from_millis(2200))
            {
                assert!(Instant::now() < until, "the clock stands still");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let next = cli(&["run", "true", ":::", "x"], "");
        assert_eq!(next.code, 0, "{}", next.stderr);
        // Binary output, with "lines" longer than the line limit, byte for byte.
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(dir.join("data"), &data).unwrap();
        let out = Command::new(BIN)
            .current_dir(&dir)
            .args(["run", "--line-buffer", "cat", ":::", "data"])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(
            out.stdout == data,
            "{} bytes of {}",
            out.stdout.len(),
            data.len()
        );
        // Output errors as for our own output: a full disk says so once and exits 3;
        // a closed pipe (the reader went away) exits 141 quietly.
        for option in ["--line-buffer", "-u"] {
            let out = Command::new(BIN)
                .args(["run", option, "echo", ":::", "hi"])
                .stdout(std::fs::File::create("/dev/full").unwrap())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            if option == "--line-buffer" {
                assert_eq!(out.status.code(), Some(3), "{option}: {stderr}");
                assert_eq!(
                    stderr.matches("cannot write the output").count(),
                    1,
                    "{option}: {stderr}"
                );
            } else {
                // The command itself writes (and fails): its own message and exit code.
                assert_eq!(out.status.code(), Some(1), "{option}: {stderr}");
            }
            let mut child = Command::new(BIN)
                .args(["run", option, "yes", ":::", "y"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdout = BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            assert_eq!(line, "y\n", "{option}");
            drop(stdout);
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(141), "{option}: {stderr}");
            assert_eq!(stderr, "", "{option}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn spooled_results_outlive_their_workers_while_output_waits_for_a_slow_reader() {
    isolated(DEADLINE, || {
        use std::io::Read;
        let dir = temp_dir("spool-outlives");
        // Each task prints 1.3 MB (past the inline limit: spooled) and says which
        // worker ran it; every worker ends after one task.
        let script = format!("echo $PPID > {}/w.$0; seq 200000", dir.display());
        let mut child = Command::new(BIN)
            .args(["run", "-j", "2", "--max-tasks-per-child", "1"])
            .args(["sh", "-c", &script, ":::", "1", "2", "3", "4"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Nobody reads the output yet: the supervisor is stuck printing task 1's while
        // the other tasks finish and their workers exit.
        for i in 1..=4 {
            let worker = wait_number_in(&dir.join(format!("w.{i}")), Duration::from_secs(30));
            assert!(
                wait_exit(worker, Duration::from_secs(30)),
                "worker {worker} of task {i} did not end"
            );
        }
        let mut stderr = child.stderr.take().unwrap();
        let errs = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = child.wait().unwrap();
        let errs = errs.join().unwrap();
        let one: String = (1..=200000).map(|n| format!("{n}\n")).collect();
        assert_eq!(out.len(), 4 * one.len(), "stderr: {errs}");
        assert_eq!(out, one.repeat(4));
        assert_eq!(status.code(), Some(0), "stderr: {errs}");
        let _ = std::fs::remove_dir_all(&dir);
    });
}
