//! Every system call the parent side makes, behind safe functions.
//!
//! Nothing here is public API; no libc type leaves this module.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// Opens a pidfd for `pid`: a handle that always names that very process, even after
/// its pid is reused, and becomes readable when it exits.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes plain integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(last_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `signal` to the process behind `pidfd`. `Ok(false)` if it had already exited.
pub(crate) fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<bool> {
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    delivered(r == 0)
}

/// `Ok(true)` if a signal was delivered, `Ok(false)` if its target no longer exists.
fn delivered(ok: bool) -> io::Result<bool> {
    if ok {
        return Ok(true);
    }
    let e = last_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Clock ticks since boot (the unit of a process's start time in /proc/PID/stat).
pub(crate) fn boot_ticks() -> u64 {
    // SAFETY: timespec is plain data filled in by clock_gettime.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a live out-pointer; CLOCK_BOOTTIME always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    // SAFETY: sysconf takes a plain integer.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ts.tv_sec.max(0) as u64 * hz + ts.tv_nsec.max(0) as u64 * hz / 1_000_000_000
}

/// What /proc/PID/stat tells about a process: its group, its start time in ticks since
/// boot, and whether it is a zombie (exited, waiting to be reaped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    group: i32,
    start: u64,
    zombie: bool,
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses a /proc/PID/stat line. A process whose main thread has exited shows as a
/// zombie too while its other threads run: only one with a single thread left is one.
fn parse_stat(stat: &str) -> Option<ProcStat> {
    // The command name (field 2) is in parentheses and may hold anything.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let threads: u32 = fields.get(17)?.parse().ok()?;
    Some(ProcStat {
        group: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
        zombie: *fields.first()? == "Z" && threads <= 1,
    })
}

/// Every process of group `pgid` that started no later than `started_by` (ticks since
/// boot), with what /proc says of it. For a group whose leader is gone, its id may
/// have been reused by a later process: this never lists that one.
fn group_members(pgid: i32, started_by: u64) -> io::Result<impl Iterator<Item = (i32, ProcStat)>> {
    let members = std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(move |entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let stat = proc_stat(pid)?;
            (stat.group == pgid && stat.start <= started_by).then_some((pid, stat))
        });
    Ok(members)
}

/// Sends `signal` to the members of process group `pgid` that started no later than
/// `started_by` (ticks since boot). For a group whose leader is gone: its id may have
/// been reused by a later process, which this never reaches. Each member is pinned by a
/// pidfd and checked again before the signal. `Ok(true)` if any member was signalled;
/// a member that cannot be signalled does not spare the others (the first such error
/// is returned if nobody was signalled).
pub(crate) fn signal_group_members(pgid: i32, signal: i32, started_by: u64) -> io::Result<bool> {
    let mut any = false;
    let mut first_error = None;
    for (pid, stat) in group_members(pgid, started_by)? {
        let Ok(pidfd) = pidfd_open(pid) else { continue };
        // The pidfd pins this very process: check it is still the member we saw.
        if proc_stat(pid).is_some_and(|now| (now.group, now.start) == (stat.group, stat.start)) {
            match pidfd_send_signal(&pidfd, signal) {
                Ok(delivered) => any |= delivered,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    match first_error {
        Some(e) if !any => Err(e),
        _ => Ok(any),
    }
}

/// Whether process group `pgid` has a member still running (not a zombie) that started
/// no later than `started_by`. When /proc cannot be read, it answers yes.
pub(crate) fn group_has_running_members(pgid: i32, started_by: u64) -> bool {
    debug_assert!(pgid > 1);
    // SAFETY: kill with signal 0 only checks that the group exists; plain integers.
    if unsafe { libc::kill(-pgid, 0) } != 0 && last_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    match group_members(pgid, started_by) {
        Ok(mut members) => members.any(|(_, stat)| !stat.zombie),
        Err(_) => true,
    }
}

/// Sends `signal` to process `pid`. Only for a process known not to be reaped yet (a
/// fork server reaps its children only when asked).
pub(crate) fn kill_pid(pid: i32, signal: i32) {
    // SAFETY: kill with plain integers.
    unsafe { libc::kill(pid, signal) };
}

/// Sends `signal` to every process in group `pgid`. `Ok(false)` if the group is empty.
pub(crate) fn kill_group(pgid: i32, signal: i32) -> io::Result<bool> {
    debug_assert!(pgid > 1);
    // SAFETY: kill with a negative pid addresses a process group; plain integers.
    delivered(unsafe { libc::kill(-pgid, signal) } == 0)
}

/// What reaping a child tells: raw wait status, peak RSS (KiB), CPU time (µs).
pub(crate) type Reaped = (i32, u64, u64);

/// Reaps child `pid`, which must have exited already (its pidfd was readable). `None`
/// if it is not our child (someone else reaped it).
pub(crate) fn reap(pid: i32) -> Option<Reaped> {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: out-pointers to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            let micros =
                |t: libc::timeval| (t.tv_sec.max(0) as u64) * 1_000_000 + t.tv_usec.max(0) as u64;
            let cpu = micros(usage.ru_utime) + micros(usage.ru_stime);
            return Some((status, usage.ru_maxrss.max(0) as u64, cpu));
        }
        if last_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
    }
}

/// An eventfd used to wake a thread blocked in [`poll_readable`].
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes plain integers and returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(last_error());
        }
        // SAFETY: a descriptor the kernel just gave us.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd. A full counter
        // (EAGAIN) already means "awake", so the result is not needed.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub(crate) fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (nothing pending) is fine.
        unsafe { libc::read(self.0.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }

    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.0
    }
}

