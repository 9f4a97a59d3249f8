//! Before `main`: a private `TMPDIR` per test binary, `supervisor::init()`, and
//! dispatch to a named scenario run in a separate process of this binary.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::wait_exit;

/// Environment variable naming the scenario a child copy of the test binary runs.
pub const SCENARIO_ENV: &str = "SUPERVISOR_TEST_SCENARIO";

/// A named piece of code that runs in its own process of the test binary.
pub struct Scenario {
    pub name: &'static str,
    pub run: fn(),
}

#[linkme::distributed_slice]
pub static SCENARIOS: [Scenario];

/// Environment variable naming the private `TMPDIR` of a test binary's process tree.
pub const TMPDIR_ENV: &str = "SUPERVISOR_TEST_TMPDIR";

/// The private `TMPDIR` this process made, with its pid (only the first process of the
/// tree has one; a child forked from it copies this and must not remove it).
static OWN_TMPDIR: OnceLock<(u32, PathBuf)> = OnceLock::new();

/// Gives this process tree a private `TMPDIR`, unless it has one: a child inherits its
/// parent's, and a child started with a cleared environment (a worker with an
/// environment allowlist) still is a child of this binary and makes none (it could not
/// remove it). Runs before `main`, single-threaded.
fn private_tmpdir() {
    if std::env::var_os(TMPDIR_ENV).is_some() || parent_runs_this_binary() {
        return;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "supervisor-test-{}-{nanos:08x}",
        std::process::id()
    ));
    // Like /tmp (sticky, open to all): a scenario may run as another user (`nobody`).
    let made = std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)));
    if made.is_err() {
        let _ = std::fs::remove_dir(&dir);
        return; // the shared one, then; the temp-entry check is off
    }
    std::env::set_var("TMPDIR", &dir);
    std::env::set_var(TMPDIR_ENV, &dir);
    let _ = OWN_TMPDIR.set((std::process::id(), dir));
}

/// Whether the parent process runs this same executable (this is one of its workers,
/// helpers or scenarios; cargo is the parent of a test binary).
fn parent_runs_this_binary() -> bool {
    let parent = std::os::unix::process::parent_id();
    match (
        std::fs::read_link("/proc/self/exe"),
        std::fs::read_link(format!("/proc/{parent}/exe")),
    ) {
        (Ok(me), Ok(theirs)) => me == theirs,
        _ => false,
    }
}

#[ctor::dtor]
fn remove_private_tmpdir() {
    match OWN_TMPDIR.get() {
        Some((pid, dir)) if *pid == std::process::id() => {
            let _ = std::fs::remove_dir_all(dir);
        }
        _ => {}
    }
}

#[ctor::ctor]
fn boot() {
    private_tmpdir();
    supervisor::init();
    if let Ok(name) = std::env::var(SCENARIO_ENV) {
        let scenario = SCENARIOS
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no scenario named {name}"));
        (scenario.run)();
        std::process::exit(0);
    }
}

/// A command that runs scenario `name` in a fresh copy of this test binary.
pub fn scenario(name: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    cmd.env(SCENARIO_ENV, name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for a scenario's process with a deadline (failing if it hangs): its exit
/// status, stdout and stderr.
pub fn scenario_output(
    child: std::process::Child,
    name: &str,
    within: Duration,
) -> (std::process::ExitStatus, String, String) {
    let pid = child.id() as i32;
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    assert!(wait_exit(pid, within), "{name}: the scenario hung");
    let out = waiter.join().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
