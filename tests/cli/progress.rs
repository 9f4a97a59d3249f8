//! The progress bar: on a terminal only, with ETA, a total, a rounded rate and a summary.

use super::*;

#[test]
fn the_progress_bar_shows_on_a_terminal_and_not_when_piped() {
    isolated(DEADLINE, || {
        // Piped: nothing but results.
        let out = cli(&["run", "--task", "sleep"], &lines(5, "50ms"));
        assert_eq!(out.stderr, "");
        // Piped with --progress always: plain progress lines, fit for a log.
        let out = cli(
            &["run", "--progress", "always", "--task", "sleep"],
            &lines(5, "50ms"),
        );
        assert!(
            out.stderr.contains("supervisor: 5 tasks in "),
            "{}",
            out.stderr
        );
        // Under a pseudo-terminal (script(1)), stderr is a terminal: the bar is drawn.
        let dir = temp_dir("tty");
        let input = dir.join("in.txt");
        std::fs::write(&input, lines(10, "100ms")).unwrap();
        let cmd = format!("{BIN} run -j 2 --task sleep --input {}", input.display());
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(screen.contains("/10 tasks"), "{screen}");
        std::fs::remove_dir_all(dir).unwrap();
    });
}

/// GNU parallel's `--eta` and `--bar` show the progress display (before: accepted and
/// ignored); it ends with a summary line, and on a terminal the bar shows the total
/// of `:::` inputs and a rounded rate.
#[test]
fn eta_and_bar_show_progress_with_a_total_a_rounded_rate_and_a_summary() {
    isolated(DEADLINE, || {
        for option in ["--eta", "--bar"] {
            let out = cli(
                &["run", option, "sh", "-c", "exit $0", ":::", "0", "1", "0"],
                "",
            );
            assert_eq!(out.code, 1, "{}", out.stderr);
            assert!(
                out.stderr.contains("supervisor: 3 tasks in ")
                    && out.stderr.contains(
                        ": 2 succeeded, 1 failed, 0 stopped while running, 0 not started\n"
                    ),
                "{option}: {}",
                out.stderr
            );
        }
        let cmd = format!("{BIN} run -j 2 --bar sleep ::: 0.2 0.2 0.2 0.2 0.2 0.2");
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(screen.contains("/6 tasks, "), "{screen}");
        let rates: Vec<&str> = screen
            .split("tasks, ")
            .skip(1)
            .filter_map(|s| s.split("/s").next())
            .filter(|r| r.len() < 12)
            .collect();
        assert!(!rates.is_empty(), "{screen}");
        for rate in rates {
            let decimals = rate.split('.').nth(1).map_or(0, str::len);
            assert!(decimals <= 2, "a rate not rounded: {rate:?} in {screen}");
        }
        assert!(
            screen.contains("supervisor: 6 tasks in ") && screen.contains("6 succeeded"),
            "{screen}"
        );
    });
}
