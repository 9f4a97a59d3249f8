//! Starting a program without copying this process: `clone(CLONE_VM)`, a set-up
//! function, then `execve`, as `posix_spawn` does, but with our set-up in between. A
//! `fork` copies the page tables and every mapping of the parent, which grows with
//! everything a pool holds (threads, arenas, progress pages): starting 256 spawned
//! workers one after the other from one thread cost 67x the time of 8.
//!
//! Without `CLONE_VFORK`: the thread that clones (the reaper, which must, for the
//! parent-death signal) goes on at once instead of being suspended until the child
//! executes. A child stopped (SIGSTOP) between its `clone` and its `exec` used to
//! freeze that thread for as long as it stayed stopped: no reaping, no other start.
//! The child tells how its set-up and exec went on a close-on-exec pipe (its errno on
//! failure, end of file once executed), which whoever asked for the child reads with
//! a deadline ([`PendingExec::wait`]). Until then the child runs on memory of ours
//! (its stack, the prepared arrays), kept by the [`PendingExec`] until the child has
//! executed or exited; a `PendingExec` dropped before that leaks it rather than free
//! memory the child may still use.
//!
//! The child shares our memory, so the few libc calls of its set-up that fail on
//! purpose write the cloning thread's `errno` (glibc keeps it per thread, and the
//! child runs on that thread's thread pointer). The reaper reads `errno` only right
//! after a failed call of its own; a clash needs one of those within the child's few
//! hundred microseconds before its exec.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

/// What to execute: the program, its argv (with `argv[0]`), its whole environment,
/// and `/dev/null` as its stdin (stdout and stderr are ours).
pub(crate) struct Exec {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    stdin: OwnedFd,
}

impl Exec {
    /// `program` with `argv` (`argv[0]` first) and the environment `env`.
    pub(crate) fn new(
        program: &OsStr,
        argv: &[OsString],
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> io::Result<Exec> {
        let c = |s: &[u8]| {
            CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "nul byte"))
        };
        let envp = env
            .into_iter()
            .map(|(k, v)| c(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
            .collect::<io::Result<_>>()?;
        let stdin = std::fs::File::open("/dev/null")?.into();
        Ok(Exec {
            program: c(program.as_bytes())?,
            argv: argv
                .iter()
                .map(|a| c(a.as_bytes()))
                .collect::<io::Result<_>>()?,
            envp,
            stdin,
        })
    }
}

/// The set-up a child runs before it executes (async-signal-safe; an errno).
pub(crate) type SetupFn = Box<dyn Fn() -> Result<(), i32> + Send + Sync>;

/// What the child reads: pointers prepared by the parent (the child allocates
/// nothing), the set-up to run, and where it reports a failure. It writes none of it.
struct Shared {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    stdin: i32,
    setup: *const (dyn Fn() -> Result<(), i32> + Send + Sync),
    /// The write end of the report pipe (close-on-exec): an errno, or end of file.
    report: i32,
}

/// Everything of ours the child uses until it executes or exits. Boxed: its address
/// is what the child was given.
struct ChildMemory {
    shared: Shared,
    _exec: Exec,
    _setup: SetupFn,
    _argv: Vec<*const libc::c_char>,
    _envp: Vec<*const libc::c_char>,
    _stack: Vec<u8>,
}

// SAFETY: the raw pointers point into the `Exec`, the set-up and the arrays owned by
// the same value, which only the child reads; moving the box to another thread moves
// none of them.
unsafe impl Send for ChildMemory {}

/// The child's stack: the set-up and `execve` need a few KiB.
const STACK: usize = 64 << 10;

extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `Shared`, alive until we exec or exit: the
    // `PendingExec` keeps it until the report pipe says so. Read only.
    let shared = unsafe { &*(arg as *const Shared) };
    let fail = |errno: i32| -> ! {
        let errno: i32 = if errno == 0 { libc::ESRCH } else { errno };
        // SAFETY: write of 4 bytes from a local to our pipe (atomic: under PIPE_BUF);
        // _exit never returns and touches no user-space state.
        unsafe {
            libc::write(shared.report, (&errno as *const i32).cast(), 4);
            libc::_exit(127)
        }
    };
    // SAFETY: the set-up is owned by the parent's `ChildMemory`, alive as `shared`.
    if let Err(errno) = unsafe { (*shared.setup)() } {
        fail(errno);
    }
    // SAFETY: dup2 and execve take plain descriptors and the parent's prepared,
    // nul-terminated arrays; on success execve does not return.
    unsafe {
        if libc::dup2(shared.stdin, 0) < 0 {
            fail(*libc::__errno_location());
        }
        libc::execve(shared.program, shared.argv, shared.envp);
        fail(*libc::__errno_location())
    }
}

