//! Waiting awake: polling for something that is about to happen.
//!
//! Both ends of a link poll for a short while before they sleep on it. When the answer
//! comes within the poll, neither side needs waking, and on a virtual machine the
//! wake-up that costs the most (one on an idle CPU) can cost more than a whole round
//! trip between two processes.

use std::time::{Duration, Instant};

/// How long either end of a link polls before it sleeps: a waiting handle, an `apply`
/// reading its own reply, and a worker that has just answered (the next task of a
/// caller in an `apply` loop comes within it). A quick answer within the window needs
/// no wake-up; an idle waiter pays this much CPU time.
pub const WINDOW: Duration = Duration::from_micros(100);

/// Polls `ready` until it holds (true) or `until` passes (false), yielding every
/// `every` polls to a thread that wants this CPU (the peer or reader that will
/// deliver, say).
pub fn poll_until(until: Instant, every: u32, mut ready: impl FnMut() -> bool) -> bool {
    let every = every.max(1);
    let mut polls = 0u32;
    while !ready() {
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(every) {
            if Instant::now() >= until {
                return false;
            }
            std::thread::yield_now();
        }
        std::hint::spin_loop();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    fn it_returns_once_ready_and_gives_up_at_the_deadline() {
        let mut calls = 0;
        assert!(poll_until(
            Instant::now() + Duration::from_secs(60),
            4,
            || {
                calls += 1;
                calls == 10
            }
        ));
        assert_eq!(calls, 10);
        let start = Instant::now();
        assert!(!poll_until(start + Duration::from_millis(2), 0, || false));
        assert!(start.elapsed() >= Duration::from_millis(2));
    }

    #[test]
    fn it_sees_what_another_thread_does() {
        let flag = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| flag.store(true, Ordering::Release));
            assert!(poll_until(
                Instant::now() + Duration::from_secs(60),
                16,
                || flag.load(Ordering::Acquire)
            ));
        });
    }
}
