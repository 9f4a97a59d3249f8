//! How results are written: `--format json` records keep failed output and stay small
//! for a huge line; `--results DIR` keeps failed stderr in its files, and a full disk
//! there exits 3.

use super::*;

/// `--format json`: a failed command's stdout is kept, a successful one's exit code is
/// 0; a failure of a huge input line quotes a bounded prefix of it (before: a 50 MB
/// line made a 100 MB record, the line and the message quoting it).
#[test]
fn json_records_keep_failed_output_and_stay_small_for_a_huge_line() {
    isolated(DEADLINE, || {
        let out = cli(
            &[
                "run",
                "--format",
                "json",
                "sh",
                "-c",
                "echo out $0; exit $0",
                ":::",
                "0",
                "3",
            ],
            "",
        );
        assert_eq!(out.code, 1, "{}", out.stderr);
        let records = out.json();
        assert_eq!(records[0]["exit_code"], 0, "{}", out.stdout);
        assert_eq!(records[0]["output"], "out 0\n");
        assert_eq!(records[1]["error"]["exit_code"], 3, "{}", out.stdout);
        assert_eq!(records[1]["output"], "out 3\n", "{}", out.stdout);

        let huge = format!("{}\n", "7".repeat(50 << 20));
        let dir = temp_dir("huge-line");
        let log = dir.join("jobs.jsonl");
        let out = cli(
            &[
                "run",
                "--format",
                "json",
                "--joblog-format",
                "json",
                "--joblog",
                log.to_str().unwrap(),
                "--task",
                "prime-factors",
            ],
            &huge,
        );
        assert_eq!(out.code, 1);
        assert!(
            out.stdout.len() < 16 << 10,
            "a record of {} bytes",
            out.stdout.len()
        );
        let record = &out.json()[0];
        assert_eq!(record["error"]["kind"], "decode");
        assert!(
            record["input"].as_str().unwrap().starts_with("7777"),
            "{record}"
        );
        assert!(record["input"]
            .as_str()
            .unwrap()
            .ends_with(&format!("({} bytes)", 50 << 20)));
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(
            logged.len() < 16 << 10,
            "a job log line of {} bytes",
            logged.len()
        );
        let text = cli(&["run", "--task", "prime-factors"], &huge);
        assert!(
            text.stderr.len() < 16 << 10,
            "a message of {} bytes",
            text.stderr.len()
        );
        std::fs::remove_dir_all(dir).unwrap();
    });
}

/// `--results DIR`: a failed command's stderr goes to its file only (parallel prints
/// it nowhere else), with our one line saying it failed; a full disk under DIR stops
/// the run with exit 3, the output-error code (before: stderr echoed, exit 2).
#[test]
fn results_keep_failed_stderr_in_their_files_and_a_full_disk_exits_3() {
    common::require_root("to mount a small tmpfs");
    isolated(DEADLINE, || {
        let dir = temp_dir("results-stderr");
        let results = dir.join("r");
        let out = cli(
            &[
                "run",
                "--results",
                results.to_str().unwrap(),
                "sh",
                "-c",
                "echo out-{}; echo err-marker-{} >&2; exit 1",
                ":::",
                "a",
            ],
            "",
        );
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(!out.stderr.contains("err-marker"), "{}", out.stderr);
        assert!(out.stderr.contains("exited with code 1"), "{}", out.stderr);
        assert_eq!(
            std::fs::read_to_string(results.join("1/a/stderr")).unwrap(),
            "err-marker-a\n"
        );

        let full = dir.join("full");
        std::fs::create_dir_all(&full).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(&full)
            .status()
            .unwrap();
        assert!(mounted.success());
        let out = cli(
            &[
                "run",
                "-j",
                "1",
                "--results",
                full.to_str().unwrap(),
                "head",
                "-c",
                "400000",
                "/dev/zero",
                ":::",
                "a",
                "b",
                "c",
            ],
            "",
        );
        let unmounted = Command::new("umount").arg(&full).status().unwrap();
        assert!(unmounted.success());
        assert_eq!(out.code, 3, "{}", out.stderr);
        assert!(
            out.stderr.contains("No space left on device"),
            "{}",
            out.stderr
        );
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// `--results DIR` with values no file name can be (`.`, `..`, empty) and ones that
/// escape to names another value could take: each input gets its own directory under
/// DIR (before: `..` stopped the run with exit 3, and `.` and an empty value wrote into
/// DIR/1 itself, as GNU parallel does).
#[test]
fn results_of_values_no_file_name_can_be_get_their_own_directories() {
    isolated(DEADLINE, || {
        let dir = temp_dir("results-names");
        let results = dir.join("r");
        let values = [".", "..", "", "\\.", "\\e", "a/b", "a\\_b", "\\"];
        let input: String = values.iter().map(|v| format!("{v}\n")).collect();
        let out = cli(
            &[
                "run",
                "-j",
                "2",
                "--results",
                results.to_str().unwrap(),
                "--",
                "echo",
                "x{}",
            ],
            &input,
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let mut names: Vec<String> = std::fs::read_dir(results.join("1"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), values.len(), "{names:?}");
        for (i, value) in values.iter().enumerate() {
            let name = match *value {
                "." => "\\.".to_string(),
                ".." => "\\..".to_string(),
                "" => "\\e".to_string(),
                v => v.replace('\\', "\\\\").replace('/', "\\_"),
            };
            let at = results.join("1").join(&name);
            assert_eq!(
                std::fs::read_to_string(at.join("stdout")).unwrap(),
                format!("x{value}\n"),
                "{value:?} in {name:?}"
            );
            assert_eq!(
                std::fs::read_to_string(at.join("seq")).unwrap(),
                (i + 1).to_string()
            );
        }
        // Nothing written anywhere else.
        assert_eq!(std::fs::read_dir(&results).unwrap().count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
