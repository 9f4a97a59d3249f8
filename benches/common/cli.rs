//! `supervisor run` in command mode against `xargs -P` and GNU parallel: runs of `true`
//! with 2 processes, and the machine's floor, the same commands (`/bin/true N`, N the
//! input) fork+exec'd bare from 2 threads; a bare `/bin/true` without the argument is
//! shown beside it (coreutils' `true` given an argument sets up its locale, which
//! costs more than the supervisor's own share: see [`floor`]).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::measure::medians;
use super::peers::installed;
use super::run::Ctx;
use super::start::fork_exec;
use super::table::{Floor, Peer, Row, Target, Unit};

/// Processes on every side.
const PROCS: usize = 2;

/// The time `argv` takes, run with stdin and stdout closed.
fn time(argv: &[&str]) -> Duration {
    let t = Instant::now();
    let status = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("running the command failed");
    assert!(status.success(), "{argv:?} failed: {status}");
    t.elapsed()
}

/// `n` bare fork+execs, `PROCS` at a time: of `/bin/true N` (N from 1 to `n`: the
/// commands `supervisor run -- true` and `xargs -n 1 true` run for the input lines)
/// with `with_argument`, else of `/bin/true` alone. The argument matters: coreutils'
/// `true` given one calls `setlocale` (a dozen more files opened and mapped under
/// `LANG=C.UTF-8`), about 0.2 ms more per run here, which no runner of `true N` can
/// avoid.
fn floor(n: usize, with_argument: bool) -> Duration {
    let t = Instant::now();
    std::thread::scope(|s| {
        for i in 0..PROCS {
            s.spawn(move || {
                (i..n).step_by(PROCS).for_each(|k| {
                    if with_argument {
                        fork_exec_true_with(&(k + 1).to_string());
                    } else {
                        fork_exec();
                    }
                })
            });
        }
    });
    t.elapsed()
}

/// A bare fork+exec of `/bin/true ARG` and wait.
fn fork_exec_true_with(arg: &str) {
    let status = Command::new("/bin/true")
        .arg(arg)
        .status()
        .expect("running /bin/true failed");
    assert!(status.success(), "/bin/true failed: {status}");
}

pub fn rows(ctx: &Ctx) -> Vec<Row> {
    let n = ctx.settings.size(1_000, 1);
    let input: String = (1..=n).map(|i| format!("{i}\n")).collect();
    let path = std::env::temp_dir().join(format!("supervisor-bench-cli-{}", std::process::id()));
    std::fs::write(&path, input).expect("writing the input file failed");
    let input = path.display().to_string();
    let procs = PROCS.to_string();
    let xargs = format!("xargs -P {PROCS} -n 1 true < {input}");
    let parallel = format!("parallel --will-cite -j {PROCS} true < {input}");
    let (have_xargs, have_parallel) = (installed("xargs"), installed("parallel"));
    let [Some(ours), Some(floor), Some(bare), xargs, parallel] = medians(
        ctx.settings.runs,
        [
            &mut || {
                Some(time(&[
                    env!("CARGO_BIN_EXE_supervisor"),
                    "run",
                    "-j",
                    &procs,
                    "--input",
                    &input,
                    "--",
                    "true",
                ]))
            },
            &mut || Some(floor(n, true)),
            &mut || Some(floor(n, false)),
            &mut || have_xargs.then(|| time(&["sh", "-c", &xargs])),
            &mut || have_parallel.then(|| time(&["sh", "-c", &parallel])),
        ],
    ) else {
        unreachable!("our measurements always run")
    };
    let _ = std::fs::remove_file(&path);
    let workload = format!("`supervisor run -j {PROCS} -- true` x{n}");
    let row = |peer, targets| Row {
        workload: workload.clone(),
        unit: Unit::Total,
        ours,
        peer,
        floor: Some(Floor {
            name: "fork+exec of `true N`",
            time: floor,
        }),
        targets,
    };
    let mut rows = vec![
        // Within 1.5x of xargs: peer / ours at least 1 / 1.5; within 1.3x of the
        // floor (issue 14).
        row(
            Peer::new(format!("xargs -P {PROCS}"), xargs),
            vec![Target::Faster(0.67), Target::FloorTimes(1.3)],
        ),
        row(
            Peer::new(format!("GNU parallel -j {PROCS}"), parallel),
            vec![Target::Faster(5.0)],
        ),
        // The same fork+execs without the argument, for reference: not the same work.
        row(
            Peer::new(format!("fork+exec of `/bin/true` x{n}"), Some(bare)),
            vec![],
        ),
    ];
    rows.extend(cat_rows(ctx));
    rows.extend(builtin_rows(ctx));
    rows
}

