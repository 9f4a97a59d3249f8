//! Fault injection, for tests of the supervisor itself.
//!
//! A worker whose environment has `SUPERVISOR_FAULT=<point>` misbehaves at that point
//! of its bootstrap. The variable is read once, by a re-executed child, and does
//! nothing in a program that never sets it.

/// The environment variable that selects a fault.
pub const ENV_FAULT: &str = "SUPERVISOR_FAULT";

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Exit with code 3 before connecting to the bootstrap socket.
    ExitBeforeConnect,
    /// Never connect (block forever).
    HangBeforeConnect,
    /// Stop (SIGSTOP) before connecting, and connect once continued (SIGCONT): a start
    /// held pending as long as a test wants.
    StopBeforeConnect,
    /// Connect, then stop (SIGSTOP, again whenever continued) before saying hello.
    StopAfterConnect,
    /// A worker blocks SIGHUP before it serves: its parent-death signal never acts, as
    /// if it had been lost in the fork race, so only the hang-up of its channel can
    /// end it once its parent is gone.
    BlockHangUp,
    /// Say hello, then die (SIGKILL) before the hand-off.
    KillAfterHello,
    /// Hand the channel over with its receiving end already closed (the parent's
    /// configuration cannot be sent), then die (SIGKILL).
    KillAfterHandoff,
}

/// The fault selected by the environment, if any.
pub fn selected() -> Option<Fault> {
    match std::env::var(ENV_FAULT).ok()?.as_str() {
        "exit-before-connect" => Some(Fault::ExitBeforeConnect),
        "hang-before-connect" => Some(Fault::HangBeforeConnect),
        "stop-before-connect" => Some(Fault::StopBeforeConnect),
        "stop-after-connect" => Some(Fault::StopAfterConnect),
        "block-hang-up" => Some(Fault::BlockHangUp),
        "kill-after-hello" => Some(Fault::KillAfterHello),
        "kill-after-handoff" => Some(Fault::KillAfterHandoff),
        _ => None,
    }
}

/// Sends `bytes` as one raw packet on the socket `fd`, with the descriptor `attach`
/// attached (SCM_RIGHTS) if given: how a test plays a hostile peer below the codec (for
/// example a worker writing its own header on its result channel). Returns the bytes
/// sent.
pub fn send_raw_packet(
    fd: std::os::fd::RawFd,
    bytes: &[u8],
    attach: Option<std::os::fd::RawFd>,
) -> std::io::Result<usize> {
    crate::os::send_packet(fd, bytes, attach)
}
