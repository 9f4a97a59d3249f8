//! Reading a worker's messages: its reader thread, or a caller borrowing the link.
//!
//! Every worker has a reader thread that receives its messages and posts them to the
//! hub. A round trip through it costs two wake-ups on other CPUs (the worker's, then
//! the reader's), which on a virtual machine can cost several times a whole ping-pong
//! between two processes. So `apply`, whose caller waits for its one result at once,
//! reads the reply itself: when its task goes to a worker whose reader thread is
//! parked, the dispatcher lends it the link; the caller waits on the worker's socket,
//! posts what arrives exactly as the reader would, and gives the link back once its
//! result is in. The caller and the worker then alternate like two processes
//! ping-ponging over a pipe, often on one CPU.
//!
//! The reader thread parks only when the dispatcher expects nothing from the worker
//! (it is idle and healthy: no unit in flight, no initializer, not stopping or gone);
//! everything else (work sent, a stop, an exit seen by the reaper) wakes it first. The
//! turn to read is one atomic word: the dispatcher's "expected" bit and whose turn it
//! is (the reader thread, nobody, a borrowing caller, or nobody ever again).
//!
//! A borrowing caller waits in bounded steps and checks its result between them, so it
//! never hangs on a worker that stays silent (its result may come another way: a
//! timeout, a settled exit, the pool stopping).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use supervisor_worker::arena::Inbox;
use supervisor_worker::poll::{self, poll_until};
use supervisor_worker::protocol::{FromChild, LinkError, Receiver};

use super::job::LentLink;
use crate::error::Violation;

/// What a reader tells the pool: a message, or that the link ended.
pub(crate) enum News {
    Message(Result<FromChild, Violation>),
    Closed,
}

/// Where a reader posts its news; false once nobody listens (the pool is gone).
pub(crate) type Post = Box<dyn Fn(News) -> bool + Send + Sync>;

/// The reader thread reads (it may be blocked on the socket).
const READER: u32 = 0;
/// Nobody reads: the reader thread is parked.
const PARKED: u32 = 1;
/// A caller reads; the reader thread is parked.
const BORROWED: u32 = 2;
/// Nobody reads any more: the link ended or the pool forgot the worker.
const CLOSED: u32 = 3;
const TURN: u32 = 3;
/// The dispatcher expects a message (or the end of the stream) from the worker.
const EXPECTED: u32 = 4;

/// First and longest sleep of a borrowing caller before it looks at its result again.
const BORROW_STEP: Duration = Duration::from_millis(1);
const BORROW_STEP_MAX: Duration = Duration::from_millis(50);

/// One worker's incoming link and whose turn it is to read it.
pub(crate) struct LinkReader {
    post: Post,
    state: AtomicU32,
    link: Mutex<Incoming>,
    /// The socket under `link`, open as long as this reader lives (the receiver never
    /// leaves it), reachable while a reader holds `link`.
    fd: Option<std::os::fd::RawFd>,
    thread: OnceLock<Thread>,
}

struct Incoming {
    rx: Receiver,
    inbox: Inbox,
}

/// What one receive came to.
enum Read {
    Posted,
    TimedOut,
    /// The link is finished (closed, malformed, or the pool is gone).
    Ended,
}

impl LinkReader {
    /// Starts the reader thread of worker `worker`; `None` if no thread could start.
    pub(crate) fn start(worker: u64, rx: Receiver, post: Post) -> Option<Arc<LinkReader>> {
        let fd = rx.descriptor();
        let reader = Arc::new(LinkReader {
            post,
            fd,
            state: AtomicU32::new(READER | EXPECTED),
            link: Mutex::new(Incoming {
                rx,
                inbox: Inbox::new(),
            }),
            thread: OnceLock::new(),
        });
        let me = reader.clone();
        std::thread::Builder::new()
            .name(format!("supervisor-read-{worker}"))
            .stack_size(256 * 1024)
            .spawn(move || me.run())
            .ok()?;
        Some(reader)
    }

    /// Tells the reader whether the dispatcher expects anything from the worker; an
    /// expectation wakes a parked reader thread.
    pub(crate) fn expect(&self, expected: bool) {
        if !expected {
            self.state.fetch_and(!EXPECTED, Ordering::AcqRel);
        } else if self.update(turn::expect).is_some_and(turn::parked) {
            self.wake();
        }
    }

