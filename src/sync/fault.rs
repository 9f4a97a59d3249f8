//! Fault injection, for tests of the queue's crash safety: a process that arms a fault
//! point dies by SIGKILL when it reaches it, halfway through copying a message with the
//! region's mutex held. Nothing happens unless a test arms one.

use std::sync::atomic::{AtomicU8, Ordering};

/// Where a process can be made to die.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Fault {
    /// Halfway through copying a message into a ring, before it is committed.
    PutMidCopy = 1,
    /// Halfway through copying a message out of a ring, before it is removed.
    GetMidCopy = 2,
}

static ARMED: AtomicU8 = AtomicU8::new(0);

/// Dies here if `fault` is armed.
pub(crate) fn point(fault: Fault) {
    if ARMED.load(Ordering::Relaxed) == fault as u8 {
        crate::os::kill_self();
    }
}

/// Arms a fault point in this process: `"put-mid-copy"` or `"get-mid-copy"`. For the
/// supervisor's own tests; returns false for an unknown name.
#[doc(hidden)]
pub fn arm(name: &str) -> bool {
    let fault = match name {
        "put-mid-copy" => Fault::PutMidCopy,
        "get-mid-copy" => Fault::GetMidCopy,
        _ => return false,
    };
    ARMED.store(fault as u8, Ordering::Relaxed);
    true
}