/// Blocks every signal of the calling thread, glibc's own two included (its
/// `pthread_sigmask` leaves those out), with the raw system call; the old mask.
pub(super) fn block_all_signals() -> libc::sigset_t {
    // SAFETY: plain sigset operations on local values; rt_sigprocmask with the kernel's
    // sigset size (8 bytes) reads `all` and writes `old`.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const libc::sigset_t,
            &mut old as *mut libc::sigset_t,
            8usize,
        );
        old
    }
}

/// Restores a mask saved by [`block_all_signals`].
pub(super) fn restore_signals(old: &libc::sigset_t) {
    // SAFETY: as above, writing back what was there.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            old as *const libc::sigset_t,
            std::ptr::null_mut::<libc::sigset_t>(),
            8usize,
        );
    }
}

/// A close-on-exec pipe: (read end, write end).
fn report_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two descriptors into the live array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two fresh descriptors nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A child that is running, maybe not yet executing its program.
pub(crate) struct Started {
    pub(crate) pid: i32,
    /// Made by the same `clone` (`CLONE_PIDFD`): there is no child without one.
    pub(crate) pidfd: OwnedFd,
    pub(crate) exec: PendingExec,
    /// Whether it was born in the cgroup asked for.
    pub(crate) in_cgroup: bool,
    /// Why `clone3` could not put it there, if it was asked and could not (the errno):
    /// it was then started in ours.
    pub(crate) cgroup_refused: Option<i32>,
}

/// How a child's set-up and exec went, as far as its report pipe told by a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExecOutcome {
    /// It executed the program (or died before it could say otherwise).
    Executed,
    /// Its set-up, `dup2` or `execve` failed with this errno; it exits with 127.
    Failed(i32),
    /// Nothing yet (stopped, or very slow): it may still run on our memory.
    TimedOut,
}

/// The report pipe of a child that has not yet executed, and the memory it runs on.
pub(crate) struct PendingExec {
    report: OwnedFd,
    memory: Option<Box<ChildMemory>>,
}

impl PendingExec {
    /// Waits, up to `deadline`, for the child (whose pidfd is `pidfd`) to execute or
    /// fail. On `Failed` it also waits for that child's exit (it writes its errno just
    /// before `_exit`), up to the same deadline. Once the child has executed or exited
    /// its memory is freed.
    pub(crate) fn wait(&mut self, pidfd: BorrowedFd<'_>, deadline: Instant) -> ExecOutcome {
        let left = || Some(deadline.saturating_duration_since(Instant::now()));
        match super::poll_readable(&[&self.report], left()) {
            Ok(ready) if ready[0] => {}
            _ => return ExecOutcome::TimedOut,
        }
        let mut errno: i32 = 0;
        let n = loop {
            // SAFETY: read of at most 4 bytes into a live local.
            let n =
                unsafe { libc::read(self.report.as_raw_fd(), (&mut errno as *mut i32).cast(), 4) };
            if n >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break n;
            }
        };
        if n == 0 {
            // End of file: the exec closed it (after the kernel switched the child to
            // its new memory), or the child died: either way it is off our memory.
            self.memory = None;
            return ExecOutcome::Executed;
        }
        if n != 4 {
            return ExecOutcome::TimedOut;
        }
        if matches!(super::poll_readable(&[&pidfd], left()), Ok(ready) if ready[0]) {
            self.memory = None;
        }
        ExecOutcome::Failed(errno)
    }

    /// The child has exited (its slot was reaped): its memory is no longer in use.
    pub(crate) fn child_gone(mut self) {
        self.memory = None;
    }
}

impl Drop for PendingExec {
    fn drop(&mut self) {
        // Not known to be off our memory: leaked, never freed under a running child.
        if let Some(memory) = self.memory.take() {
            Box::leak(memory);
        }
    }
}

