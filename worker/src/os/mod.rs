//! Every system call the worker side makes, behind safe functions.
//!
//! Functions marked "async-signal-safe" allocate nothing, take no lock and may run
//! between `fork` and `exec`.

mod children;
mod clock;
mod descriptors;
mod hang_up;
mod owner;
mod process;
mod setup;
mod socket;
mod stat;
mod term;

pub(crate) use children::{
    become_subreaper, end_adopted, end_children, end_children_at_exit, has_children,
    reap_exited_except,
};
pub(crate) use clock::{monotonic_ns, monotonic_upper_ns};
pub use descriptors::descriptors_nearly_exhausted;
pub(crate) use hang_up::{block_hang_up, end_when_link_hangs_up, BUSY, STOPPING};
pub(crate) use owner::{die_with, parent_pidfd};
pub use process::exit_now;
pub(crate) use process::{
    fork, keep_freed_memory, kill_group_on_hangup, kill_self, own_mm_peak_kib, peak_rss_kib,
    reaped_children_peak_rss_kib, stop_self, wait_child, Forked,
};
pub(crate) use setup::{
    cloexec_above_stdio, hang_up_when_parent_dies, new_process_group, parent_pid, reset_signals,
    set_nice,
};
pub(crate) use socket::{is_seqpacket_socket, peek_packet, send_packet, wait_readable, Readiness};
pub use stat::{is_gone, ProcStat};
pub(crate) use term::end_children_on_sigterm;
