//! What supervisor prints is what GNU parallel prints, case by case, and its results directories.

use super::*;

/// Installs GNU parallel if it is missing (once per test binary).
fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/setup");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .expect("bash runs .ci/setup");
        assert!(
            out.status.success(),
            "{} could not install GNU parallel, which these tests compare with: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Runs `program args` with `stdin`, in `dir` (see [`common::run_program`]).
pub(super) fn run(program: &str, args: &[&str], stdin: &[u8], dir: &Path) -> Ran {
    setup();
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    common::run_program(program, &args, dir, stdin, |_| {})
}

pub(super) fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("supervisor-parallel-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("f1"), "l1\nl2\n").unwrap();
    std::fs::write(dir.join("f2"), "m1\nm2\n").unwrap();
    dir
}

/// One case: arguments after `parallel` / `supervisor run`, and stdin.
struct Case {
    args: &'static [&'static str],
    stdin: &'static [u8],
    /// Whether the exit codes must agree too (parallel exits with the number of
    /// failures; we exit 1 for any number: they agree for 0 and 1).
    same_code: bool,
}

const fn case(args: &'static [&'static str], stdin: &'static [u8]) -> Case {
    Case {
        args,
        stdin,
        same_code: true,
    }
}

const CASES: &[Case] = &[
    case(&["-k", "echo", ":::", "a", "b", "c"], b""),
    case(
        &[
            "-k",
            "echo",
            "{}",
            "{.}",
            "{/}",
            "{//}",
            "{/.}",
            ":::",
            "dir.x/a.tar.gz",
            "b",
            ".hidden",
            "/a",
        ],
        b"",
    ),
    case(
        &["-k", "echo", "{1}-{2}", ":::", "a", "b", ":::", "1", "2"],
        b"",
    ),
    case(
        &["-k", "echo", ":::", "a", "b", "c", ":::+", "1", "2", "3"],
        b"",
    ),
    case(&["-k", "-a", "f1", "-a", "f2", "echo"], b""),
    case(&["-k", "echo", "{2}", "{1}", "::::", "f1", ":::", "x"], b""),
    case(
        &["-k", "echo", ":::", "a", ":::", "x", "y", ":::+", "1", "2"],
        b"",
    ),
    case(
        &[
            "-k", "echo", "{1/}", "{1.}", "{2}", ":::", "d/f.t", ":::", "y",
        ],
        b"",
    ),
    case(
        &["-k", "--colsep", ":", "echo", "{3}", "{1}", "{}"],
        b"a:b:c\nd:e:f\n",
    ),
    case(&["-k", "--colsep", ",", "echo"], b"a b,c\n"),
    case(&["-k", "-0", "echo"], b"a\0b c\0"),
    case(&["-k", "-d", ";", "echo", "{}"], b"x,y;z,w;"),
    case(&["-k", "echo"], b"one\ntwo\n\nfour\n"),
    case(&["-k", "echo {} | tr a-z A-Z", ":::", "ab", "cd"], b""),
    case(&["-k", "echo", "{}", ":::", "x; echo INJECTED"], b""),
    case(
        &[
            "-k",
            "echo {}",
            ":::",
            "x; echo INJECTED",
            "$(echo no)",
            "`echo no`",
        ],
        b"",
    ),
    case(&["-k", "--tag", "echo", "hi", ":::", "a", "b c"], b""),
    // A last line without a newline stays so (before: one was added).
    case(&["-k", "--tag", "printf", "x%s", ":::", "a", "b"], b""),
    case(
        &[
            "-k",
            "--dry-run",
            "echo",
            "{}",
            ":::",
            "a b",
            "it's",
            "plain",
        ],
        b"",
    ),
    case(&["-k", "echo", "{#}", ":::", "a", "b", "c"], b""),
    case(&["-k", "echo", "pre{}post", "{a}", ":::", "x"], b""),
    case(&["-k", "-j", "2", "echo", ":::", "1", "2", "3", "4"], b""),
    case(&["-k", "-j", "+1", "echo", ":::", "1", "2"], b""),
    case(&["-k", "-j", "50%", "echo", ":::", "1", "2"], b""),
    case(&["-k", "exit {}", ":::", "0", "0"], b""),
    case(&["-k", "echo {}; exit {}", ":::", "0", "3"], b""),
    case(&["-k", "--timeout", "5", "echo", ":::", "fast"], b""),
    case(
        &["-k", "--keep-order", "--will-cite", "echo", ":::", "x"],
        b"",
    ),
    case(&["-k", "--no-run-if-empty", "echo"], b""),
    // Short options with their value attached, as parallel and xargs users write them
    // (before: "unknown option `-j2`").
    case(&["-k", "-j2", "echo", ":::", "a", "b"], b""),
    case(&["-kj2", "echo", ":::", "a"], b""),
    case(&["-k", "-d,", "echo"], b"x,y"),
    case(&["-k", "-af1", "echo"], b""),
    // The job slot (parallel's --dry-run slots depend on timing: not compared).
    case(&["-k", "-j", "1", "echo", "{%}{}", ":::", "a", "b"], b""),
    // Output as it comes (one task at a time, so the order is known).
    case(&["-j", "1", "--line-buffer", "echo", ":::", "a", "b"], b""),
    case(
        &["-j", "1", "--lb", "--tag", "printf 'x\ny'", ":::", "a", "b"],
        b"",
    ),
    case(&["-j", "1", "-u", "echo", ":::", "a", "b"], b""),
];

