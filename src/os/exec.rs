//! Starting a program without copying this process: `clone(CLONE_VM | CLONE_VFORK)`,
//! a set-up function, then `execve`, as `posix_spawn` does, but with our set-up in
//! between. A `fork` copies the page tables and every mapping of the parent, which
//! grows with everything a pool holds (threads, arenas, progress pages): starting 256
//! spawned workers one after the other from one thread cost 67x the time of 8.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

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

/// What the child reads: pointers prepared by the parent (the child allocates
/// nothing), the set-up to run, and where it reports a failure.
struct Shared<'a> {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    stdin: i32,
    setup: &'a (dyn Fn() -> Result<(), i32> + Sync),
    /// The errno of the step that failed (set-up, dup2 or execve); 0: none.
    errno: i32,
}

/// The child's stack: the set-up and `execve` need a few KiB.
const STACK: usize = 64 << 10;

extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `Shared`, alive until we exec or exit: the parent
    // thread is suspended (CLONE_VFORK) until then. Only plain writes to it below.
    let shared = unsafe { &mut *(arg as *mut Shared) };
    if let Err(errno) = (shared.setup)() {
        shared.errno = if errno == 0 { libc::ESRCH } else { errno };
        // SAFETY: _exit never returns and touches no user-space state.
        unsafe { libc::_exit(127) };
    }
    // SAFETY: dup2 and execve take plain descriptors and the parent's prepared,
    // nul-terminated arrays; on success execve does not return.
    unsafe {
        if libc::dup2(shared.stdin, 0) < 0 {
            shared.errno = *libc::__errno_location();
            libc::_exit(127);
        }
        libc::execve(shared.program, shared.argv, shared.envp);
        shared.errno = *libc::__errno_location();
        libc::_exit(127)
    }
}

/// Blocks every signal of the calling thread, glibc's own two included (its
/// `pthread_sigmask` leaves those out), with the raw system call; the old mask.
fn block_all_signals() -> libc::sigset_t {
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
fn restore_signals(old: &libc::sigset_t) {
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

/// Runs `exec` in a new child that first runs `setup` (async-signal-safe, returning an
/// errno on failure, 0 read as ESRCH; it must leave every signal's action at its
/// default or ignored before it unblocks any, as `setup::apply` does). Returns the
/// child's pid and a pidfd for it (made by the same `clone`, `CLONE_PIDFD`: there is
/// no child without one) once it has executed the program; a failure of the set-up or
/// the exec is the error (with its errno), and that child is reaped here.
pub(crate) fn spawn_exec(
    exec: &Exec,
    setup: &(dyn Fn() -> Result<(), i32> + Sync),
) -> io::Result<(i32, OwnedFd)> {
    let mut argv: Vec<*const libc::c_char> = exec.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = exec.envp.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let mut shared = Shared {
        program: exec.program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        stdin: exec.stdin.as_raw_fd(),
        setup,
        errno: 0,
    };
    let mut stack = vec![0u8; STACK];
    // SAFETY: the stack grows down on every Linux target we build for; the top is
    // aligned down to 16 bytes.
    let top = unsafe { stack.as_mut_ptr().add(STACK) } as usize & !15;
    let mut pidfd: libc::c_int = -1;
    // Every signal blocked while the child shares our memory: a handler of ours must
    // not run on its stack. The set-up resets the actions and unblocks them.
    let old = block_all_signals();
    // SAFETY: `child` only reads `shared` and the prepared arrays (alive on this
    // frame, which is suspended until the child execs or exits), runs the set-up and
    // calls dup2, execve and _exit. CLONE_VM without CLONE_FILES or CLONE_SIGHAND: the
    // child has its own descriptor table and signal actions. With CLONE_PIDFD the
    // kernel writes the new pidfd (close-on-exec) to `pidfd` (the parent_tid slot).
    let pid = unsafe {
        libc::clone(
            child,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
            &mut shared as *mut Shared as *mut libc::c_void,
            &mut pidfd as *mut libc::c_int,
        )
    };
    let clone_error = io::Error::last_os_error();
    restore_signals(&old);
    drop(stack);
    if pid < 0 {
        return Err(clone_error);
    }
    // SAFETY: a fresh descriptor the kernel made for us and nobody else owns.
    let pidfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(pidfd) };
    // The child has executed the program or exited (CLONE_VFORK): `shared` is ours
    // again.
    // SAFETY: a plain read of our own local, which the child may have written.
    let errno = unsafe { std::ptr::read_volatile(&shared.errno) };
    if errno != 0 {
        // Our own child, which has exited.
        let _ = super::process::reap(pid);
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok((pid, pidfd))
}
