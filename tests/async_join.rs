//! `Process::join_async` never blocks its executor: the wait for a dead worker's group
//! to be empty (what its task left there, SIGKILLed) runs off the polling thread.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use common::{each_method, has_exited, pid_written_to};
use supervisor::Process;

const DEADLINE: Duration = Duration::from_secs(60);

/// Leaves a `sleep 300` that ignores SIGTERM in the worker's group, writes its pid to
/// `path`, then ends the worker with `exit(3)`: only a SIGKILL to the group ends the
/// sleep (the group sweep's SIGTERM does not).
fn leave_then_exit(path: String) -> u32 {
    let child = std::process::Command::new("sh")
        .args(["-c", "trap '' TERM; exec sleep 300"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("sh")
        .id();
    // Published once the trap is set (the shell has exec'd into sleep).
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read_link(format!("/proc/{child}/exe"))
        .map_or(true, |exe| !exe.to_string_lossy().ends_with("sleep"))
    {
        assert!(std::time::Instant::now() < until, "sh never became sleep");
        std::thread::sleep(Duration::from_millis(1));
    }
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, child.to_string()).expect("write the pid");
    std::fs::rename(&tmp, &path).expect("publish the pid");
    std::process::exit(3)
}
supervisor::task!(leave_then_exit);

/// Polls `inner`, noting before each poll whether `watched` is still alive.
struct Noting<F> {
    inner: Pin<Box<F>>,
    watched: i32,
    /// Whether `watched` ran when the last poll began.
    alive_at_last_poll: bool,
    polls: u64,
}

impl<F: Future> Future for Noting<F> {
    type Output = (F::Output, bool, u64);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.alive_at_last_poll = self.watched > 0 && !has_exited(self.watched);
        self.polls += 1;
        match self.inner.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready((out, self.alive_at_last_poll, self.polls)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// An awaited join of a worker that died leaving a SIGTERM-proof child in its group, on
/// a current-thread runtime: the future is woken only once that child is gone, so its
/// last poll (which runs `join`'s end on the runtime's only thread) finds nothing left
/// to wait for (that the runtime stays free meanwhile is tests/async.rs's to show).
/// Before, the last poll began with the child still alive and SIGKILLed it and waited
/// for it to vanish (up to 1 s) on the executor thread.
#[test]
fn an_awaited_join_waits_for_the_group_off_the_executor_thread() {
    each_method(DEADLINE, |method| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("async-join-{method}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for round in 0..3 {
            let path = dir.join(format!("round-{round}"));
            let mut p = Process::builder(leave_then_exit, path.display().to_string())
                .start_method(method)
                .start()
                .unwrap();
            let child = pid_written_to(&path);
            let (result, alive, polls) = rt.block_on(Noting {
                inner: Box::pin(p.join_async()),
                watched: child,
                alive_at_last_poll: false,
                polls: 0,
            });
            assert!(result.is_err(), "the worker exited with 3");
            assert!(
                has_exited(child),
                "{method} round {round}: the group's child ran on after the join"
            );
            assert!(
                !alive,
                "{method} round {round}: the join's last poll ({polls} polls) began with \
                 the group's child alive: it waited for it on the executor thread"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    });
}
