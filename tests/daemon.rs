//! `supervisor run --daemon`, `status` and `stop` against what a hostile or careless
//! filesystem holds at the pidfile's path (devices, FIFOs, links, someone's directory
//! named `PIDFILE.control`), and against misbehaving control-socket clients.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{isolated, wait_exit};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_supervisor");
const DEADLINE: Duration = Duration::from_secs(120);

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `stdin`; kills it if it outlives `within` (a hang fails).
fn cli_within(args: &[&str], stdin: &str, within: Duration) -> Out {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("supervisor binary starts");
    let mut input = child.stdin.take().unwrap();
    let text = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let finished = wait_exit(child.id() as i32, within);
    if !finished {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    writer.join().unwrap();
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        finished,
        "supervisor {args:?} did not finish within {within:?}; stderr: {stderr}"
    );
    Out {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

fn cli(args: &[&str]) -> Out {
    cli_within(args, "", Duration::from_secs(60))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("supervisor-daemon-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `run --daemon` of `sleep` over `input` on `pidfile`, with `extra` options.
fn daemon(pidfile: &Path, input: &Path, extra: &[&str]) -> Out {
    let mut args = vec![
        "run",
        "--daemon",
        "--pidfile",
        s(pidfile),
        "--input",
        s(input),
        "--grace",
        "100ms",
        "-j",
        "1",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--task", "sleep"]);
    cli(&args)
}

fn stop_wait(pidfile: &Path) {
    let stop = cli(&[
        "stop",
        "--wait",
        "--timeout",
        "20s",
        "--pidfile",
        s(pidfile),
    ]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
}

fn status_json(pidfile: &Path) -> Value {
    let status = cli(&["status", "--pidfile", s(pidfile)]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    serde_json::from_str(status.stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {:?} {}", status.stdout, status.stderr))
}

fn long_input(dir: &Path) -> PathBuf {
    let input = dir.join("in.txt");
    std::fs::write(&input, "60s\n60s\n60s\n").unwrap();
    input
}

#[test]
fn a_device_or_fifo_at_the_pidfile_is_refused_and_left_in_place() {
    isolated(DEADLINE, || {
        let dir = temp_dir("special");
        let input = long_input(&dir);
        let fifo = dir.join("fifo");
        assert!(Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let mut specials = vec![(fifo, "a FIFO")];
        if is_root() {
            let null = dir.join("mynull");
            let made = Command::new("mknod")
                .args(["-m", "666", s(&null), "c", "1", "3"])
                .status()
                .unwrap();
            assert!(made.success(), "root can mknod");
            specials.push((null, "a character device"));
        } else {
            eprintln!("not root: only the FIFO is checked (mknod needs root)");
        }
        for (path, what) in &specials {
            let out = daemon(path, &input, &["--log", s(&dir.join("ml.log"))]);
            assert_eq!(out.code, 2, "{}", out.stderr);
            assert!(
                out.stderr
                    .contains(&format!("is {what}, not a regular file")),
                "{}",
                out.stderr
            );
            let kind = std::fs::symlink_metadata(path)
                .unwrap_or_else(|e| panic!("{} is gone: {e}", path.display()))
                .file_type();
            assert!(kind.is_fifo() || kind.is_char_device(), "{kind:?}");
            // status and stop neither block on a FIFO nor take it for a pidfile.
            for command in ["status", "stop"] {
                let out = cli_within(
                    &[command, "--pidfile", s(path)],
                    "",
                    Duration::from_secs(10),
                );
                assert_eq!(out.code, 2, "{command}: {}", out.stderr);
                assert!(out.stderr.contains("not a regular file"), "{}", out.stderr);
            }
            assert!(std::fs::symlink_metadata(path).is_ok());
        }
        assert!(!dir.join("mynull.control").exists() && !dir.join("fifo.control").exists());
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn a_directory_named_like_the_control_directory_is_never_deleted() {
    isolated(DEADLINE, || {
        let dir = temp_dir("control");
        let input = long_input(&dir);
        let work = dir.join("work");
        let control = dir.join("work.control");
        std::fs::create_dir_all(control.join("src")).unwrap();
        std::fs::write(control.join("src/main.c"), "code\n").unwrap();
        std::fs::write(&work, "notes\n").unwrap();
        let status = cli(&["status", "--pidfile", s(&work)]);
        assert_eq!(status.code, 1, "{}", status.stderr);
        assert!(status.stderr.contains("left as it is"), "{}", status.stderr);
        let stop = cli(&["stop", "--pidfile", s(&work)]);
        assert_eq!(stop.code, 1, "{}", stop.stderr);
        let run = daemon(&work, &input, &[]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains("not a control directory of ours"),
            "{}",
            run.stderr
        );
        assert_eq!(
            std::fs::read_to_string(control.join("src/main.c")).unwrap(),
            "code\n"
        );
        assert_eq!(std::fs::read_to_string(&work).unwrap(), "notes\n");
        // Even shaped like ours (0700, a `sock` entry) it stays if it holds more.
        let other = dir.join("other.pid");
        let other_control = dir.join("other.pid.control");
        std::fs::create_dir(&other_control).unwrap();
        std::fs::set_permissions(&other_control, std::fs::Permissions::from_mode(0o700)).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(other_control.join("sock")).unwrap();
        drop(listener);
        std::fs::write(other_control.join("keep"), "x").unwrap();
        std::fs::write(&other, "1\n").unwrap();
        let status = cli(&["status", "--pidfile", s(&other)]);
        assert_eq!(status.code, 1, "{}", status.stderr);
        assert!(status.stderr.contains("it holds keep"), "{}", status.stderr);
        assert!(other_control.join("keep").exists() && other_control.join("sock").exists());
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn a_pidfile_link_is_refused_and_its_target_untouched() {
    isolated(DEADLINE, || {
        let dir = temp_dir("link");
        let input = long_input(&dir);
        // Like /tmp: sticky and open to all.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let link = |name: &str| {
            let at = dir.join(name);
            if is_root() {
                // Another user's trap, as root would meet it.
                let made = Command::new("setpriv")
                    .args([
                        "--reuid=65534",
                        "--regid=65534",
                        "--clear-groups",
                        "ln",
                        "-s",
                    ])
                    .args([s(&victim), s(&at)])
                    .status()
                    .expect("setpriv runs");
                assert!(made.success());
            } else {
                std::os::unix::fs::symlink(&victim, &at).unwrap();
            }
            at
        };
        let pid_link = link("x.pid");
        let out = daemon(&pid_link, &input, &[]);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(out.stderr.contains("is a symbolic link"), "{}", out.stderr);
        for command in ["status", "stop"] {
            let out = cli(&[command, "--pidfile", s(&pid_link)]);
            assert_eq!(out.code, 2, "{command}: {}", out.stderr);
            assert!(out.stderr.contains("is a symbolic link"), "{}", out.stderr);
        }
        assert!(std::fs::symlink_metadata(&pid_link)
            .unwrap()
            .file_type()
            .is_symlink());
        if is_root() {
            // --log and --output: another user's link in a sticky directory is a trap.
            for option in ["--log", "--output"] {
                let trap = link(&format!("trap{option}"));
                let pidfile = dir.join("run.pid");
                let out = daemon(&pidfile, &input, &[option, s(&trap)]);
                assert_eq!(out.code, 2, "{option}: {}", out.stderr);
                assert!(out.stderr.contains("not followed"), "{}", out.stderr);
                assert!(!pidfile.exists(), "a refused start leaves no pidfile");
            }
        } else {
            eprintln!("not root: another user's --log link is not checked");
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn an_oversized_request_gets_a_short_error_and_the_run_still_answers() {
    isolated(DEADLINE, || {
        let dir = temp_dir("oversized");
        let input = long_input(&dir);
        let pidfile = dir.join("run.pid");
        assert_eq!(daemon(&pidfile, &input, &[]).code, 0);
        let mut conn = UnixStream::connect(dir.join("run.pid.control/sock")).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
        // 64 KiB without a newline (fits the socket's buffer: the write completes).
        conn.write_all(&vec![b'x'; 64 * 1024]).unwrap();
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.contains("request too long"), "{answer:?}");
        assert!(answer.len() < 100, "{answer:?}");
        drop(conn);
        // An unknown request is echoed only in part.
        let mut conn = UnixStream::connect(dir.join("run.pid.control/sock")).unwrap();
        conn.write_all(format!("{}\n", "y".repeat(1000)).as_bytes())
            .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("unknown request"), "{answer:?}");
        assert!(answer.len() < 100, "{answer:?}");
        assert_eq!(status_json(&pidfile)["running"], true);
        stop_wait(&pidfile);
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn slow_clients_holding_every_place_do_not_lock_out_status_and_stop() {
    isolated(DEADLINE, || {
        let dir = temp_dir("slow");
        let input = long_input(&dir);
        let pidfile = dir.join("run.pid");
        assert_eq!(daemon(&pidfile, &input, &[]).code, 0);
        // More clients than the run serves at once, each sending a byte a second and
        // never a newline (load, not synchronisation: they keep going all along).
        let conns: Vec<UnixStream> = (0..20)
            .map(|_| UnixStream::connect(dir.join("run.pid.control/sock")).unwrap())
            .collect();
        let done = Arc::new(AtomicBool::new(false));
        let trickle = {
            let done = done.clone();
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    for mut c in &conns {
                        let _ = c.write_all(b"s");
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
        };
        let started = Instant::now();
        let state = status_json(&pidfile);
        assert_eq!(state["running"], true, "{state}");
        assert!(started.elapsed() < Duration::from_secs(15));
        let stop = cli(&[
            "stop",
            "--wait",
            "--timeout",
            "20s",
            "--pidfile",
            s(&pidfile),
        ]);
        assert_eq!(stop.code, 0, "{}", stop.stderr);
        done.store(true, Ordering::SeqCst);
        trickle.join().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn input_from_dev_stdin_is_refused_like_dash() {
    isolated(DEADLINE, || {
        let dir = temp_dir("stdin");
        let pidfile = dir.join("run.pid");
        for path in ["/dev/stdin", "/proc/self/fd/0", "/dev/fd/0", "-"] {
            let out = cli_within(
                &[
                    "run",
                    "--daemon",
                    "--pidfile",
                    s(&pidfile),
                    "--input",
                    path,
                    "--task",
                    "sleep",
                ],
                "1s\n",
                Duration::from_secs(60),
            );
            assert_eq!(out.code, 2, "{path}: {}", out.stderr);
            assert!(
                out.stderr.contains("stdin is not kept"),
                "{path}: {}",
                out.stderr
            );
            assert!(!pidfile.exists(), "{path}: nothing started");
        }
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn stop_right_after_start_waits_for_the_starting_run() {
    isolated(Duration::from_secs(300), || {
        let dir = temp_dir("starting");
        let input = long_input(&dir);
        let pidfile = dir.join("run.pid");
        for round in 0..5 {
            let mut launcher = Command::new(BIN)
                .args([
                    "run",
                    "--daemon",
                    "--pidfile",
                    s(&pidfile),
                    "--input",
                    s(&input),
                ])
                .args(["--grace", "100ms", "-j", "1", "--task", "sleep"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            // As soon as the pidfile is there (the launcher holds its lock): stop.
            let by = Instant::now() + Duration::from_secs(30);
            while !pidfile.exists() {
                assert!(Instant::now() < by, "round {round}: no pidfile");
                std::thread::yield_now();
            }
            let stop = cli(&[
                "stop",
                "--wait",
                "--timeout",
                "20s",
                "--pidfile",
                s(&pidfile),
            ]);
            assert_eq!(stop.code, 0, "round {round}: {}", stop.stderr);
            assert!(launcher.wait().unwrap().success(), "round {round}");
            assert!(!pidfile.exists(), "round {round}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn status_numbers_the_running_task_as_the_job_log_does() {
    isolated(DEADLINE, || {
        let dir = temp_dir("numbering");
        let input = long_input(&dir);
        let pidfile = dir.join("run.pid");
        assert_eq!(daemon(&pidfile, &input, &[]).code, 0);
        let by = Instant::now() + Duration::from_secs(30);
        let state = loop {
            let state = status_json(&pidfile);
            if state["in_progress"] == 1 {
                break state;
            }
            assert!(Instant::now() < by, "no task started: {state}");
        };
        // -j 1: the first input line ({#} = 1, seq 1 in the job log) is running.
        assert_eq!(state["workers"][0]["state"], "busy on sleep #1", "{state}");
        stop_wait(&pidfile);
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn status_does_not_follow_a_control_directory_link() {
    isolated(DEADLINE, || {
        use std::os::fd::AsRawFd;
        let dir = temp_dir("control-link");
        let pidfile = dir.join("run.pid");
        std::fs::write(&pidfile, "1\n").unwrap();
        // A held lock: to status this looks like a live run.
        let held = std::fs::File::open(&pidfile).unwrap();
        // SAFETY: flock on a descriptor this test owns.
        assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
        let elsewhere = dir.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(elsewhere.join("sock")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join("run.pid.control")).unwrap();
        listener.set_nonblocking(true).unwrap();
        let status = cli(&["status", "--pidfile", s(&pidfile)]);
        assert_eq!(status.code, 2, "{}", status.stderr);
        assert!(status.stderr.contains("not followed"), "{}", status.stderr);
        // Nobody connected to the socket behind the link.
        assert!(listener.accept().is_err());
        drop((listener, held));
        std::fs::remove_dir_all(dir).unwrap();
    });
}
