//! The other programs the benches run: Python (`benches/python_peer.py`) and the tools
//! of the command-line workloads.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The first line a program prints (on stdout or stderr) when run with `args`, or
/// `None` when it cannot be run or fails.
pub fn version(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    let line = String::from_utf8_lossy(&text)
        .lines()
        .next()?
        .trim()
        .to_string();
    Some(line)
}

/// Whether `program` is on the PATH.
pub fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `python3 benches/python_peer.py`, the Python side of every workload.
pub struct Python {
    script: PathBuf,
    /// As `python3 --version` prints it.
    pub version: String,
}

impl Python {
    /// `None` when there is no `python3`.
    pub fn find() -> Option<Python> {
        Some(Python {
            script: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/python_peer.py"),
            version: version("python3", &["--version"])?,
        })
    }

    /// One timed run of `workload` with `n` items: the seconds the script printed.
    pub fn run(&self, workload: &str, n: usize) -> Duration {
        let out = Command::new("python3")
            .arg(&self.script)
            .arg(workload)
            .arg(n.to_string())
            .stdin(Stdio::null())
            .output()
            .expect("running python3 failed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "python_peer.py {workload} {n} failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let secs: f64 = stdout
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("python_peer.py {workload}: no time in {stdout:?}"));
        Duration::from_secs_f64(secs)
    }
}
