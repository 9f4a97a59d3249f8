//! Two runs at once given one job log: the second is refused (exit 2) and runs nothing,
//! so the first's lines are neither truncated nor overwritten. From the adversarial pass
//! adv14c: on 0c655e9 two `supervisor run -j 2 --joblog shared.jl -- echo` of 20,000
//! inputs each, started together, left 20,000 lines for 40,000 tasks (one of them two
//! lines run together), both runs exiting 0.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::isolated;

const BIN: &str = env!("CARGO_BIN_EXE_supervisor");
const DEADLINE: Duration = Duration::from_secs(60);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("supervisor-shared-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_for(path: &Path, within: Duration) {
    let end = Instant::now() + within;
    while !path.exists() {
        assert!(Instant::now() < end, "{} did not appear", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `supervisor run -j 2 --joblog LOG [extra] sh -c SCRIPT ::: INPUTS`.
fn run(log: &Path, extra: &[&str], script: &str, inputs: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "-j", "2", "--joblog"])
        .arg(log)
        .args(extra)
        .args(["sh", "-c", script, ":::"])
        .args(inputs)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn a_second_run_on_a_job_log_in_use_is_refused_and_runs_nothing() {
    isolated(DEADLINE, || {
        let dir = temp_dir("joblog");
        let log = dir.join("jobs.tsv");
        let d = dir.display().to_string();
        let first = run(
            &log,
            &[],
            &format!("touch {d}/a.$0; while [ ! -e {d}/go ]; do sleep 0.01; done"),
            &["1", "2"],
        )
        .spawn()
        .unwrap();
        wait_for(&dir.join("a.1"), Duration::from_secs(20));
        wait_for(&dir.join("a.2"), Duration::from_secs(20));
        for extra in [&[][..], &["--resume"][..]] {
            let second = run(&log, extra, &format!("touch {d}/b.$0"), &["1", "2", "3"])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&second.stderr);
            assert_eq!(second.status.code(), Some(2), "{extra:?}: {stderr}");
            assert!(stderr.contains("in use by another run"), "{stderr}");
            for i in 1..=3 {
                assert!(
                    !dir.join(format!("b.{i}")).exists(),
                    "the second run ran {i}"
                );
            }
        }
        std::fs::write(dir.join("go"), "").unwrap();
        let out = first.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("Seq\t"), "{text}");
        let mut seqs: Vec<&str> = lines[1..]
            .iter()
            .map(|l| l.split('\t').next().unwrap_or(""))
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, ["1", "2"], "{text}");
        // Once the first run is over the job log is free again.
        let third = run(&log, &["--resume"], "true", &["1", "2", "3"])
            .output()
            .unwrap();
        assert_eq!(
            third.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&third.stderr)
        );
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    });
}
