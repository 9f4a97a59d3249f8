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
}

/// The fault selected by the environment, if any.
pub fn selected() -> Option<Fault> {
    match std::env::var(ENV_FAULT).ok()?.as_str() {
        "exit-before-connect" => Some(Fault::ExitBeforeConnect),
        "hang-before-connect" => Some(Fault::HangBeforeConnect),
        _ => None,
    }
}
