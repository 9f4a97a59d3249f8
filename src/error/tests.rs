use std::error::Error as _;

use super::*;

#[test]
fn messages_are_lowercase_and_do_not_repeat_their_source() {
    let e = Error::from(ErrorKind::Spawn(io::Error::from_raw_os_error(libc::EAGAIN)));
    assert_eq!(e.to_string(), "cannot start a worker process");
    assert!(e.source().is_some());
    let e = ErrorKind::Crashed {
        task: "t".into(),
        pid: 7,
        signal: Signal::from_number(libc::SIGSEGV),
        core_dumped: false,
        peak_rss_kib: 1,
    };
    assert_eq!(
        e.to_string(),
        "process 7 running task `t` was killed by SIGSEGV (peak RSS 1 KiB)"
    );
    let e = ErrorKind::Panicked {
        task: "t".into(),
        pid: 7,
        message: "boom".into(),
        location: Some("a.rs:1:2".into()),
        backtrace: None,
    };
    assert_eq!(
        e.to_string(),
        "task `t` panicked in process 7 at a.rs:1:2: boom"
    );
}

#[test]
fn memory_errors_name_the_limit_and_the_peak() {
    let e = ErrorKind::MemoryExceeded {
        task: "t".into(),
        pid: 7,
        limit: 64 << 20,
        peak_rss_kib: 70 * 1024,
        killed: true,
    };
    assert_eq!(
        e.to_string(),
        "task `t` in process 7 went over the memory limit of 64 MiB (peak RSS 70 MiB)"
    );
    assert_eq!(e.pid(), Some(7));
    let e = ErrorKind::OomKilled {
        task: "t".into(),
        pid: 7,
        peak_rss_kib: 2048,
    };
    assert_eq!(
        e.to_string(),
        "process 7 running task `t` was killed by the kernel's OOM killer (peak RSS 2048 KiB)"
    );
}

#[test]
fn the_error_reads_as_its_kind() {
    let kind = || ErrorKind::Crashed {
        task: "t".into(),
        pid: 7,
        signal: Signal::from_number(libc::SIGSEGV),
        core_dumped: true,
        peak_rss_kib: 1,
    };
    let e = Error::from(kind());
    assert_eq!(e.to_string(), kind().to_string());
    assert_eq!(format!("{e:?}"), format!("{:?}", kind()));
    assert_eq!(format!("{e:#?}"), format!("{:#?}", kind()));
    assert!(format!("{e:?}").starts_with("Crashed {"), "{e:?}");
    assert_eq!(e.pid(), Some(7));
    assert!(matches!(e.kind(), ErrorKind::Crashed { pid: 7, .. }));
    assert!(matches!(e.into_kind(), ErrorKind::Crashed { pid: 7, .. }));

    // The cause is one level down, never in the message: the forkserver's error
    // says only that the forkserver is unavailable, its source says why.
    let inner = Error::from(ErrorKind::Spawn(io::Error::from_raw_os_error(libc::EAGAIN)));
    let e = Error::from(ErrorKind::Forkserver(inner));
    assert_eq!(e.to_string(), "the forkserver is unavailable");
    let source = e.source().expect("the forkserver's cause");
    assert_eq!(source.to_string(), "cannot start a worker process");
    let root = source.source().expect("the system error");
    assert_eq!(
        root.to_string(),
        io::Error::from_raw_os_error(libc::EAGAIN).to_string()
    );
    assert!(root.source().is_none());
}

#[test]
fn the_error_is_one_pointer_wide() {
    // `Pool::map` returns a `Vec<Result<R, Error>>`: a million `Result<u64, Error>`
    // take 16 MB, memory glibc hands out again without new page faults; with the
    // kind inline (104 bytes, 112 per result) they took 112 MB of fresh pages, most
    // of the time of a map of a million tiny tasks.
    assert_eq!(size_of::<Error>(), size_of::<usize>());
    assert!(size_of::<Result<u64, Error>>() <= 16);
}

/// A spike (`killed: false`) killed nothing: no signal in the job log, only the peak.
#[test]
fn a_spike_reports_no_signal_and_a_kill_sigkill() {
    let e = |killed| ErrorKind::MemoryExceeded {
        task: "t".into(),
        pid: 7,
        limit: 64 << 20,
        peak_rss_kib: 70 * 1024,
        killed,
    };
    assert_eq!(
        e(true).exit_facts(),
        (Some(libc::SIGKILL), None, Some(70 * 1024))
    );
    assert_eq!(e(false).exit_facts(), (None, None, Some(70 * 1024)));
}
