//! The raw socket under an ipc-channel link: waiting on it, peeking at a packet, sending one.

use std::io;

use super::setup::errno;

/// What [`wait_readable`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Nothing arrived in time.
    TimedOut,
    /// Something can be read; `hung_up` if the peer has also closed its end.
    Readable { hung_up: bool },
}

/// Waits until `fd` has something to read (or its peer hung up), for at most `timeout`
/// (`None`: no limit). Interrupted waits resume with the time that is left.
pub(crate) fn wait_readable(
    fd: std::os::fd::RawFd,
    timeout: Option<std::time::Duration>,
) -> io::Result<Readiness> {
    let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
    loop {
        let millis: libc::c_int = match (timeout, deadline) {
            (None, _) | (Some(_), None) => -1,
            (Some(_), Some(deadline)) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                // Round up, so a wait of less than a millisecond is not a busy loop.
                let millis = left.as_nanos().div_ceil(1_000_000);
                libc::c_int::try_from(millis).unwrap_or(libc::c_int::MAX)
            }
        };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one live pollfd, and we pass a count of 1.
        let r = unsafe { libc::poll(&mut pfd, 1, millis) };
        match r {
            0 => return Ok(Readiness::TimedOut),
            n if n > 0 => {
                if pfd.revents & libc::POLLNVAL != 0 {
                    return Err(io::Error::from_raw_os_error(libc::EBADF));
                }
                let hung_up = pfd.revents & (libc::POLLHUP | libc::POLLRDHUP) != 0;
                return Ok(Readiness::Readable { hung_up });
            }
            _ => {
                let e = errno();
                if e != libc::EINTR {
                    return Err(io::Error::from_raw_os_error(e));
                }
            }
        }
    }
}

/// Copies the start of the next packet waiting on the `SOCK_SEQPACKET` socket `fd` into
/// `buf`, without taking the packet off the socket; with `wait`, blocks until there is
/// one. Returns the packet's whole length (which may exceed `buf`), `Some(0)` at end of
/// stream (or for an empty packet), `None` if no packet is waiting (never with `wait`).
/// Descriptors attached to the packet stay with it: without a control buffer none are
/// installed in this process.
pub(crate) fn peek_packet(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
    wait: bool,
) -> io::Result<Option<usize>> {
    let flags = libc::MSG_PEEK | libc::MSG_TRUNC | if wait { 0 } else { libc::MSG_DONTWAIT };
    loop {
        // SAFETY: `buf` is live and writable for `buf.len()` bytes; MSG_PEEK leaves the
        // packet queued; MSG_TRUNC makes the result the packet's real length (Linux 3.4+
        // for SOCK_SEQPACKET) while writing at most `buf.len()` bytes.
        let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
        if r >= 0 {
            return Ok(Some(r as usize));
        }
        match errno() {
            libc::EINTR => continue,
            libc::EAGAIN => return Ok(None),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// Whether `fd` is an open `SOCK_SEQPACKET` socket (what ipc-channel's links are).
pub(crate) fn is_seqpacket_socket(fd: std::os::fd::RawFd) -> bool {
    // SAFETY: stat is plain data, fully written by a successful fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return false;
    }
    let mut kind: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_TYPE writes one c_int into `kind`; `len` says how much room it has.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0 && kind == libc::SOCK_SEQPACKET
}

/// Sends `bytes` as one packet on the socket `fd`, with the descriptor `attach` attached
/// (SCM_RIGHTS) if given; the bytes sent.
pub(crate) fn send_packet(
    fd: std::os::fd::RawFd,
    bytes: &[u8],
    attach: Option<std::os::fd::RawFd>,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(attach) = attach {
        let size = std::mem::size_of::<std::os::fd::RawFd>() as u32;
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE/CMSG_LEN only compute sizes; one descriptor needs far
        // less than the 64 bytes of `control`, so CMSG_FIRSTHDR points into it and
        // CMSG_DATA has room for the descriptor.
        unsafe {
            msg.msg_controllen = libc::CMSG_SPACE(size) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size) as _;
            std::ptr::copy_nonoverlapping(&attach, libc::CMSG_DATA(cmsg).cast(), 1);
        }
    }
    // SAFETY: `msg` and everything it points to (iov, bytes, control) outlive the call.
    let r = unsafe { libc::sendmsg(fd, &msg, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}
