//! The listening socket of a one-shot server, found by its address, and what a
//! connected socket's next packet carries.
//!
//! ipc-channel's `OsIpcOneShotServer` keeps its listening descriptor private. A start
//! that must wait for a connection together with other events (its child's exit, a
//! deadline) finds it: a descriptor counts only once confirmed to be a listening
//! (`SO_ACCEPTCONN`) `SOCK_SEQPACKET` unix socket whose bound address (`getsockname`)
//! is the server's path. It stays the server's: only `poll` looks at it.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The descriptor of the listening unix socket bound to `path`, tried first at `hint`
/// (the number a socket made just before got), then among the open descriptors.
/// `None` if no descriptor is confirmed to be it.
pub(crate) fn listening_socket_at(path: &Path, hint: Option<RawFd>) -> Option<RawFd> {
    let path = path.as_os_str().as_bytes();
    if let Some(fd) = hint.filter(|&fd| is_listener_at(fd, path)) {
        return Some(fd);
    }
    open_descriptors().find(|&fd| is_listener_at(fd, path))
}

/// Whether `fd` is a listening `SOCK_SEQPACKET` unix socket bound to `path`.
fn is_listener_at(fd: RawFd, path: &[u8]) -> bool {
    is_bound_to(fd, path)
        && socket_option(fd, libc::SO_ACCEPTCONN) == Some(1)
        && socket_option(fd, libc::SO_TYPE) == Some(libc::SOCK_SEQPACKET)
}

/// Whether `fd` is a unix socket whose address is `path` (a connection accepted on a
/// listener bound to `path` has that address too).
fn is_bound_to(fd: RawFd, path: &[u8]) -> bool {
    // SAFETY: sockaddr_un is plain data; zeroed is a valid empty address.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into the live `addr` and updates
    // `len`; on a closed descriptor or one that is no socket it fails and writes nothing.
    let r =
        unsafe { libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_un).cast(), &mut len) };
    if r != 0 || addr.sun_family != libc::AF_UNIX as libc::sa_family_t {
        return false;
    }
    let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
    let named = (len as usize)
        .saturating_sub(offset)
        .min(addr.sun_path.len());
    let bound: Vec<u8> = addr.sun_path[..named].iter().map(|&c| c as u8).collect();
    let bound = match bound.iter().position(|&b| b == 0) {
        Some(end) => &bound[..end],
        None => &bound[..],
    };
    bound == path
}

/// Whether `fd` is a connection accepted on the one-shot server bound to `path`.
fn is_accepted_at(fd: RawFd, path: &[u8]) -> bool {
    is_bound_to(fd, path)
        && socket_option(fd, libc::SO_ACCEPTCONN) == Some(0)
        && socket_option(fd, libc::SO_TYPE) == Some(libc::SOCK_SEQPACKET)
}

/// The connections accepted on the one-shot server bound to `path` that this process
/// holds (ipc-channel's `accept` keeps its descriptor private while it waits for the
/// first message), each with the pid of the process that connected (`SO_PEERCRED`;
/// `None` where the system does not say, 0 for one outside our pid namespace).
pub(crate) fn accepted_at(path: &Path) -> Vec<(RawFd, Option<u32>)> {
    let path = path.as_os_str().as_bytes();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
        .filter(|&fd| is_accepted_at(fd, path))
        .map(|fd| (fd, peer_pid(fd)))
        .collect()
}

/// Ends the reading side of `fd` if it is still a connection accepted on the server
/// bound to `path` (checked again: the descriptor is another thread's): its blocked
/// receive wakes with the end of the stream.
pub(crate) fn shut_down_accepted(fd: RawFd, path: &Path) {
    if is_accepted_at(fd, path.as_os_str().as_bytes()) {
        let _ = super::shut_down_reading(fd);
    }
}

/// The pid of the process at the other end of the unix socket `fd`, as it was when it
/// connected (`SO_PEERCRED`).
pub(crate) fn peer_pid(fd: RawFd) -> Option<u32> {
    // SAFETY: ucred is plain data; zeroed is valid.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the live `cred`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(cred.pid as u32)
}

fn socket_option(fd: RawFd, option: libc::c_int) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the live `value`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(value)
}

/// Whether the descriptors attached to the next packet waiting on the socket `fd` can
/// be received now: the packet is peeked (it stays queued) with room for a few, the
/// copies the kernel installs are closed again. `EMFILE` if the kernel had to drop one
/// for want of a free descriptor (`MSG_CTRUNC`): received for real, it would be lost,
/// and ipc-channel then indexes an empty list of channels and panics. `Ok` also when
/// nothing is waiting or the peek fails (the receive that follows reports that).
pub(crate) fn attached_descriptors_receivable(fd: RawFd) -> io::Result<()> {
    const ROOM: usize = 8;
    #[repr(C)]
    union Control {
        header: libc::cmsghdr,
        bytes: [u8; 64],
    }
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE((ROOM * std::mem::size_of::<RawFd>()) as u32) };
    debug_assert!(space as usize <= std::mem::size_of::<Control>());
    let mut control = Control { bytes: [0; 64] };
    let mut byte = 0u8;
    let mut iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    // SAFETY: msghdr is plain data; zeroed is valid (no name, no buffers yet).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut control as *mut Control).cast();
    msg.msg_controllen = space as _;
    // SAFETY: `msg` points at live buffers of the sizes it states; with MSG_PEEK the
    // packet stays queued; the descriptors the kernel installs are closed below.
    let n = unsafe {
        libc::recvmsg(
            fd,
            &mut msg,
            libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
        )
    };
    if n < 0 {
        return Ok(());
    }
    let mut installed = 0;
    // SAFETY: the CMSG_* walk stays within `msg_controllen`, which the kernel set to
    // what it wrote into `control`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    // The copies the peek made are ours alone; closed once.
                    libc::close(data.add(i).read_unaligned());
                    installed += 1;
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 && installed < ROOM {
        return Err(io::Error::from_raw_os_error(libc::EMFILE));
    }
    Ok(())
}

