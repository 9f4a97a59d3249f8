//! Whether the kernel's OOM killer ended a process, where the system says so.
//!
//! Two witnesses, chosen once per program:
//!
//! - **The kernel log** (`/dev/kmsg`), when it can be read (root, CAP_SYSLOG, or
//!   `kernel.dmesg_restrict = 0`): the OOM killer writes `Out of memory: Killed process
//!   PID (NAME) ...` (or `Memory cgroup out of memory: Killed process PID ...`) as it
//!   sends its SIGKILL, before the victim can exit. A record naming the pid, written
//!   after the process started, proves it. This is the one used here.
//! - **The system's counter** (`oom_kill` in `/proc/vmstat`), otherwise: it counts every
//!   OOM kill on the machine. If it rose while the process ran, and the process died of
//!   a SIGKILL this program did not send, the OOM killer is the likely sender; another
//!   process's OOM kill at the same moment as an outside `kill -9` would be mistaken.
//!
//! With neither, nothing is told apart: the death stays a crash by SIGKILL.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::OnceLock;

use super::clock::monotonic_ns;

/// Kernel log records this much older than the process's start still count (the log's
/// clock and `CLOCK_MONOTONIC` may drift apart a little).
const SLACK_US: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Witness {
    KernelLog,
    Counter,
    Nothing,
}

fn witness() -> Witness {
    static WITNESS: OnceLock<Witness> = OnceLock::new();
    *WITNESS.get_or_init(|| {
        if open_kmsg().is_ok() {
            Witness::KernelLog
        } else if oom_kill_count().is_some() {
            Witness::Counter
        } else {
            Witness::Nothing
        }
    })
}

/// What is noted when a process starts, to tell later whether the OOM killer ended it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OomWatch {
    /// `CLOCK_MONOTONIC` at the start, in µs (the kernel log's clock).
    since_us: u64,
    /// The system's OOM kill count then (the counter witness only).
    count: Option<u64>,
}

/// Notes the moment (and, where needed, the system's OOM kill count) before a process
/// is started.
pub(crate) fn oom_watch() -> OomWatch {
    OomWatch {
        since_us: monotonic_ns() / 1_000,
        count: match witness() {
            Witness::Counter => oom_kill_count(),
            _ => None,
        },
    }
}

/// Whether the system says the OOM killer ended process `pid`, started after `watch`
/// was taken. Only asked about a process that died of a SIGKILL this program did not
/// send.
pub(crate) fn oom_killed(pid: i32, watch: &OomWatch) -> bool {
    match witness() {
        Witness::KernelLog => kernel_log_names(pid, watch.since_us.saturating_sub(SLACK_US)),
        Witness::Counter => match (watch.count, oom_kill_count()) {
            (Some(before), Some(now)) => now > before,
            _ => false,
        },
        Witness::Nothing => false,
    }
}

fn open_kmsg() -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
}

/// Whether a kernel log record since `since_us` says the OOM killer killed `pid`.
fn kernel_log_names(pid: i32, since_us: u64) -> bool {
    let Ok(mut kmsg) = open_kmsg() else {
        return false;
    };
    // One record per read; the end is EAGAIN; EPIPE means records were overwritten
    // while we read (read on).
    let mut buf = vec![0u8; 8192];
    for _ in 0..100_000 {
        match kmsg.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if record_names_oom_kill(&String::from_utf8_lossy(&buf[..n]), pid, since_us) {
                    return true;
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    false
}

/// Whether one `/dev/kmsg` record (`PRIORITY,SEQ,MICROSECONDS,FLAGS;MESSAGE`, then
/// continuation lines) written at or after `since_us` says the OOM killer killed `pid`.
fn record_names_oom_kill(record: &str, pid: i32, since_us: u64) -> bool {
    let Some((prefix, message)) = record.split_once(';') else {
        return false;
    };
    let Some(at_us) = prefix.split(',').nth(2).and_then(|t| t.parse::<u64>().ok()) else {
        return false;
    };
    let message = message.lines().next().unwrap_or("");
    at_us >= since_us
        && message.to_ascii_lowercase().contains("out of memory")
        && message.contains(&format!("Killed process {pid} ("))
}

/// `oom_kill` of `/proc/vmstat`: OOM kills since boot, on the whole machine.
fn oom_kill_count() -> Option<u64> {
    std::fs::read_to_string("/proc/vmstat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_oom_kill_record_of_that_pid_since_the_start_counts() {
        let global = "3,1205,912345678,-;Out of memory: Killed process 4242 (leaky) \
                      total-vm:2100000kB, anon-rss:2000000kB, file-rss:0kB, shmem-rss:0kB, \
                      UID:0 pgtables:4000kB oom_score_adj:0\n";
        let memcg = "3,1206,912345679,-;Memory cgroup out of memory: Killed process 4242 \
                     (leaky) total-vm:2100000kB\n SUBSYSTEM=memory\n";
        for (record, pid, since, want) in [
            (global, 4242, 900_000_000, true),
            (memcg, 4242, 900_000_000, true),
            (global, 4242, 912_345_678, true),
            // Another pid, one that merely starts with the same digits, or before the
            // process started (an earlier holder of the pid).
            (global, 424, 900_000_000, false),
            (global, 42421, 900_000_000, false),
            (global, 4242, 912_345_679, false),
            // Not an OOM kill; garbled records.
            (
                "6,1,912345678,-;Killed process 4242 (x) by hand\n",
                4242,
                0,
                false,
            ),
            (
                "6,1,912345678,-;oom_reaper: reaped process 4242 (leaky)\n",
                4242,
                0,
                false,
            ),
            ("garbage", 4242, 0, false),
            (
                "3,1,notanumber,-;Out of memory: Killed process 4242 (x)",
                4242,
                0,
                false,
            ),
        ] {
            assert_eq!(
                record_names_oom_kill(record, pid, since),
                want,
                "{record:?} for {pid} since {since}"
            );
        }
    }

    #[test]
    fn a_process_that_was_not_oom_killed_is_not_said_to_be() {
        let watch = oom_watch();
        assert!(!oom_killed(std::process::id() as i32, &watch));
    }
}
