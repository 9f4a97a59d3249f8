//! Catching a dependency's panic without its message on standard error.
//!
//! ipc-channel asserts where a system call fails (out of descriptors, an `mmap` that
//! cannot be made): the callers catch those panics and turn them into errors in words.
//! `catch_unwind` alone still lets the process's panic hook print "thread ... panicked
//! at" for a panic that was handled. [`catch`] keeps the hook quiet for panics on the
//! calling thread while its closure runs: the first call wraps the hook the program had
//! (which still runs for every other panic). A hook the program sets after that replaces
//! the wrapper, and such caught panics are then printed again, but still caught.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// How many [`catch`] calls this thread is inside.
    static QUIET: Cell<u32> = const { Cell::new(0) };
}

/// Leaves a [`catch`] however its closure ends.
struct Leave;

impl Drop for Leave {
    fn drop(&mut self) {
        QUIET.with(|q| q.set(q.get().saturating_sub(1)));
    }
}

/// Runs `f` and catches its panic, as `std::panic::catch_unwind` does, without the
/// panic hook printing it (see the module's documentation).
pub fn catch<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    static WRAPPED: Once = Once::new();
    // `take_hook` and `set_hook` must not be called while this thread panics (a drop
    // during unwinding): then the hook stays as it is, and a panic is only caught.
    if !std::thread::panicking() {
        WRAPPED.call_once(|| {
            let previous = panic::take_hook();
            panic::set_hook(Box::new(move |info| {
                if QUIET.with(Cell::get) == 0 {
                    previous(info);
                }
            }));
        });
    }
    QUIET.with(|q| q.set(q.get() + 1));
    let _leave = Leave;
    panic::catch_unwind(AssertUnwindSafe(f))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_caught_panic_is_returned_and_the_thread_goes_on() {
        let caught = super::catch(|| -> u32 { panic!("inside") });
        let payload = caught.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"inside"));
        assert_eq!(super::catch(|| 7).unwrap(), 7);
        assert_eq!(super::QUIET.with(std::cell::Cell::get), 0);
    }
}
