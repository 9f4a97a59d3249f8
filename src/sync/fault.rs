//! Fault injection, for tests of crash safety and timeouts: a process that arms a fault
//! point dies by SIGKILL when it reaches it, halfway through copying a message with the
//! region's mutex held, or stops itself (SIGSTOP) right after taking a region's mutex.
//! Nothing happens unless a test arms one.

use std::sync::atomic::{AtomicU8, Ordering};

/// Where a process can be made to die.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Fault {
    /// Halfway through copying a message into a ring, before it is committed.
    PutMidCopy = 1,
    /// Halfway through copying a message out of a ring, before it is removed.
    GetMidCopy = 2,
    /// Right after taking any region's mutex: the process stops (SIGSTOP) holding it,
    /// once (the point disarms itself).
    StopHoldingLock = 3,
}

static ARMED: AtomicU8 = AtomicU8::new(0);

/// Dies (or stops) here if `fault` is armed.
#[inline]
pub(crate) fn point(fault: Fault) {
    if ARMED.load(Ordering::Relaxed) == fault as u8 {
        fire(fault);
    }
}

#[cold]
fn fire(fault: Fault) {
    match fault {
        Fault::PutMidCopy | Fault::GetMidCopy => crate::os::kill_self(),
        Fault::StopHoldingLock => {
            if ARMED
                .compare_exchange(fault as u8, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                crate::os::stop_self();
            }
        }
    }
}

/// Arms a fault point in this process: `"put-mid-copy"`, `"get-mid-copy"` or
/// `"stop-holding-lock"`. For the supervisor's own tests; returns false for an unknown
/// name.
#[doc(hidden)]
pub fn arm(name: &str) -> bool {
    let fault = match name {
        "put-mid-copy" => Fault::PutMidCopy,
        "get-mid-copy" => Fault::GetMidCopy,
        "stop-holding-lock" => Fault::StopHoldingLock,
        _ => return false,
    };
    ARMED.store(fault as u8, Ordering::Relaxed);
    true
}
