//! A panic caught by `quiet_panic::catch` does not reach the program's panic hook;
//! every other panic still does (the hook the program had is wrapped, not replaced).
//! One test in a binary of its own: the hook is the whole process's.

use std::sync::atomic::{AtomicUsize, Ordering};

static HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn a_caught_dependency_panic_skips_the_hook_and_others_still_reach_it() {
    std::panic::set_hook(Box::new(|_| {
        HOOK_CALLS.fetch_add(1, Ordering::SeqCst);
    }));
    let caught = supervisor_worker::quiet_panic::catch(|| -> () { panic!("in a dependency") });
    assert!(caught.is_err());
    assert_eq!(
        HOOK_CALLS.load(Ordering::SeqCst),
        0,
        "the caught panic was printed"
    );
    // Outside `catch`, on this thread and another: the program's hook runs.
    let plain = std::panic::catch_unwind(|| panic!("ours"));
    assert!(plain.is_err());
    assert!(std::thread::spawn(|| panic!("a thread's")).join().is_err());
    assert_eq!(HOOK_CALLS.load(Ordering::SeqCst), 2);
}
