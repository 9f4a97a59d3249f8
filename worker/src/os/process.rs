//! This process: forking, waiting for a child, exiting, dying with the parent, memory.

use super::setup::errno;

/// Ends the process at once: no destructors, no atexit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is always sound to call.
    unsafe { libc::_exit(code) }
}

/// Stops this process (SIGSTOP) until someone sends it SIGCONT.
pub(crate) fn stop_self() {
    // SAFETY: kill with our own pid and a signal number.
    unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
}

/// Kills this process (SIGKILL): a death nothing in it can soften (fault injection).
pub(crate) fn kill_self() {
    // SAFETY: kill with our own pid and a signal number.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

/// Result of [`fork`].
pub(crate) enum Forked {
    Child,
    Parent(i32),
}

/// Forks the calling process. Only call from a single-threaded process.
pub(crate) fn fork() -> Result<Forked, i32> {
    // SAFETY: callers are single-threaded servers, so the child inherits no lock held
    // by another thread and may go on running ordinary Rust code.
    match unsafe { libc::fork() } {
        -1 => Err(errno()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Waits for child `pid` to end; returns the raw wait status, its peak RSS in KiB and
/// its CPU time (user + system) in microseconds.
pub(crate) fn wait_child(pid: i32) -> Result<(i32, u64, u64), i32> {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 writes into both out-pointers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pointers are to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage.ru_maxrss.max(0) as u64, cpu_micros(&usage)));
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

fn cpu_micros(usage: &libc::rusage) -> u64 {
    let micros = |t: libc::timeval| (t.tv_sec.max(0) as u64) * 1_000_000 + t.tv_usec.max(0) as u64;
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

extern "C" fn kill_own_group(_: libc::c_int) {
    // SAFETY: kill is async-signal-safe; 0 addresses our own process group (the worker
    // and every child it started), which is exactly what must end with the parent.
    unsafe { libc::kill(0, libc::SIGKILL) };
}

/// On SIGHUP (sent when the parent dies), kill this process's whole group, so commands
/// a task started die with the worker.
pub(crate) fn kill_group_on_hangup() {
    // SAFETY: installs a handler that only calls the async-signal-safe `kill`.
    unsafe {
        libc::signal(
            libc::SIGHUP,
            kill_own_group as *const () as libc::sighandler_t,
        )
    };
}

/// The peak resident memory of this process so far, in KiB (`getrusage`: one system
/// call, no file). Asked of the calling thread: Linux's `ru_maxrss` is the memory's
/// (the process's high-water mark, whichever thread touched it) for either, and
/// `RUSAGE_SELF` also sums every thread's times under a lock, twice the cost (about
/// 370 against 180 ns with four threads), paid after every call under a memory limit.
pub(crate) fn peak_rss_kib() -> u64 {
    // SAFETY: rusage is plain data that getrusage fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a live out-pointer; RUSAGE_THREAD exists since Linux 2.6.26.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return 0;
    }
    usage.ru_maxrss.max(0) as u64
}

/// The high-water mark of the memory this process maps now, in KiB: `VmHWM` of
/// `/proc/self/status`. Unlike `ru_maxrss` (see [`peak_rss_kib`]), it is not raised by
/// the mark a process inherits across `exec` (a spawned worker's is its parent
/// program's peak). A read of /proc (some µs): asked only when `ru_maxrss` is over a
/// limit. `None` if it cannot be read.
pub(crate) fn own_mm_peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    vm_hwm_kib(&status)
}

/// The `VmHWM:` field of a `/proc/PID/status` text, in KiB.
fn vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// The largest peak resident memory of any descendant this process has reaped (and
/// of those they reaped), in KiB: `getrusage(RUSAGE_CHILDREN)`. A high-water mark too:
/// it never goes down.
pub(crate) fn reaped_children_peak_rss_kib() -> u64 {
    // SAFETY: rusage is plain data that getrusage fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a live out-pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0;
    }
    usage.ru_maxrss.max(0) as u64
}

/// Keeps freed memory in this process instead of handing it back to the kernel at once:
/// a worker that handles a big message per task would otherwise have the kernel zero
/// and map fresh pages for every one (glibc trims and unmaps eagerly by default).
pub(crate) fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts glibc's allocator thresholds; it is called before
    // any task runs, on the worker's only thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_mm_s_own_mark_is_read_from_status() {
        let text = "Name:\tx\nVmPeak:\t  10 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 99 kB\n";
        assert_eq!(super::vm_hwm_kib(text), Some(1234));
        assert_eq!(super::vm_hwm_kib("VmHWM: lots\n"), None);
        assert_eq!(super::vm_hwm_kib(""), None);
        let own = super::own_mm_peak_kib().expect("this kernel has VmHWM");
        assert!(own > 0 && own <= super::peak_rss_kib(), "{own}");
    }

    /// The peak is the process's: memory another thread touched counts, past any peak
    /// this test process reached before.
    #[test]
    fn the_peak_counts_memory_another_thread_touched() {
        let size = (super::peak_rss_kib() as usize + (64 << 10)) << 10;
        let (touched, done) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|s| {
            s.spawn(|| {
                let v = vec![1u8; size];
                std::hint::black_box(&v);
                touched.wait();
                done.wait();
            });
            touched.wait();
            let peak = super::peak_rss_kib();
            done.wait();
            assert!(
                peak as usize >= size >> 10,
                "{peak} KiB after touching {size} bytes"
            );
        });
    }
}