/// 100 MB through `cat` in command mode (10 inputs naming 10 MB files, their output
/// grouped, to stdout in input order), against `xargs -P 2 cat` (no grouping), GNU
/// parallel (which groups through temporary files too) and one `cat` of all ten, the
/// floor.
fn cat_rows(ctx: &Ctx) -> Vec<Row> {
    const FILES: usize = 10;
    let mib = ctx.settings.size(10, 1);
    let dir = std::env::temp_dir().join(format!("supervisor-bench-cat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the bench directory failed");
    let block: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut names = Vec::new();
    for i in 0..FILES {
        let path = dir.join(format!("{i}.bin"));
        std::fs::write(&path, block.repeat(mib)).expect("writing a bench file failed");
        names.push(path.display().to_string());
    }
    let list = dir.join("list");
    std::fs::write(
        &list,
        names.iter().map(|n| format!("{n}\n")).collect::<String>(),
    )
    .expect("writing the input file failed");
    let list = list.display().to_string();
    let procs = PROCS.to_string();
    let xargs = format!("xargs -P {PROCS} -n 1 cat < {list}");
    let parallel = format!("parallel --will-cite -j {PROCS} cat < {list}");
    let mut floor_argv = vec!["cat"];
    floor_argv.extend(names.iter().map(String::as_str));
    let (have_xargs, have_parallel) = (installed("xargs"), installed("parallel"));
    let exe = env!("CARGO_BIN_EXE_supervisor");
    let [Some(ours), Some(floor), xargs, parallel] = medians(
        ctx.settings.runs,
        [
            &mut || {
                Some(time(&[
                    exe, "run", "-j", &procs, "--input", &list, "--", "cat", "{}",
                ]))
            },
            &mut || Some(time(&floor_argv)),
            &mut || have_xargs.then(|| time(&["sh", "-c", &xargs])),
            &mut || have_parallel.then(|| time(&["sh", "-c", &parallel])),
        ],
    ) else {
        unreachable!("our measurements always run")
    };
    let _ = std::fs::remove_dir_all(&dir);
    let workload = format!("`supervisor run -j {PROCS} -- cat {{}}` x{FILES} of {mib} MiB");
    let row = |peer, targets| Row {
        workload: workload.clone(),
        unit: Unit::Total,
        ours,
        peer,
        floor: Some(Floor {
            name: "one cat",
            time: floor,
        }),
        targets,
    };
    vec![
        // No target: xargs neither groups nor captures (each cat splices straight into
        // /dev/null); the row shows what grouping through a spool costs.
        row(Peer::new(format!("xargs -P {PROCS} cat"), xargs), vec![]),
        row(
            Peer::new(format!("GNU parallel -j {PROCS} cat"), parallel),
            vec![Target::Faster(1.0)],
        ),
    ]
}

/// A built-in task over 100,000 `0ms` lines, stdin to stdout in input order (text, and
/// JSON with a job log), against Python's `Pool(2).map` over the same lines: timed from
/// inside the interpreter (the map and the pool's creation), and as a whole program
/// (`benches/python_cli.py`: what `time python3 ...` shows a shell user, as ours is
/// timed).
fn builtin_rows(ctx: &Ctx) -> Vec<Row> {
    let n = ctx.settings.size(100_000, 1);
    let path = std::env::temp_dir().join(format!("supervisor-bench-lines-{}", std::process::id()));
    std::fs::write(&path, "0ms\n".repeat(n)).expect("writing the input file failed");
    let joblog =
        std::env::temp_dir().join(format!("supervisor-bench-joblog-{}", std::process::id()));
    let (input, log) = (path.display().to_string(), joblog.display().to_string());
    let procs = PROCS.to_string();
    let exe = env!("CARGO_BIN_EXE_supervisor");
    let text = [
        exe, "run", "-j", &procs, "--task", "sleep", "--input", &input,
    ];
    let mut json = text.to_vec();
    json.extend([
        "--format",
        "json",
        "--joblog-format",
        "json",
        "--joblog",
        &log,
    ]);
    let python = ctx.python.as_ref();
    // The same job as a Python program timed from outside, as ours is.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python_cli.py");
    let program = ["python3", script, &input];
    let [Some(ours_text), Some(ours_json), python, python_program] = medians(
        ctx.settings.runs,
        [
            &mut || Some(time(&text)),
            &mut || Some(time(&json)),
            &mut || python.map(|p| p.run("cli_lines", n)),
            &mut || python.map(|_| time(&program)),
        ],
    ) else {
        unreachable!("our measurements always run")
    };
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&joblog);
    let row = |what: &str, ours, peer: &str, python| Row {
        workload: format!("`supervisor run -j {PROCS} --task sleep` x{n} `0ms`, {what}"),
        unit: Unit::Total,
        ours,
        peer: Peer::new(peer.to_string(), python),
        floor: None,
        targets: vec![Target::Faster(3.0)],
    };
    let map = format!("multiprocessing.Pool({PROCS}).map, timed inside");
    let program = format!("`python3 python_cli.py` (Pool({PROCS}).map), the process");
    vec![
        row("text", ours_text, &map, python),
        row("JSON + joblog", ours_json, &map, python),
        row("text", ours_text, &program, python_program),
        row("JSON + joblog", ours_json, &program, python_program),
    ]
}
