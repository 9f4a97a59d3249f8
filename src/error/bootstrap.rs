//! Why a started child did not complete its bootstrap: the reason carried by
//! [`ErrorKind::Bootstrap`](super::ErrorKind::Bootstrap).

use std::time::Duration;

use crate::exit::ExitStatus;

/// What went wrong between starting a child and sending it its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapFailure {
    /// A spawned child ended before it connected, with the exit code of a program that
    /// ran its own code first (`main` before `supervisor::init()`).
    #[error(
        "it exited ({status}) before connecting (a spawned worker runs main up to \
         supervisor::init(), which must come first)"
    )]
    ExitedBeforeInit {
        /// How it ended.
        status: ExitStatus,
    },
    /// A spawned child ended before it connected.
    #[error("it exited ({status}) before connecting")]
    ExitedBeforeConnecting {
        /// How it ended.
        status: ExitStatus,
    },
    /// A spawned child did not connect in time (it was killed).
    #[error("it did not connect within {within:?}")]
    NoConnection {
        /// The time it had.
        within: Duration,
    },
    /// A spawned child connected and died before its first message.
    #[error("it died ({status}) after connecting, before it said hello")]
    DiedBeforeHello {
        /// How it ended.
        status: ExitStatus,
    },
    /// A spawned child connected and closed its connection before its first message,
    /// while it still ran (it was killed).
    #[error("it closed its connection before it said hello")]
    ClosedBeforeHello,
    /// A spawned child connected and said nothing in time (it was killed).
    #[error("it connected and did not say hello within {within:?}")]
    NoHello {
        /// The time it had.
        within: Duration,
    },
    /// Another process than the child connected to the start's socket (the one-shot
    /// server accepts one connection: the child's could not be taken). A program of the
    /// same user can do that; the start is failed at once, or at its deadline if that
    /// process says nothing.
    #[error("another process (pid {pid}) connected to the start's socket")]
    Stranger {
        /// The pid of the process that connected (0: outside our pid namespace).
        pid: u32,
    },
    /// A spawned child said hello and died before its hand-off.
    #[error("it died ({status}) after its hello, before its handoff")]
    DiedBeforeHandoff {
        /// How it ended.
        status: ExitStatus,
    },
    /// A spawned child handed its channel over and died before it took its
    /// configuration.
    #[error("it died ({status}) after its handoff, before it took its configuration")]
    DiedAfterHandoff {
        /// How it ended.
        status: ExitStatus,
    },
    /// Its connection could not be accepted or read.
    #[error("its connection failed ({0})")]
    Connection(std::io::Error),
    /// Its first message could not be read as one.
    #[error("its first message was not a hello")]
    UnreadableHello,
    /// Its first message was not a hello with this start's secret.
    #[error("rejected its hello: {0}")]
    RejectedHello(supervisor_worker::protocol::HelloError),
    /// It speaks another protocol version.
    #[error("it speaks protocol {theirs} and we speak {ours}")]
    Protocol {
        /// The child's version.
        theirs: u32,
        /// Ours.
        ours: u32,
    },
    /// It is a different build of this program.
    #[error("it is a different build of this program")]
    OtherBuild,
    /// The hello named another process.
    #[error("the hello came from pid {0}")]
    WrongPid(u32),
    /// No hand-off of its channel in time.
    #[error("no handoff in time")]
    NoHandoff,
    /// The channel closed before the hand-off.
    #[error("channel closed before the handoff")]
    ClosedBeforeHandoff,
    /// Something else than a hand-off came.
    #[error("expected a handoff, got a {got}")]
    NotHandoff {
        /// What came.
        got: &'static str,
    },
    /// The hand-off carried no channel to reach the child.
    #[error("the handoff carried no sender")]
    NoSender,
    /// The link failed during the hand-off or the configuration (the error chain).
    #[error("{0}")]
    Link(String),
}