/// Runs `exec` in a new child that first runs `setup` (async-signal-safe, returning an
/// errno on failure, 0 read as ESRCH; it must leave every signal's action at its
/// default or ignored before it unblocks any, as `setup::apply` does). Returns as soon
/// as the child exists, with its pid, a pidfd for it and what tells how its exec went
/// ([`PendingExec::wait`]); only a failed `clone` (or pipe) is an error here. With
/// `cgroup` (a cgroup directory's descriptor) the child is born in that cgroup, or,
/// where `clone3` cannot do that, started as without it and told so.
pub(crate) fn spawn_exec(
    exec: Exec,
    setup: SetupFn,
    cgroup: Option<BorrowedFd<'_>>,
) -> io::Result<Started> {
    let (report, report_w) = report_pipe()?;
    let mut argv: Vec<*const libc::c_char> = exec.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = exec.envp.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let mut stack = vec![0u8; STACK];
    let base = stack.as_mut_ptr();
    // SAFETY: the stack grows down on every Linux target we build for; the top is
    // aligned down to 16 bytes.
    let top = unsafe { base.add(STACK) } as usize & !15;
    let mut memory = Box::new(ChildMemory {
        shared: Shared {
            program: exec.program.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            stdin: exec.stdin.as_raw_fd(),
            setup: &*setup as *const (dyn Fn() -> Result<(), i32> + Send + Sync),
            report: report_w.as_raw_fd(),
        },
        _exec: exec,
        _setup: setup,
        _argv: argv,
        _envp: envp,
        _stack: stack,
    });
    let mut pidfd: libc::c_int = -1;
    let arg = &mut memory.shared as *mut Shared as *mut libc::c_void;
    // Every signal blocked while the child starts: it inherits the mask, so no handler
    // of ours runs on its stack before its set-up resets the actions and unblocks them.
    let old = block_all_signals();
    let mut cgroup_refused = None;
    let mut pid = -1;
    if let Some(cgroup) = cgroup {
        // SAFETY: as for `clone` below (the same child, memory and flags), with the
        // stack given as its base and its size up to the aligned top.
        match unsafe {
            super::clone3::clone_vm_into_cgroup(
                child,
                arg,
                base,
                top - base as usize,
                cgroup.as_raw_fd(),
                &mut pidfd,
            )
        } {
            Ok(child_pid) => pid = child_pid,
            // Out of processes or memory: `clone` would fail alike.
            Err(errno @ (libc::EAGAIN | libc::ENOMEM)) => {
                restore_signals(&old);
                return Err(io::Error::from_raw_os_error(errno));
            }
            // Not here (an old kernel, a filter that refuses `clone3`), or not in that
            // cgroup (removed, or of a kind that takes no processes).
            Err(errno) => cgroup_refused = Some(errno),
        }
    }
    let in_cgroup = pid > 0;
    if !in_cgroup {
        // SAFETY: `child` only reads `memory.shared` and what it points to (owned by
        // `memory`, kept until the child has executed or exited: `PendingExec`), runs
        // the set-up and calls write, dup2, execve and _exit. CLONE_VM without
        // CLONE_FILES or CLONE_SIGHAND: the child has its own descriptor table and
        // signal actions. With CLONE_PIDFD the kernel writes the new pidfd
        // (close-on-exec) to `pidfd` (the parent_tid slot).
        pid = unsafe {
            libc::clone(
                child,
                top as *mut libc::c_void,
                libc::CLONE_VM | libc::CLONE_PIDFD | libc::SIGCHLD,
                arg,
                &mut pidfd as *mut libc::c_int,
            )
        };
    }
    let clone_error = io::Error::last_os_error();
    restore_signals(&old);
    // Ours closed: the child's copy (closed by its exec or exit) is the last one.
    drop(report_w);
    if pid < 0 {
        return Err(clone_error);
    }
    // The new child waits for a CPU; on a busy machine the vfork parent's suspension
    // used to hand it ours at once. Offered once (this thread has nothing urgent).
    // SAFETY: sched_yield takes nothing and cannot fail on Linux.
    unsafe { libc::sched_yield() };
    // SAFETY: a fresh descriptor the kernel made for us and nobody else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Started {
        pid,
        pidfd,
        exec: PendingExec {
            report,
            memory: Some(memory),
        },
        in_cgroup,
        cgroup_refused,
    })
}
