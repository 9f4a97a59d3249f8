//! A slow task at the head of the output order: the tasks behind it still run, and their
//! waiting outputs keep memory and descriptors bounded.

use super::*;

/// A run whose first task waits for a gate, and what was seen while it waited.
struct Gated {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
    /// Start and end (JSON job log: start, start + duration_ms) by seq.
    ends: std::collections::BTreeMap<u64, (f64, f64)>,
    /// Every task behind the gate had ended (its job log line was written) before the
    /// gate opened.
    all_before_gate: bool,
    /// How many had.
    ended_before_gate: usize,
    /// The supervisor's peak RSS (KiB) and open descriptors when they had (or when the
    /// wait for them gave up).
    peak_rss_kib: u64,
    fds: usize,
}

/// Runs `supervisor run -j 2 --joblog-format json --joblog LOG ARGS` on `input` (with at most `nofile`
/// descriptors), waits (at most 90 s) until the job log lists every task but the first,
/// looks at the supervisor's memory and descriptors, then calls `open_gate` (which lets
/// the first task end) and waits for the run.
fn gated_run(
    dir: &std::path::Path,
    args: &[&str],
    input: &[u8],
    nofile: Option<u32>,
    open_gate: impl FnOnce(),
) -> Gated {
    // The JSON job log: it gets each line as the result arrives (parallel's waits for
    // the output to be printed, which here is after the gate).
    let log = dir.join("jobs.jsonl");
    let input_path = dir.join("input");
    std::fs::write(&input_path, input).unwrap();
    let behind = input
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
        - 1;
    let mut cmd = match nofile {
        Some(n) => {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), BIN]);
            c
        }
        None => Command::new(BIN),
    };
    cmd.args(["run", "-j", "2", "--joblog-format", "json", "--joblog"])
        .arg(&log)
        .args(args)
        .stdin(std::fs::File::open(&input_path).unwrap())
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let lines = || {
        std::fs::read_to_string(&log)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    // Generous: on a loaded 2-core machine 10,000 short commands took over 60 s.
    let until = Instant::now() + Duration::from_secs(90);
    let mut ended_before_gate = lines();
    while Instant::now() < until && !has_exited(pid as i32) && ended_before_gate < behind {
        std::thread::sleep(Duration::from_millis(20));
        ended_before_gate = lines();
    }
    let all_before_gate = ended_before_gate >= behind;
    let peak_rss_kib = common::status_kib(&pid.to_string(), "VmHWM");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    eprintln!("waiting: peak RSS {peak_rss_kib} KiB, {fds} descriptors");
    open_gate();
    let finished = wait_exit(pid as i32, Duration::from_secs(60));
    if !finished {
        let _ = child.kill();
    }
    let code = child.wait().unwrap().code().unwrap_or(-1);
    assert!(finished, "the run did not end after the gate opened");
    let ends = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let start = v["start"].as_f64().unwrap();
            let runtime = v["duration_ms"].as_f64().unwrap() / 1000.0;
            (v["seq"].as_u64().unwrap(), (start, start + runtime))
        })
        .collect();
    Gated {
        code,
        stdout: std::fs::read(dir.join("stdout")).unwrap(),
        stderr: std::fs::read_to_string(dir.join("stderr")).unwrap(),
        ends,
        all_before_gate,
        ended_before_gate,
        peak_rss_kib,
        fds,
    }
}

impl Gated {
    /// Every task but the first ended before the first did (job log times).
    fn assert_all_ended_before_the_first(&self) {
        assert!(
            self.all_before_gate,
            "only {} of the {} tasks behind the slow one ended while it ran; stderr: {}",
            self.ended_before_gate,
            self.ends.len() - 1,
            self.stderr
        );
        let (_, head_end) = self.ends[&1];
        let late: Vec<u64> = self
            .ends
            .iter()
            .filter(|(seq, (_, end))| **seq != 1 && *end > head_end)
            .map(|(seq, _)| *seq)
            .collect();
        assert!(late.is_empty(), "tasks ended after the slow one: {late:?}");
    }
}

/// The gate of a command: the first input waits until `go` exists (for at most 120 s,
/// so the run ends whatever happens); every command then prints its input on a line
/// and `bytes` NUL bytes.
fn gate_script(go: &std::path::Path, bytes: usize) -> String {
    format!(
        "if [ \"$0\" = gate ]; then i=0; while [ ! -e {go} ] && [ $i -lt 12000 ]; do sleep 0.01; i=$((i+1)); done; fi; echo \"$0\"; head -c {bytes} /dev/zero",
        go = go.display()
    )
}

