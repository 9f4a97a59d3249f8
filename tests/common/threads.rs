//! Acting from another thread at the moment a wait sleeps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A `waiting` probe for [`act_while_waiting`] that reads `handle` from the other
/// thread through `probe`. Queue, Event and Semaphore handles are not `Sync` (one shared
/// by reference would be one holder for two threads); the watcher must not take a
/// clone either, which would be a holder and change what a lone waiter sees.
pub fn watch<'a, T>(handle: &'a T, probe: fn(&T) -> bool) -> impl Fn() -> bool + Send + 'a {
    struct Lent<'a, T>(&'a T);
    // SAFETY: the handles keep their state in atomics and a process-shared mutex in
    // shared memory, safe to use from any thread; they are not `Sync` as a rule about
    // holders, not for memory safety, and the probe only reads a waiter count.
    unsafe impl<T> Send for Lent<'_, T> {}
    impl<T> Lent<'_, T> {
        fn get(&self) -> &T {
            self.0
        }
    }
    let lent = Lent(handle);
    move || probe(lent.get())
}

/// Runs `wait` on this thread and, on another thread, `act` as soon as `waiting()`
/// says the first one sleeps in its wait (checked in a loop). Returns what `wait`
/// returned and whether `act` ran (false: `wait` returned without ever sleeping).
/// `act` should own the other thread's handle (a clone), `waiting` only borrow one.
pub fn act_while_waiting<T>(
    waiting: impl Fn() -> bool + Send,
    act: impl FnOnce() + Send,
    wait: impl FnOnce() -> T,
) -> (T, bool) {
    let done = AtomicBool::new(false);
    let done = &done;
    std::thread::scope(|s| {
        let other = s.spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !waiting() {
                if done.load(Ordering::SeqCst) || Instant::now() > deadline {
                    return false;
                }
                std::thread::yield_now();
            }
            act();
            true
        });
        let out = wait();
        done.store(true, Ordering::SeqCst);
        (out, other.join().expect("the other thread panicked"))
    })
}
