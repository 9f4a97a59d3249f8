//! `supervisor run` in command mode against `xargs -P` and GNU parallel: 2,000 runs of
//! `true` with 2 processes, measured in the same run, interleaved, medians.
//!
//! Run: `cargo bench --bench cli` (RUNS=N to change the 5 repetitions). A peer that is
//! not installed is skipped and said so.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let bin = env!("CARGO_BIN_EXE_supervisor");
    let input: String = (1..=2000).map(|i| format!("{i}\n")).collect();
    let input_path =
        std::env::temp_dir().join(format!("supervisor-bench-cli-{}", std::process::id()));
    std::fs::write(&input_path, &input).expect("write the input file");
    let input_arg = input_path.display().to_string();
    let have = |prog: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {prog}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut contenders: Vec<(&str, Vec<String>)> = vec![(
        "supervisor run -j 2 -- true",
        vec![
            bin.into(),
            "run".into(),
            "-j".into(),
            "2".into(),
            "--input".into(),
            input_arg.clone(),
            "--".into(),
            "true".into(),
        ],
    )];
    if have("xargs") {
        contenders.push((
            "xargs -P 2 -n 1 true",
            vec![
                "sh".into(),
                "-c".into(),
                format!("xargs -P 2 -n 1 true < {input_arg}"),
            ],
        ));
    } else {
        println!("xargs not found: peer skipped");
    }
    if have("parallel") {
        contenders.push((
            "parallel -j 2 true",
            vec![
                "sh".into(),
                "-c".into(),
                format!("parallel --will-cite -j 2 true < {input_arg}"),
            ],
        ));
    } else {
        println!("GNU parallel not found (apt-get install parallel): peer skipped");
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    for _ in 0..runs {
        for (i, (_, argv)) in contenders.iter().enumerate() {
            let t = Instant::now();
            let status = Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .expect("run the contender");
            assert!(status.success(), "{argv:?} failed");
            samples[i].push(t.elapsed());
        }
    }
    let _ = std::fs::remove_file(&input_path);
    let medians: Vec<Duration> = samples
        .iter_mut()
        .map(|s| {
            s.sort();
            s[s.len() / 2]
        })
        .collect();
    println!("2,000 runs of `true`, 2 processes, median of {runs} (interleaved)");
    println!(
        "{:<30} {:>10} {:>18}",
        "command", "median", "supervisor faster"
    );
    for ((name, _), m) in contenders.iter().zip(&medians) {
        println!(
            "{name:<30} {:>8.0}ms {:>17.2}x",
            m.as_secs_f64() * 1000.0,
            m.as_secs_f64() / medians[0].as_secs_f64()
        );
    }
    println!("targets: faster than GNU parallel by 5x; within 1.5x of xargs (ratio >= 0.67)");
}
