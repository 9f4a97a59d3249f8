//! Values, typed failures (panic, crash, exit), terminate and kill, join timeouts.

use super::*;

#[test]
fn start_and_join_returns_the_value() {
    each_method(DEADLINE, |method| {
        let mut p = Process::builder(square, 12)
            .start_method(method)
            .start()
            .unwrap();
        assert!(p.pid() > 0);
        assert_eq!(p.name(), "square");
        assert_eq!(p.join().unwrap(), 144);
        assert!(!p.is_alive());
        assert_eq!(p.exitcode(), Some(0));
        let e = p.join().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::AlreadyJoined { .. }), "{e:?}");
    });
}

#[test]
fn panic_is_a_typed_error_with_message_and_location() {
    each_method(DEADLINE, |method| {
        let mut p = Process::builder(boom, ())
            .start_method(method)
            .start()
            .unwrap();
        let pid = p.pid();
        match p.join().map_err(Error::into_kind) {
            Err(ErrorKind::Panicked {
                task,
                pid: p2,
                message,
                location,
                ..
            }) => {
                assert_eq!(task, "boom");
                assert_eq!(p2, pid);
                assert_eq!(message, "boom at 42");
                assert!(location.unwrap().starts_with("tests/process/main.rs:"));
            }
            other => panic!("expected a panic, got {other:?}"),
        }
        // The worker survives a panic and exits normally once its work is done.
        assert_eq!(p.exitcode(), Some(0));
    });
}

#[test]
fn segfault_and_abort_are_crashes_with_their_signal() {
    each_method(DEADLINE, |method| {
        for (task_result, signal, exitcode) in [
            (
                Process::builder(segfault, ()).start_method(method).start(),
                "SIGSEGV",
                -11,
            ),
            (
                Process::builder(abort, ()).start_method(method).start(),
                "SIGABRT",
                -6,
            ),
        ] {
            let mut p = task_result.unwrap();
            let err = p.join().unwrap_err();
            match err.kind() {
                ErrorKind::Crashed { signal: s, pid, .. } => {
                    assert_eq!(s.to_string(), signal);
                    assert_eq!(*pid, p.pid());
                }
                other => panic!("expected a crash, got {other:?}"),
            }
            assert!(err.to_string().contains(signal), "{err}");
            assert_eq!(p.exitcode(), Some(exitcode));
        }
    });
}

#[test]
fn exit_before_returning_is_an_exit_error_even_with_code_zero() {
    each_method(DEADLINE, |method| {
        for code in [0, 3] {
            let mut p = Process::builder(exit_with, code)
                .start_method(method)
                .start()
                .unwrap();
            match p.join().map_err(Error::into_kind) {
                Err(ErrorKind::Exited { code: c, task, .. }) => {
                    assert_eq!(c, code);
                    assert_eq!(task, "exit_with");
                }
                other => panic!("expected an exit error, got {other:?}"),
            }
            assert_eq!(p.exitcode(), Some(code));
        }
    });
}

#[test]
fn terminate_gives_minus_15_and_kill_minus_9() {
    each_method(DEADLINE, |method| {
        for (kill, code) in [(false, -15), (true, -9)] {
            let mut p = Process::builder(sleep_ms, 60_000)
                .start_method(method)
                .start()
                .unwrap();
            assert!(p.is_alive());
            if kill {
                p.kill().unwrap();
            } else {
                p.terminate().unwrap();
            }
            let e = p.join().unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::Crashed { .. }), "{e:?}");
            assert_eq!(p.exitcode(), Some(code));
            // Signalling a process that has exited is a no-op, never a stray signal.
            p.terminate().unwrap();
            p.kill().unwrap();
        }
    });
}

#[test]
fn join_timeout_returns_in_time_and_the_process_can_still_be_joined() {
    each_method(DEADLINE, |method| {
        let mut p = Process::builder(sleep_ms, 400)
            .start_method(method)
            .start()
            .unwrap();
        let t = Instant::now();
        assert!(p.join_timeout(Duration::from_millis(50)).is_none());
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        assert!(
            waited < Duration::from_millis(300),
            "returned late: {waited:?}"
        );
        assert!(p.is_alive());
        assert_eq!(p.exitcode(), None);
        assert_eq!(
            p.join_timeout(Duration::from_secs(30)).unwrap().unwrap(),
            400
        );
        assert_eq!(p.exitcode(), Some(0));
    });
}