/// Waits until at least one of `fds` is readable (or hung up); returns one flag per fd.
pub(crate) fn poll_readable(fds: &[&OwnedFd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let timeout_ms = timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
    loop {
        // SAFETY: pfds is a live, correctly sized array of pollfd.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
        if r >= 0 {
            return Ok(pfds.iter().map(|p| p.revents != 0).collect());
        }
        let e = last_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// This process's id.
pub(crate) fn getpid() -> i32 {
    std::process::id() as i32
}

/// The nice value of the calling thread.
pub(crate) fn current_nice() -> i32 {
    // SAFETY: clearing errno before getpriority is how its -1 result is disambiguated.
    unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    }
}

/// Whether this process may lower its nice value to `target`: CAP_SYS_NICE, or
/// RLIMIT_NICE allows it (the limit is `20 - nice`).
pub(crate) fn may_lower_nice_to(target: i32) -> bool {
    if has_capability(23) {
        return true;
    }
    // SAFETY: rlimit is plain data filled in by getrlimit.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a live out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut lim) } != 0 {
        return false;
    }
    let floor = 20 - lim.rlim_cur.min(40) as i32;
    target >= floor
}

/// Whether capability number `cap` is in this process's effective set.
fn has_capability(cap: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1u64 << cap) != 0)
}

/// Number of threads in this process.
pub(crate) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// `len` bytes from the kernel's random generator.
pub(crate) fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut out = [0u8; N];
    let mut filled = 0;
    while filled < N {
        // SAFETY: writes at most N - filled bytes into the live array.
        let r = unsafe { libc::getrandom(out[filled..].as_mut_ptr().cast(), N - filled, 0) };
        if r < 0 {
            let e = last_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        filled += r as usize;
    }
    Ok(out)
}

/// The descriptors this process has open now (not counting the one used to list them).
pub(crate) fn open_fds() -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    // SAFETY: F_GETFD only reads descriptor flags; it fails for a closed descriptor,
    // which drops the directory handle used for the listing above.
    fds.retain(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1);
    fds.sort_unstable();
    fds
}

/// Closes each descriptor in `fds` above stdio. For a freshly forked child that owns
/// copies of them.
pub(crate) fn close_above_stdio(fds: &[i32]) {
    for &fd in fds.iter().filter(|&&fd| fd > 2) {
        // SAFETY: the caller (a forked child) owns these copies and never uses them again.
        unsafe { libc::close(fd) };
    }
}

/// Result of [`fork`].
pub(crate) enum Forked {
    Child,
    Parent(i32),
}

/// Forks. The caller must be single-threaded (checked with [`thread_count`]).
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: only called while this process has a single thread, so the child holds
    // no lock another thread owned and may run ordinary code.
    match unsafe { libc::fork() } {
        -1 => Err(last_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Registers `f` to run when the process exits normally (return from `main`,
/// `std::process::exit`).
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: f is a plain function valid for the whole life of the program.
    unsafe { libc::atexit(f) };
}

/// Runs `f` with the file-creation mask at 0o077, so whatever it creates (ipc-channel's
/// bootstrap directory and socket) is private from its first instant. The mask is the
/// process's: meanwhile another thread's new files are at most as open as the owner's
/// (never more), and `f` calls are serialised here.
pub(crate) fn with_private_umask<T>(f: impl FnOnce() -> T) -> T {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: umask cannot fail; it only swaps the process's mask.
    let old = unsafe { libc::umask(0o077) };
    let out = f();
    // SAFETY: as above, restoring what was there.
    unsafe { libc::umask(old) };
    out
}

/// Paths of the unix sockets bound in this network namespace (`/proc/net/unix`): a
/// bootstrap socket that is not among them has no listener left.
pub(crate) fn bound_unix_sockets() -> Option<std::collections::HashSet<String>> {
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    Some(
        table
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(7))
            .map(str::to_string)
            .collect(),
    )
}

/// Whether this process is within 32 descriptors of its limit (`RLIMIT_NOFILE`).
pub(crate) fn descriptors_nearly_exhausted() -> bool {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return false;
    }
    match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir.count() as u64 + 32 >= lim.rlim_cur,
        Err(e) => matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)),
    }
}