    /// Lends the link to a caller if nobody is reading it; the caller must then
    /// [`LinkReader::serve_until`].
    pub(crate) fn lend(&self) -> bool {
        self.update(turn::lend).is_some()
    }

    /// For the caller the link was lent to: reads and posts the worker's messages until
    /// `done`, then gives the link back.
    pub(crate) fn serve_until(&self, done: &dyn Fn() -> bool) {
        let mut step = BORROW_STEP;
        let mut link = self.lock();
        loop {
            // Poll before sleeping: when the worker answers on another CPU within the
            // window, neither side needs waking (on a virtual machine waking an idle CPU
            // can cost more than a whole round trip). A system call per poll: yield more
            // often than a waiter on a flag.
            let until = Instant::now() + poll::WINDOW;
            poll_until(until, 16, || done() || link.rx.frame_waiting());
            if done() {
                break;
            }
            match self.read(&mut link, Some(step)) {
                Read::Posted => step = BORROW_STEP,
                Read::TimedOut => step = (step * 2).min(BORROW_STEP_MAX),
                Read::Ended => {
                    drop(link);
                    self.close();
                    return;
                }
            }
        }
        drop(link);
        if self.update(turn::give_back).is_some_and(turn::expected) {
            self.wake();
        }
    }

    /// The worker is gone: whoever reads gets what it sent, then the end of the stream,
    /// even while another process (a grandchild that inherited the worker's end) keeps
    /// the channel open. False if the socket could not be shut down.
    pub(crate) fn end_input(&self) -> bool {
        self.fd
            .is_some_and(|fd| crate::os::shut_down_reading(fd).is_ok())
    }

    /// Nobody reads any more; the reader thread ends.
    pub(crate) fn close(&self) {
        self.state.store(CLOSED, Ordering::Release);
        self.wake();
    }

    fn run(&self) {
        let _ = self.thread.set(std::thread::current());
        loop {
            // Wait for the turn.
            loop {
                match self.state.load(Ordering::Acquire) & TURN {
                    READER => break,
                    CLOSED => return,
                    _ => std::thread::park(),
                }
            }
            let mut link = self.lock();
            loop {
                if let Read::Ended = self.read(&mut link, None) {
                    drop(link);
                    self.close();
                    return;
                }
                // Nothing more expected: park, unless told otherwise meanwhile.
                if self.update(turn::park).is_some() {
                    break;
                }
                if self.state.load(Ordering::Acquire) & TURN == CLOSED {
                    return;
                }
            }
        }
    }

    /// Receives one message (waiting at most `timeout`) and posts it.
    fn read(&self, link: &mut Incoming, timeout: Option<Duration>) -> Read {
        let received = match timeout {
            None => link.rx.recv(),
            Some(t) => link.rx.recv_timeout(t),
        };
        match received {
            Ok(frame) => {
                let msg = link
                    .inbox
                    .decode::<FromChild>(frame)
                    .map_err(|e| Violation::Unreadable(Arc::new(e)));
                let bad = msg.is_err();
                if !(self.post)(News::Message(msg)) || bad {
                    (self.post)(News::Closed);
                    return Read::Ended;
                }
                Read::Posted
            }
            Err(LinkError::Timeout) => Read::TimedOut,
            Err(LinkError::Closed) => {
                (self.post)(News::Closed);
                Read::Ended
            }
            Err(e) => {
                let msg = Err(match e {
                    LinkError::Malformed => Violation::Malformed,
                    e => Violation::Link(Arc::new(e)),
                });
                (self.post)(News::Message(msg));
                (self.post)(News::Closed);
                Read::Ended
            }
        }
    }