/// A built-in task that waits (a `search` of a FIFO nobody writes yet) ahead of 5,000
/// quick ones on 2 workers: the quick ones all run and end while it waits, and the
/// output is still in input order. Before, the run read no more than 1,024 inputs
/// per worker ahead of the output, so about 2,950 of them waited for the slow one
/// while both workers but one sat idle.
#[test]
fn a_slow_built_in_task_at_the_head_does_not_hold_back_the_tasks_behind_it() {
    isolated(DEADLINE, || {
        let dir = temp_dir("held-builtin");
        let fifo = dir.join("gate");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let mut input = format!("{}\n", fifo.display());
        for i in 0..5000 {
            let f = dir.join(format!("f{i}"));
            std::fs::write(&f, format!("x{i}\n")).unwrap();
            input.push_str(&format!("{}\n", f.display()));
        }
        let open_gate = || {
            use std::os::unix::fs::OpenOptionsExt;
            // The waiting task holds the FIFO open for reading: opening it for writing
            // and closing it gives that task its end of file.
            let until = Instant::now() + Duration::from_secs(30);
            while Instant::now() < until {
                let w = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&fifo);
                if w.is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        let run = gated_run(
            &dir,
            &["--task", "search", "--arg", "pattern=x"],
            input.as_bytes(),
            None,
            open_gate,
        );
        run.assert_all_ended_before_the_first();
        let want: String = (0..5000)
            .map(|i| format!("{}:1:x{i}\n", dir.join(format!("f{i}")).display()))
            .collect();
        let out = String::from_utf8(run.stdout).unwrap();
        // The gate's search found nothing: one empty line first.
        assert_eq!(out.strip_prefix('\n'), Some(&*want), "not in input order");
        assert_eq!(run.code, 0, "stderr: {}", run.stderr);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// 4,000 commands of 15 KB of output each behind one that waits, on 2 workers: they
/// all run while it waits (before, 128 did), the supervisor's memory stays bounded
/// although 60 MB of output wait for their turn (past 16 MiB they wait in a spill
/// file), and the output comes in input order, byte for byte.
#[test]
fn outputs_waiting_behind_a_slow_command_keep_the_memory_bounded() {
    isolated(DEADLINE, || {
        let dir = temp_dir("held-memory");
        let go = dir.join("go");
        // 60 MB waiting, in few enough commands to run in a few seconds on 2 cores.
        let (n, size) = (4_000, 15_000);
        let input: String = std::iter::once("gate\n".to_string())
            .chain((1..=n).map(|i| format!("{i}\n")))
            .collect();
        let script = gate_script(&go, size);
        let run = gated_run(
            &dir,
            &["--", "sh", "-c", &script, "{}"],
            input.as_bytes(),
            None,
            || std::fs::write(&go, b"").unwrap(),
        );
        run.assert_all_ended_before_the_first();
        assert!(
            run.peak_rss_kib < 56 * 1024,
            "peak RSS {} KiB with 60 MB of output waiting",
            run.peak_rss_kib
        );
        assert_eq!(run.stdout.len(), input.len() + (n + 1) * size);
        let text: Vec<u8> = run.stdout.iter().copied().filter(|b| *b != 0).collect();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            input,
            "not in input order"
        );
        assert_eq!(run.code, 0, "stderr: {}", run.stderr);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// 400 commands whose 70 KB outputs are spooled (past the 64 KiB kept in memory)
/// behind one that waits, under a limit of 256 descriptors: they all run while it
/// waits, and the waiting spools do not hold a descriptor each (past 64, they are
/// copied into one spill file), so nothing runs out of descriptors; the output is in
/// input order, byte for byte.
#[test]
fn spooled_outputs_waiting_behind_a_slow_command_keep_the_descriptors_bounded() {
    // Under 256 descriptors, and under 64, where the pool's own take a third of them
    // (before: past 64 spools kept their own descriptor, and under `ulimit -n 64`
    // most outputs were lost, "cannot open the spooled output ...: Too many open
    // files"; found by the adversarial pass).
    for nofile in [256, 64] {
        spooled_outputs_behind_a_slow_command(nofile);
    }
}

fn spooled_outputs_behind_a_slow_command(nofile: u32) {
    isolated(DEADLINE, move || {
        let dir = temp_dir("held-fds");
        let go = dir.join("go");
        let n = 400;
        let input: String = std::iter::once("gate\n".to_string())
            .chain((1..=n).map(|i| format!("{i}\n")))
            .collect();
        let script = gate_script(&go, 70_000);
        let run = gated_run(
            &dir,
            &["--", "sh", "-c", &script, "{}"],
            input.as_bytes(),
            Some(nofile),
            || std::fs::write(&go, b"").unwrap(),
        );
        run.assert_all_ended_before_the_first();
        assert!(run.fds < 160, "{} descriptors open", run.fds);
        assert_eq!(run.stdout.len(), input.len() + (n + 1) * 70_000);
        let text: Vec<u8> = run.stdout.iter().copied().filter(|b| *b != 0).collect();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            input,
            "not in input order"
        );
        assert_eq!(run.code, 0, "stderr: {}", run.stderr);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