pub(super) fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn supervisor_prints_what_gnu_parallel_prints() {
    isolated(DEADLINE, || {
        let dir = scratch("oracle");
        let mut failures = Vec::new();
        for case in CASES {
            let mut theirs_args = vec!["--will-cite"];
            theirs_args.extend(case.args);
            let theirs = run("parallel", &theirs_args, case.stdin, &dir);
            let mut ours_args = vec!["run"];
            ours_args.extend(case.args);
            let ours = run(BIN, &ours_args, case.stdin, &dir);
            if theirs.stdout != ours.stdout || (case.same_code && theirs.code != ours.code) {
                failures.push(format!(
                    "{:?}\n  parallel: {:?} {:?}\n  ours:     {:?} {:?}\n  our stderr: {}",
                    case.args,
                    theirs.code,
                    show(&theirs.stdout),
                    ours.code,
                    show(&ours.stdout),
                    ours.stderr
                ));
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            failures.is_empty(),
            "{} cases differ:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}

/// `--results DIR` writes parallel's layout: `DIR/1/VALUE/2/VALUE/{seq,stdout,stderr}`.
#[test]
fn results_directories_are_laid_out_as_parallels() {
    isolated(DEADLINE, || {
        let dir = scratch("results");
        let listing = |root: &Path| -> Vec<(String, Vec<u8>)> {
            let mut files = Vec::new();
            let mut stack = vec![root.to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap().flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else {
                        let rel = p.strip_prefix(root).unwrap().display().to_string();
                        files.push((rel, std::fs::read(&p).unwrap()));
                    }
                }
            }
            files.sort();
            files
        };
        let args = ["echo", "{1}{2}", ":::", "a", "b/c", ":::", "x"];
        let mut theirs_args = vec!["--will-cite", "-k", "--results", "theirs"];
        theirs_args.extend(args);
        let theirs = run("parallel", &theirs_args, b"", &dir);
        let mut ours_args = vec!["run", "-k", "--results", "ours"];
        ours_args.extend(args);
        let ours = run(BIN, &ours_args, b"", &dir);
        assert_eq!(ours.code, 0, "{}", ours.stderr);
        assert_eq!(show(&ours.stdout), show(&theirs.stdout));
        assert_eq!(listing(&dir.join("ours")), listing(&dir.join("theirs")));
        std::fs::remove_dir_all(&dir).unwrap();
    });
}