/// The effective user id.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Makes `dir` accessible to its owner only and checks it belongs to us.
pub(crate) fn make_private_dir(dir: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let meta = std::fs::symlink_metadata(dir)?;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a private directory of this user", dir.display()),
        ));
    }
    Ok(())
}

/// CPU time (user + system), resident memory and peak resident memory (KiB) of `pid`.
pub(crate) fn proc_usage(pid: i32) -> Option<(Duration, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf takes a plain integer.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf takes a plain integer.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Some((
        Duration::from_millis(ticks * 1000 / hz),
        pages * page / 1024,
        peak,
    ))
}

// ---------------------------------------------------------------------------------
// Shared memory and cross-process synchronisation (used by `src/sync/`).
// ---------------------------------------------------------------------------------

/// Creates an anonymous memory file (memfd) of `len` zeroed bytes, close-on-exec, sealed
/// against shrinking and growing so that no process mapping it can get a SIGBUS.
pub(crate) fn memfd_create(name: &str, len: usize) -> io::Result<OwnedFd> {
    let cname = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: a valid C string and flags; returns a new descriptor or -1.
    let fd =
        unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(last_error());
    }
    // SAFETY: a descriptor the kernel just gave us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = libc::off_t::try_from(len).map_err(io::Error::other)?;
    // SAFETY: ftruncate on our own descriptor with a non-negative length.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } != 0 {
        return Err(last_error());
    }
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl(F_ADD_SEALS) on our own memfd with plain flags.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(last_error());
    }
    Ok(fd)
}

/// Whether `fd` is a memory file sealed against shrinking (so mapping its current size
/// is safe from SIGBUS).
pub(crate) fn is_sealed_memfd(fd: &OwnedFd) -> bool {
    // SAFETY: F_GET_SEALS only reads the seals; it fails for anything but a memfd.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_SHRINK != 0
}

/// A read-write `MAP_SHARED` mapping of a whole file, unmapped on drop.
pub(crate) struct Mapping {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with other processes anyway; every access
// through it is synchronised by its users (atomics, or the region's mutex).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd` (which must be at least that long).
    pub(crate) fn new(fd: &OwnedFd, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping chosen by the kernel; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(last_error());
        }
        let ptr = std::ptr::NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range mmap gave us; nothing borrows it any more
        // (every borrow is tied to the owner of this mapping).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// How a lock of a [`SharedMutex`] was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquire {
    /// The previous holder unlocked it.
    Clean,
    /// The previous holder died (or its thread ended) holding it; the protected data may
    /// be half-updated. The new holder must repair it and call
    /// [`SharedMutex::make_consistent`] before unlocking.
    OwnerDied,
}

/// A robust, process-shared, error-checking pthread mutex that lives in shared memory.
#[repr(C)]
pub(crate) struct SharedMutex(std::cell::UnsafeCell<libc::pthread_mutex_t>);

// SAFETY: a process-shared pthread mutex is made to be used from many threads.
unsafe impl Sync for SharedMutex {}
// SAFETY: as above.
unsafe impl Send for SharedMutex {}

fn check(r: i32) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

