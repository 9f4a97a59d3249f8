//! The rendezvous sweep across namespaces: a program in another network namespace
//! sharing the temporary directory keeps its pending start (its socket is invisible in
//! our `/proc/net/unix`), and what another namespace's dead program left is still
//! swept once older than the bound. Real namespaces (`unshare --net`, which needs
//! root or user namespaces): where one cannot be made the test fails and says so.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::{isolated, scenario, Scenario, SCENARIOS, SCENARIO_ENV};
use supervisor::Process;

const DEADLINE: Duration = Duration::from_secs(120);

fn one(x: u64) -> u64 {
    x + 1
}
supervisor::task!(one);

/// Starts a spawned Process whose child stops before connecting (the start stays
/// pending), prints `pending DIR CHILD`, waits for a line on stdin, then prints how
/// the start and the join went.
fn hold_a_start_pending() {
    let before = common::bootstrap_dirs();
    let starter = std::thread::spawn(|| Process::builder(one, 1).start());
    let dir = common::wait_new_bootstrap_dir(&before, Duration::from_secs(20));
    let helpers = supervisor::helper_pids();
    let child = loop {
        let kids: Vec<i32> = common::children_of(std::process::id() as i32)
            .into_iter()
            .filter(|pid| !helpers.contains(&(*pid as u32)))
            .collect();
        if let Some(&kid) = kids.first() {
            break kid;
        }
        std::thread::yield_now();
    };
    assert!(
        common::wait_stopped(child as u32, Duration::from_secs(20)),
        "the child did not stop before connecting"
    );
    println!("pending {dir} {child}");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    match starter.join().unwrap() {
        Ok(mut p) => println!("joined {:?}", p.join()),
        Err(e) => println!("failed {e}"),
    }
}

#[linkme::distributed_slice(SCENARIOS)]
static HOLD_A_START_PENDING: Scenario = Scenario {
    name: "hold_a_start_pending",
    run: hold_a_start_pending,
};

/// One spawned process, then exit (its start sweeps the temporary directory).
fn spawn_once() {
    let mut p = Process::builder(one, 1).start().unwrap();
    assert_eq!(p.join().unwrap(), 2);
}

#[linkme::distributed_slice(SCENARIOS)]
static SPAWN_ONCE: Scenario = Scenario {
    name: "spawn_once",
    run: spawn_once,
};

/// The inode of one of this process's namespaces (`net`, `pid`).
fn namespace(kind: &str) -> u64 {
    std::fs::metadata(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .ino()
}

/// Sets the modification time of `path` to `ago` in the past.
fn age(path: &Path, ago: Duration) {
    std::fs::File::open(path)
        .unwrap()
        .set_modified(SystemTime::now() - ago)
        .unwrap();
}

/// What another namespace's program left: an unbound socket alone in `.tmpNAME`, and
/// the probe naming it, recording namespaces that are not ours; both `ago` old.
fn leave_foreign_entry(tmp: &Path, name: &str, ago: Duration) -> [std::path::PathBuf; 2] {
    let dir = tmp.join(name);
    std::fs::create_dir(&dir).unwrap();
    drop(std::os::unix::net::UnixListener::bind(dir.join("socket")).unwrap());
    let probe = tmp.join(format!(".supervisor-probe-4000000-n1-p1-{name}"));
    std::fs::create_dir(&probe).unwrap();
    age(&dir, ago);
    age(&probe, ago);
    [dir, probe]
}

/// A program (run through `prefix`, e.g. `unshare --net`) holding a spawn start
/// pending: its child stopped before connecting, in `dir`, named by the `probe` in the
/// temporary directory.
struct Pending {
    held: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
    dir: std::path::PathBuf,
    probe: String,
    child: i32,
}

impl Pending {
    fn start(prefix: &[&str]) -> Pending {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let mut held = cmd
            .env(SCENARIO_ENV, "hold_a_start_pending")
            .env("SUPERVISOR_FAULT", "stop-before-connect")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(held.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("pending"), "{line:?}");
        let dir = std::path::PathBuf::from(words.next().unwrap());
        let child: i32 = words.next().unwrap().parse().unwrap();
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let probe = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with(".supervisor-probe-") && n.ends_with(&name))
            .expect("the pending start's probe");
        Pending {
            held,
            out,
            dir,
            probe,
            child,
        }
    }

    /// Lets the stopped child go on; what the program said of its start, and how it
    /// ended.
    fn finish(mut self) -> (String, std::process::ExitStatus) {
        // SAFETY: kill with plain integers; the stopped child of the program this test
        // started (same pid namespace).
        unsafe { libc::kill(self.child, libc::SIGCONT) };
        self.held.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.out, &mut rest).unwrap();
        (rest, self.held.wait().unwrap())
    }
}

