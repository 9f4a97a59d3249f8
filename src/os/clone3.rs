//! `clone3` running a function on a stack of ours, as glibc's `clone` wrapper does
//! for `clone`: for the flag only `clone3` has, `CLONE_INTO_CGROUP`. A child born in
//! its cgroup costs about what any child costs; moving it there afterwards (writing
//! its pid to `cgroup.procs`) cost 60-300 us more per start here, and the kernel
//! makes every fork and exit of the system wait while it moves one.
//!
//! glibc exports no `clone3`, and a child sharing our memory (`CLONE_VM`) cannot
//! return into Rust code from the system call on a stack that is not the one the
//! code was running on: the child's first instructions are in the assembly below,
//! which calls the function and exits with what it returns.

use std::os::fd::RawFd;

/// `struct clone_args` up to and including `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Not in the libc crate's Linux constants as a 64-bit value.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The child's entry: it gets the argument and returns its exit status.
pub(super) type Entry = extern "C" fn(*mut libc::c_void) -> libc::c_int;

/// Starts `entry(arg)` in a new process that shares our memory (`CLONE_VM`, not
/// `CLONE_FILES` nor `CLONE_SIGHAND`), runs on `stack` (its lowest address; `size`
/// bytes, `stack + size` aligned to 16), is born in the cgroup whose directory
/// `cgroup` is open on, and signals SIGCHLD when it exits. Its pidfd (close-on-exec)
/// is written to `*pidfd`. Returns its pid, or the errno of the failed `clone3`.
///
/// # Safety
///
/// `entry` must never return into anything but this function's own exit path (it
/// may return: the child then exits with its value), must not unwind, and may only
/// use what stays valid while the child runs: `arg`, `stack` and `*pidfd` must
/// outlive the child's use of them, as for `clone(2)` with `CLONE_VM`.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn clone_vm_into_cgroup(
    entry: Entry,
    arg: *mut libc::c_void,
    stack: *mut u8,
    size: usize,
    cgroup: RawFd,
    pidfd: *mut libc::c_int,
) -> Result<i32, i32> {
    let args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_PIDFD) as u64 | CLONE_INTO_CGROUP,
        pidfd: pidfd as u64,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack as u64,
        stack_size: size as u64,
        cgroup: cgroup as u64,
        ..CloneArgs::default()
    };
    let ret: i64;
    // SAFETY: the system call reads `args` (alive on our stack until it returns) and
    // writes the pidfd to `*pidfd`. In the parent it returns the pid (or -errno) and
    // only rax, rcx and r11 change. In the child (rax 0) the kernel has set the stack
    // pointer to `stack + size` (16-byte aligned, so the call below leaves it as the
    // ABI wants at a function's entry) and every other register as in the parent, so
    // r12 and r13 still hold `entry` and `arg`; the child never reaches the parent's
    // code: it calls `entry` and exits (SYS_exit = 60) with its value.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "mov edi, eax",
            "mov eax, 60",
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") entry,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    if ret < 0 {
        Err(-ret as i32)
    } else {
        Ok(ret as i32)
    }
}

/// Elsewhere: not available (the caller starts the child without a cgroup).
///
/// # Safety
///
/// None needed: nothing is started.
#[cfg(not(target_arch = "x86_64"))]
pub(super) unsafe fn clone_vm_into_cgroup(
    _entry: Entry,
    _arg: *mut libc::c_void,
    _stack: *mut u8,
    _size: usize,
    _cgroup: RawFd,
    _pidfd: *mut libc::c_int,
) -> Result<i32, i32> {
    Err(libc::ENOSYS)
}

/// The probe child's whole life: exit at once (0).
extern "C" fn exit_at_once(_: *mut libc::c_void) -> libc::c_int {
    0
}

/// Whether a child born in the cgroup whose directory `cgroup` is open on lives: a
/// child that exits at once is started there and waited for. `Some(false)` if it was
/// SIGKILLed at birth, as this kernel (6.18) does to every child born with
/// `CLONE_INTO_CGROUP` in a cgroup whose count of `cgroup.kill`s differs from the one
/// of its parent's cgroup (ours killed once, say, and then a program started in it);
/// `None` where that cannot be told (`clone3` refused, the child reaped by someone
/// else).
pub(crate) fn born_alive_in(cgroup: std::os::fd::BorrowedFd<'_>) -> Option<bool> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const PROBE_STACK: usize = 16 << 10;
    let mut stack = vec![0u8; PROBE_STACK];
    let base = stack.as_mut_ptr();
    // SAFETY: within the allocation; the top aligned down to 16 bytes.
    let top = unsafe { base.add(PROBE_STACK) } as usize & !15;
    let mut pidfd: libc::c_int = -1;
    let old = super::exec::block_all_signals();
    // SAFETY: the child runs `exit_at_once` on `stack`, which lives until the child
    // has been waited for below; it touches nothing else of ours, with every signal
    // blocked (no handler of ours runs on its stack).
    let pid = unsafe {
        clone_vm_into_cgroup(
            exit_at_once,
            std::ptr::null_mut(),
            base,
            top - base as usize,
            cgroup.as_raw_fd(),
            &mut pidfd,
        )
    };
    super::exec::restore_signals(&old);
    let pid = pid.ok()?;
    // SAFETY: a fresh descriptor the kernel made for us and nobody else owns.
    drop(unsafe { OwnedFd::from_raw_fd(pidfd) });
    let mut status = 0;
    let reaped = loop {
        // SAFETY: waits for our own child `pid` into a live local.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break r == pid;
        }
    };
    // Only now is the child off its stack (a child reaped by someone else has exited too).
    drop(stack);
    reaped.then(|| !(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL))
}
