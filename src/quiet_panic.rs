//! Keeps a panic this library expects inside a dependency, and catches, off stderr.
//!
//! One is left that no check before the call can rule out: ipc-channel indexes its list
//! of received descriptors with an index the peer sent, and panics when the kernel
//! dropped a descriptor for want of a free one (`MSG_CTRUNC` at `RLIMIT_NOFILE`): a
//! spawn start's hand-off checks just before that the descriptor can be had
//! (`os::attached_descriptors_receivable`), yet another thread may take the last free
//! one in between. The panic is caught and the start fails naming the descriptor
//! limit; this keeps the panic hook from printing it first.
//!
//! The hook the program had when this one was installed (at `init()`) still sees every
//! other panic, unchanged. A hook the program installs later replaces this one: such a
//! caught panic is then printed again.

use std::cell::Cell;
use std::sync::Once;

thread_local! {
    /// Set while this thread runs a call whose panics are caught and reported.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Wraps the program's panic hook, once: panics of a thread inside [`quietly`] are not
/// printed, every other one goes to the hook that was there.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    if std::thread::panicking() {
        // `set_hook` may not be called while unwinding; a later call installs it.
        return;
    }
    ONCE.call_once(|| {
        let earlier = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                earlier(info);
            }
        }));
    });
}

/// Runs `f` (which catches its own panics) with its panics kept off stderr.
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> T {
    install();
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            QUIET.with(|q| q.set(self.0));
        }
    }
    let _restore = Restore(QUIET.with(|q| q.replace(true)));
    f()
}
