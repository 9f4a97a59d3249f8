//! Every system call the parent side makes, behind safe functions.
//!
//! Nothing here is public API; no libc type leaves this module. One file per concept;
//! callers use the names re-exported here (`os::pidfd_open`).

mod cgroup;
mod clock;
mod clone3;
mod exec;
mod fd;
mod futex;
mod group;
mod listener;
mod mutex;
mod nice;
mod oom;
mod private;
mod proc;
mod process;
mod shm;
mod spool;
mod tree;

pub(crate) use cgroup::{
    child_cgroups, kill_all as cgroup_kill_all, make_cgroup, open_cgroup, own_cgroup_dir,
    populated as cgroup_populated, remove_cgroup, signal_members as cgroup_signal_members,
    subtree as cgroup_subtree,
};
pub(crate) use clock::{boot_ticks, monotonic_ns};
pub(crate) use clone3::born_alive_in;
pub(crate) use exec::{spawn_exec, Exec, ExecOutcome, PendingExec, SetupFn};
pub(crate) use fd::{
    close_above_stdio, descriptor_limit, descriptors_free, descriptors_nearly_exhausted, open_fds,
    poll_readable, shut_down_reading, EventFd,
};
pub(crate) use futex::{futex_wait, futex_wake};
pub(crate) use group::{group_has_running_members, signal_group_members};
pub(crate) use listener::{
    accepted_at, attached_descriptors_receivable, close_orphan_server_socket, listening_socket_at,
    peer_pid, shut_down_accepted,
};
pub(crate) use mutex::{Acquire, SharedMutex};
pub(crate) use nice::{current_nice, may_lower_nice_to};
pub(crate) use oom::{oom_killed, oom_watch, OomWatch};
pub(crate) use private::{
    bound_unix_sockets, check_temp_dir, euid, make_private_dir, own_namespaces, random_bytes,
    socket_pair_available, temp_dir_makes_dirs, temp_dir_unfit, unix_socket_available,
    with_private_umask, Namespaces, TEMP_PROBE_PREFIX,
};
pub(crate) use proc::{proc_usage, process_start_time};
pub(crate) use process::{
    at_exit, fork, getpid, kill_group, kill_pid, kill_self, pidfd_open, pidfd_send_signal,
    process_exists, reap, set_thread_name, stop_self, thread_count, Forked, Reaped,
};
pub(crate) use shm::{is_sealed_memfd, memfd_create, Mapping};
pub(crate) use spool::{identity, mark_received, open_remote, received, unlinked_file};
pub(crate) use tree::{kill_pinned, pin_descendants, TreeWatch};