    /// Applies `f` to the state until it takes; the old state, or `None` if `f`
    /// declined.
    fn update(&self, f: impl FnMut(u32) -> Option<u32>) -> Option<u32> {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, f)
            .ok()
    }

    fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Incoming> {
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LentLink for LinkReader {
    fn serve_until(&self, done: &dyn Fn() -> bool) {
        LinkReader::serve_until(self, done);
    }
}

/// The transitions of the turn word, kept pure so they can be checked on their own.
/// Each returns the new state, or `None` where the transition does not apply.
mod turn {
    use super::{BORROWED, CLOSED, EXPECTED, PARKED, READER, TURN};

    /// Something is expected: a parked reader thread must read (and be woken).
    pub(super) fn expect(s: u32) -> Option<u32> {
        let new = match s & TURN {
            PARKED => READER | EXPECTED,
            _ => s | EXPECTED,
        };
        (new != s).then_some(new)
    }

    /// A caller takes the link, only while nobody reads it.
    pub(super) fn lend(s: u32) -> Option<u32> {
        (s & TURN == PARKED).then_some((s & EXPECTED) | BORROWED)
    }

    /// The caller is done: the reader thread takes over if more is expected.
    pub(super) fn give_back(s: u32) -> Option<u32> {
        match s & TURN {
            BORROWED if s & EXPECTED != 0 => Some(READER | EXPECTED),
            BORROWED => Some(PARKED),
            _ => None,
        }
    }

    /// The reader thread stops reading, only when nothing is expected.
    pub(super) fn park(s: u32) -> Option<u32> {
        (s == READER).then_some(PARKED)
    }

    pub(super) fn parked(s: u32) -> bool {
        s & TURN == PARKED
    }

    pub(super) fn expected(s: u32) -> bool {
        s & EXPECTED != 0 && s & TURN != CLOSED
    }
}

#[cfg(test)]
mod tests {
    use super::turn::*;
    use super::*;

    const ALL: [u32; 8] = [
        READER,
        PARKED,
        BORROWED,
        CLOSED,
        READER | EXPECTED,
        PARKED | EXPECTED,
        BORROWED | EXPECTED,
        CLOSED | EXPECTED,
    ];

    /// Nobody can be left waiting on a worker nobody reads, and two readers never
    /// read one link: every transition from every state keeps that.
    #[test]
    fn the_turn_word_never_strands_a_message_nor_shares_a_link() {
        for s in ALL {
            // Something expected is never left with nobody to read it.
            if let Some(n) = expect(s) {
                assert!(n & EXPECTED != 0);
                assert_ne!(n & TURN, PARKED, "{s} -> {n}");
            }
            // Only a link nobody reads is lent, and it keeps what is expected.
            match lend(s) {
                Some(n) => {
                    assert_eq!(s & TURN, PARKED);
                    assert_eq!(n, BORROWED | (s & EXPECTED));
                }
                None => assert_ne!(s & TURN, PARKED),
            }
            // Giving back hands over to the reader thread exactly when more is expected.
            match give_back(s) {
                Some(n) if s & EXPECTED != 0 => assert_eq!(n, READER | EXPECTED),
                Some(n) => assert_eq!(n, PARKED),
                None => assert_ne!(s & TURN, BORROWED),
            }
            // The reader thread parks only when nothing is expected.
            if park(s).is_some() {
                assert_eq!(s, READER);
            }
            // Closed stays closed.
            if s & TURN == CLOSED {
                for n in [expect(s), lend(s), give_back(s), park(s)]
                    .into_iter()
                    .flatten()
                {
                    assert_eq!(n & TURN, CLOSED);
                }
            }
        }
    }

    /// The sequences the pool goes through.
    #[test]
    fn a_lent_link_goes_back_to_whoever_must_read_next() {
        // The reader thread parks once the worker is idle, and the link is lent.
        let s = park(READER).unwrap();
        let s = lend(s).unwrap();
        assert_eq!(lend(s), None, "lent twice");
        // Work for the caller is sent: expected, but the caller reads (no wake).
        let s = expect(s).unwrap();
        assert_eq!(s, BORROWED | EXPECTED);
        // More work went to the worker while the caller read: the reader takes over.
        let back = give_back(s).unwrap();
        assert_eq!(back, READER | EXPECTED);
        assert!(expected(s));
        // Or the worker went idle first: the link is parked again.
        assert_eq!(give_back(BORROWED), Some(PARKED));
        assert!(!expected(BORROWED));
        // A parked reader thread woken by work.
        assert!(parked(PARKED));
        assert_eq!(expect(PARKED), Some(READER | EXPECTED));
    }
}