/// A program in another network namespace holds a start pending (its child stopped
/// before connecting) while a program here sweeps the same `TMPDIR`: its socket, older
/// than the 2 s a socket of our own namespace gets but younger than the bound, stays,
/// and its start succeeds once the child goes on. Before: the sweep did not find the
/// socket in its own `/proc/net/unix`, took it for a dead program's and removed it, and
/// the start failed. Another namespace's dead entry older than the bound (60 s) is
/// swept; a younger one stays.
#[test]
fn a_sweep_leaves_another_network_namespaces_pending_start_alone() {
    isolated(DEADLINE, || {
        let probe = Command::new("unshare").args(["--net", "true"]).output();
        match probe {
            Ok(out) if out.status.success() => {}
            other => panic!(
                "cannot make a network namespace with `unshare --net` (needs root or user \
                 namespaces), so this test cannot run: {other:?}"
            ),
        }
        let tmp = std::env::temp_dir();
        let pending = Pending::start(&["unshare", "--net"]);
        let (dir, their_probe) = (pending.dir.clone(), pending.probe.clone());
        // It is in another network namespace, and its probe says so.
        let ours = format!("-n{}-", namespace("net"));
        assert!(
            their_probe.contains("-n") && !their_probe.contains(&ours),
            "{their_probe} should record another network namespace"
        );
        // Older than a socket of ours may be, younger than the bound.
        age(&dir, Duration::from_secs(10));
        age(&tmp.join(&their_probe), Duration::from_secs(10));
        let dead = leave_foreign_entry(&tmp, ".tmpF0re1g", Duration::from_secs(600));
        let young = leave_foreign_entry(&tmp, ".tmpY0ung1", Duration::from_secs(20));
        let swept = scenario("spawn_once").output().unwrap();
        assert!(swept.status.success(), "{swept:?}");
        let socket_left = dir.join("socket").exists();
        let (rest, status) = pending.finish();
        let young_left = young.iter().all(|p| p.exists());
        for p in &young {
            let _ = std::fs::remove_dir_all(p);
        }
        assert!(
            socket_left,
            "the sweep removed the pending start's socket of another namespace"
        );
        assert!(
            rest.starts_with("joined Ok(2)"),
            "the pending start: {rest:?}"
        );
        assert!(status.success(), "{status:?}");
        assert!(
            dead.iter().all(|p| !p.exists()),
            "another namespace's dead entry older than the bound was left: {dead:?}"
        );
        assert!(
            young_left,
            "another namespace's entry younger than the bound was swept"
        );
    });
}

/// A program that spells the same `TMPDIR` otherwise (here through a symbolic link)
/// sweeps while a start of ours is pending: the socket table lists the pending socket
/// under our spelling, not under the one the sweep looks for, but the probe naming the
/// directory has a live owner in our pid namespace, so the directory stays and the
/// start succeeds. Before: the sweep took the socket for unbound and removed it, and
/// the start failed (adversarial pass adv18d, finding 2).
#[test]
fn a_sweep_through_another_spelling_of_tmpdir_leaves_a_pending_start_alone() {
    isolated(DEADLINE, || {
        let tmp = std::env::temp_dir();
        let link = tmp.join(format!("spelled-otherwise-{}", std::process::id()));
        std::os::unix::fs::symlink(&tmp, &link).unwrap();
        let pending = Pending::start(&[]);
        let (dir, probe) = (pending.dir.clone(), pending.probe.clone());
        // Older than a socket of ours may be unbound.
        age(&dir, Duration::from_secs(10));
        age(&tmp.join(&probe), Duration::from_secs(10));
        let swept = scenario("spawn_once")
            .env("TMPDIR", &link)
            .output()
            .unwrap();
        let socket_left = dir.join("socket").exists();
        let (rest, status) = pending.finish();
        std::fs::remove_file(&link).unwrap();
        assert!(swept.status.success(), "{swept:?}");
        assert!(
            socket_left,
            "the sweep through another spelling removed the pending start's socket"
        );
        assert!(
            rest.starts_with("joined Ok(2)"),
            "the pending start: {rest:?}"
        );
        assert!(status.success(), "{status:?}");
    });
}