/// Closes the socket a failed `OsIpcOneShotServer::new` left open. ipc-channel 0.23.1
/// makes that socket first and returns its `bind` or `listen` error (or its
/// directory's) without closing it: one descriptor lost per such failed start.
///
/// Every open descriptor is looked at (a failure path: its cost does not matter), and
/// the orphan is closed only if there is exactly one. Two would mean another thread is
/// making a socket too (between its `socket()` and its `bind` or `connect`), and which
/// is ours cannot be told. The number looked for before the call is not trusted: a
/// descriptor another thread opened or closed in between moves the socket (CI, session
/// 17), and that thread's new socket may be at the number looked for.
///
/// Nothing is closed after `failed` with `EBADF` (its `socket()` failed, which it does
/// not check: `bind(-1)` says so), `EMFILE` or `ENFILE`: then there is no socket of
/// ours, and the one orphan found would be another thread's. Whether one was closed.
pub(crate) fn close_orphan_server_socket(failed: Option<&io::Error>) -> bool {
    if failed
        .and_then(io::Error::raw_os_error)
        .is_some_and(|e| matches!(e, libc::EBADF | libc::EMFILE | libc::ENFILE))
    {
        return false;
    }
    let mut orphans = open_descriptors().filter(|&fd| is_orphan_server_socket(fd));
    let (Some(fd), None) = (orphans.next(), orphans.next()) else {
        return false;
    };
    // SAFETY: an orphan nobody owns (ipc-channel dropped its number on its error path).
    unsafe { libc::close(fd) };
    true
}

/// The numbers of this process's open descriptors (out of descriptors to list them
/// with: every number below the limit).
fn open_descriptors() -> Box<dyn Iterator<Item = RawFd>> {
    match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => {
            let fds: Vec<RawFd> = dir
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
                .collect();
            Box::new(fds.into_iter())
        }
        Err(_) => {
            let limit = super::descriptor_limit().unwrap_or(1024).min(1 << 16) as RawFd;
            Box::new(0..limit)
        }
    }
}

/// Whether `fd` is an `AF_UNIX` `SOCK_SEQPACKET` socket that is not bound to a name,
/// not listening and not connected (a socket pair's end has a peer; a server's is
/// bound): what a failed `OsIpcOneShotServer::new` leaves.
fn is_orphan_server_socket(fd: RawFd) -> bool {
    if socket_option(fd, libc::SO_TYPE) != Some(libc::SOCK_SEQPACKET)
        || socket_option(fd, libc::SO_ACCEPTCONN) != Some(0)
    {
        return false;
    }
    // SAFETY: sockaddr_un is plain data; zeroed is a valid empty address.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into the live `addr`.
    let r =
        unsafe { libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_un).cast(), &mut len) };
    let unbound = r == 0
        && addr.sun_family == libc::AF_UNIX as libc::sa_family_t
        && len as usize <= std::mem::size_of::<libc::sa_family_t>();
    if !unbound {
        return false;
    }
    // SAFETY: as above.
    let mut peer: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: as above, for the peer's address.
    let r =
        unsafe { libc::getpeername(fd, (&mut peer as *mut libc::sockaddr_un).cast(), &mut len) };
    r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOTCONN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// An unbound, unconnected `SOCK_SEQPACKET` unix socket: what another thread
    /// holds between its `socket()` and its `bind` or `connect`.
    fn fresh_socket() -> OwnedFd {
        // SAFETY: socket takes plain integers; the descriptor is owned at once.
        let fd =
            unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "{}", io::Error::last_os_error());
        // SAFETY: a fresh descriptor nobody else owns.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    fn is_open(fd: &OwnedFd) -> bool {
        socket_option(fd.as_raw_fd(), libc::SO_TYPE) == Some(libc::SOCK_SEQPACKET)
    }

    /// Before (review of session 18): after a failed `socket()` (seen as `EBADF` at
    /// `bind`) a lone unbound socket, another thread's, was closed.
    #[test]
    fn no_socket_is_closed_after_the_servers_own_socket_failed() {
        let theirs = fresh_socket();
        for errno in [libc::EBADF, libc::EMFILE, libc::ENFILE] {
            let failed = io::Error::from_raw_os_error(errno);
            assert!(!close_orphan_server_socket(Some(&failed)));
            assert!(is_open(&theirs), "closed after errno {errno}");
        }
    }

    /// Two candidates: which is ours cannot be told, so neither is closed.
    #[test]
    fn of_two_unbound_sockets_neither_is_closed() {
        let (a, b) = (fresh_socket(), fresh_socket());
        let failed = io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(!close_orphan_server_socket(Some(&failed)));
        assert!(is_open(&a) && is_open(&b));
    }
}
