//! How a process ended.

use std::fmt;

/// A signal number, printed by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Signal(i32);

impl Signal {
    /// SIGTERM.
    pub const TERM: Signal = Signal(libc::SIGTERM);
    /// SIGKILL.
    pub const KILL: Signal = Signal(libc::SIGKILL);

    /// Wraps a signal number.
    pub fn from_number(n: i32) -> Signal {
        Signal(n)
    }

    /// The signal number.
    pub fn number(self) -> i32 {
        self.0
    }

    /// The conventional name, such as `SIGSEGV`.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            libc::SIGHUP => "SIGHUP",
            libc::SIGINT => "SIGINT",
            libc::SIGQUIT => "SIGQUIT",
            libc::SIGILL => "SIGILL",
            libc::SIGTRAP => "SIGTRAP",
            libc::SIGABRT => "SIGABRT",
            libc::SIGBUS => "SIGBUS",
            libc::SIGFPE => "SIGFPE",
            libc::SIGKILL => "SIGKILL",
            libc::SIGUSR1 => "SIGUSR1",
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGUSR2 => "SIGUSR2",
            libc::SIGPIPE => "SIGPIPE",
            libc::SIGALRM => "SIGALRM",
            libc::SIGTERM => "SIGTERM",
            libc::SIGCHLD => "SIGCHLD",
            libc::SIGCONT => "SIGCONT",
            libc::SIGSTOP => "SIGSTOP",
            libc::SIGTSTP => "SIGTSTP",
            libc::SIGXCPU => "SIGXCPU",
            libc::SIGXFSZ => "SIGXFSZ",
            libc::SIGSYS => "SIGSYS",
            _ => return None,
        })
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "signal {}", self.0),
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExitStatus {
    /// It called `exit` (or returned from `main`) with this code.
    Code(i32),
    /// A signal ended it.
    Signal {
        /// Which signal.
        signal: Signal,
        /// Whether the kernel wrote a core dump.
        core_dumped: bool,
    },
    /// It ended, but its status could not be collected (someone else reaped it, or the
    /// server that forked it died first).
    Unknown,
}

impl ExitStatus {
    /// Decodes a raw `wait` status.
    pub(crate) fn from_raw(status: i32) -> ExitStatus {
        if libc::WIFEXITED(status) {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            ExitStatus::Signal {
                signal: Signal(libc::WTERMSIG(status)),
                core_dumped: libc::WCOREDUMP(status),
            }
        } else {
            ExitStatus::Unknown
        }
    }

    /// Whether it exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// Python's `exitcode`: the exit code, or the negated signal number; `None` when
    /// unknown.
    pub fn exitcode(self) -> Option<i32> {
        match self {
            ExitStatus::Code(c) => Some(c),
            ExitStatus::Signal { signal, .. } => Some(-signal.number()),
            ExitStatus::Unknown => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal {
                signal,
                core_dumped: true,
            } => write!(f, "{signal} (core dumped)"),
            ExitStatus::Signal { signal, .. } => write!(f, "{signal}"),
            ExitStatus::Unknown => f.write_str("unknown status"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_statuses_decode_like_python_exitcodes() {
        assert_eq!(ExitStatus::from_raw(3 << 8).exitcode(), Some(3));
        assert_eq!(ExitStatus::from_raw(0).exitcode(), Some(0));
        let segv = ExitStatus::from_raw(libc::SIGSEGV | 0x80);
        assert_eq!(segv.exitcode(), Some(-11));
        assert_eq!(segv.to_string(), "SIGSEGV (core dumped)");
        assert_eq!(ExitStatus::from_raw(libc::SIGTERM).to_string(), "SIGTERM");
    }
}
