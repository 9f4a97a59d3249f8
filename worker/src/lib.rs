//! The worker side of `supervisor`: what runs inside a worker process.
//!
//! - [`codec`]: the one place values become bytes (bincode 2, bounded decoding).
//! - [`protocol`]: frames and messages on the ipc-channel links, the spawn hello.
//! - [`packet`]: ipc-channel's packet headers, checked before it reads a packet.
//! - [`registry`] and [`task!`]: tasks by name, registered at link time.
//! - [`setup`]: what a new child does to itself first (group, nice, parent death).
//! - [`serve`]: the worker loop; [`server`]: the zygote / forkserver loop.
//! - [`poll`]: waiting awake for an answer that is about to come.
//! - [`bootstrap`]: the child side of the spawn handshake.
//!
//! Parent-side code lives in the `supervisor` crate, which re-exports what users need:
//! depend on that one. [`Call`] says what can be a task. Linux only.
#![warn(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "supervisor-worker runs only on Linux (5.11 or later): it watches processes through pidfds, \
     shares memory through memfds and futexes, and reads /proc"
);

pub mod arena;
pub mod bootstrap;
pub mod call;
pub mod codec;
pub mod fault;
mod os;
pub mod packet;
pub mod poll;
pub mod progress;
pub mod protocol;
pub mod quiet_panic;
pub mod registry;
mod runner;
pub mod serve;
pub mod server;
pub mod setup;

pub use call::Call;
/// Whether this process is within 32 descriptors of its limit; for the `supervisor`
/// crate, not part of the API.
#[doc(hidden)]
pub use os::descriptors_nearly_exhausted;
pub use os::exit_now;
/// `/proc/<pid>/stat`, parsed in one place for the `supervisor` crate, its CLI and
/// tests; not part of the API.
#[doc(hidden)]
pub use os::{is_gone, ProcStat};

use std::sync::OnceLock;

/// What a worker knows about itself.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerContext {
    /// The name its parent gave it.
    pub name: String,
    /// Whether it is a daemon (and so may not start processes).
    pub daemon: bool,
    /// In a pool: its seat, 0-based (`procs` seats; a replacement takes its
    /// predecessor's, and two live workers never share one; GNU parallel's job slot
    /// `{%}` is this plus 1). `None` for a single process.
    pub seat: Option<u32>,
}

static CONTEXT: OnceLock<WorkerContext> = OnceLock::new();

/// `Some` inside a worker process, `None` in a parent.
pub fn context() -> Option<&'static WorkerContext> {
    CONTEXT.get()
}

/// An error and its sources, joined with ": ", each said once (a source whose text
/// ends the message so far is not repeated).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        // Said once: a library that prints its source in its own message (async-nats
        // does) would otherwise repeat it.
        let part = s.to_string();
        if !out.ends_with(&part) {
            out.push_str(": ");
            out.push_str(&part);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod error_chain_tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    #[error("IO error: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot connect to the server")]
    struct Outer(#[source] Repeats);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start")]
    struct Start(#[source] std::io::Error);

    #[test]
    fn a_cause_already_in_its_errors_message_is_said_once() {
        let inner = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        assert_eq!(
            error_chain(&Outer(Repeats(inner))),
            "cannot connect to the server: IO error: invalid peer certificate: UnknownIssuer"
        );
    }

    #[test]
    fn distinct_causes_are_all_said() {
        let e = Start(std::io::Error::other("no such file"));
        assert_eq!(error_chain(&e), "cannot start: no such file");
    }
}

#[doc(hidden)]
pub mod __private {
    pub use crate::registry::support::*;
    pub use crate::registry::{TaskEntry, TASKS};
    pub use linkme;
}