impl SharedMutex {
    /// Initialises the mutex in place.
    ///
    /// # Safety
    /// `this` points to writable memory of `size_of::<SharedMutex>()` bytes, suitably
    /// aligned, that no thread or process uses yet.
    pub(crate) unsafe fn init(this: *mut SharedMutex) -> io::Result<()> {
        // SAFETY: attr is initialised by pthread_mutexattr_init before any other use and
        // destroyed at the end; `this` is valid and unused per the caller's contract.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            check(libc::pthread_mutexattr_init(&mut attr))?;
            let r = check(libc::pthread_mutexattr_setpshared(
                &mut attr,
                libc::PTHREAD_PROCESS_SHARED,
            ))
            .and_then(|()| {
                check(libc::pthread_mutexattr_setrobust(
                    &mut attr,
                    libc::PTHREAD_MUTEX_ROBUST,
                ))
            })
            .and_then(|()| {
                check(libc::pthread_mutexattr_settype(
                    &mut attr,
                    libc::PTHREAD_MUTEX_ERRORCHECK,
                ))
            })
            .and_then(|()| check(libc::pthread_mutex_init((*this).0.get(), &attr)));
            libc::pthread_mutexattr_destroy(&mut attr);
            r
        }
    }

    fn outcome(r: i32) -> io::Result<Option<Acquire>> {
        match r {
            0 => Ok(Some(Acquire::Clean)),
            libc::EOWNERDEAD => Ok(Some(Acquire::OwnerDied)),
            libc::EBUSY | libc::ETIMEDOUT => Ok(None),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }

    /// Locks, waiting as long as it takes. `EDEADLK` if this thread holds it already,
    /// `ENOTRECOVERABLE` if a recovering holder gave up.
    pub(crate) fn lock(&self) -> io::Result<Acquire> {
        // SAFETY: the mutex was initialised by `init` before the memory was shared.
        let r = unsafe { libc::pthread_mutex_lock(self.0.get()) };
        Self::outcome(r)?.ok_or_else(|| io::Error::from_raw_os_error(libc::EBUSY))
    }

    /// Locks if it is free now.
    pub(crate) fn try_lock(&self) -> io::Result<Option<Acquire>> {
        // SAFETY: as in `lock`.
        Self::outcome(unsafe { libc::pthread_mutex_trylock(self.0.get()) })
    }

    /// Locks, giving up after `timeout`.
    pub(crate) fn lock_timeout(&self, timeout: Duration) -> io::Result<Option<Acquire>> {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a live out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
        let total = now.tv_nsec as u128 + timeout.subsec_nanos() as u128;
        let secs = (now.tv_sec as u64)
            .saturating_add(timeout.as_secs())
            .saturating_add((total / 1_000_000_000) as u64);
        let abs = libc::timespec {
            tv_sec: secs.min(i64::MAX as u64) as libc::time_t,
            tv_nsec: (total % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: as in `lock`; abs is a live, normalised timespec.
        Self::outcome(unsafe { libc::pthread_mutex_timedlock(self.0.get(), &abs) })
    }

    /// Marks the state protected by a mutex obtained with [`Acquire::OwnerDied`] as
    /// repaired.
    pub(crate) fn make_consistent(&self) -> io::Result<()> {
        // SAFETY: called by the thread that holds the mutex after EOWNERDEAD.
        check(unsafe { libc::pthread_mutex_consistent(self.0.get()) })
    }

    /// Unlocks; the calling thread must hold the mutex.
    pub(crate) fn unlock(&self) {
        // SAFETY: callers only unlock what their thread locked (guards are !Send).
        unsafe { libc::pthread_mutex_unlock(self.0.get()) };
    }
}

/// Sleeps while `*word == expected`, at most `timeout`: a process-shared futex wait.
/// Returns on a wake, a change, a signal or the timeout; callers re-check their
/// condition.
pub(crate) fn futex_wait(word: &std::sync::atomic::AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned u32 (in shared memory, hence no PRIVATE flag);
    // the kernel only reads it and the timespec.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        )
    };
}

/// Wakes up to `n` processes waiting on `word` with [`futex_wait`].
pub(crate) fn futex_wake(word: &std::sync::atomic::AtomicU32, n: i32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE only uses its address.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
}

/// Start time of process `pid` (clock ticks after boot), or `None` if it is gone or
/// a zombie. With the pid it names one process for good, even after pid reuse.
pub(crate) fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Nanoseconds of `CLOCK_MONOTONIC`, the same clock in every process of the machine.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a live out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Kills this process with SIGKILL at once (fault injection for tests).
pub(crate) fn kill_self() -> ! {
    // SAFETY: kill with our own pid and a signal number.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    std::process::abort()
}

/// Stops this process with SIGSTOP until a SIGCONT (fault injection for tests).
pub(crate) fn stop_self() {
    // SAFETY: kill with our own pid and a signal number.
    unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A /proc/PID/stat line: `state`, group 4242, `threads` threads, start tick 777.
    fn stat_line(name: &str, state: &str, threads: u32) -> String {
        format!(
            "4242 ({name}) {state} 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 \
             {threads} 0 777 1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0"
        )
    }

    #[test]
    fn a_zombie_is_a_process_with_no_thread_left_running() {
        let parsed = parse_stat(&stat_line("sleep", "S", 1)).unwrap();
        assert_eq!(
            parsed,
            ProcStat {
                group: 4242,
                start: 777,
                zombie: false
            }
        );
        assert!(parse_stat(&stat_line("sleep", "Z", 1)).unwrap().zombie);
        // Its main thread exited, another runs on: still alive.
        assert!(!parse_stat(&stat_line("worker", "Z", 2)).unwrap().zombie);
        // Anything in the command name, parentheses and spaces included.
        let odd = parse_stat(&stat_line("a) Z 9 (b", "R", 1)).unwrap();
        assert_eq!((odd.group, odd.zombie), (4242, false));
        assert_eq!(parse_stat("4242 (cut short) S 1"), None);
    }
}
