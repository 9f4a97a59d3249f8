//! A message whose descriptors cannot be received (this process at its descriptor
//! limit): the receive is an error naming the limit (`EMFILE`), not ipc-channel's
//! "Serialization/Deserialization error", and nothing is printed as a panic.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use supervisor_worker::progress::Progress;
use supervisor_worker::protocol::{send_frame, Frame, LinkError, Receiver, ToChild};

const SCENARIO: &str = "SUPERVISOR_QUIET_RECEIVE_SCENARIO";

/// In a process of its own (the descriptor limit is the whole process's): a page sent
/// to ourselves, then every descriptor taken, then the receive.
fn scenario() {
    let (tx, rx) = ipc_channel::ipc::channel::<Frame>().unwrap();
    let rx = Receiver::new(rx);
    let page = Progress::new();
    send_frame(
        &tx,
        Frame::with_page(&ToChild::Progress, page.share()).unwrap(),
    )
    .unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let lim = libc::rlimit {
        rlim_cur: open + 4,
        rlim_max: open + 4,
    };
    // SAFETY: a valid rlimit; lowers this process's own limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let mut fillers = Vec::new();
    loop {
        // SAFETY: dup of stdin; the copies live until the process ends.
        let fd = unsafe { libc::dup(0) };
        if fd < 0 {
            break;
        }
        fillers.push(fd);
    }
    match rx.recv() {
        Err(LinkError::Io(e)) if e.raw_os_error() == Some(libc::EMFILE) => {
            println!("result: EMFILE")
        }
        Err(e) => println!("result: another error: {e} ({e:?})"),
        Ok(_) => println!("result: received"),
    }
}

#[test]
fn a_message_whose_descriptors_cannot_be_had_is_emfile_and_prints_no_panic() {
    if std::env::var_os(SCENARIO).is_some() {
        scenario();
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_message_whose_descriptors_cannot_be_had_is_emfile_and_prints_no_panic",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCENARIO, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the scenario did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("result: EMFILE"), "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
