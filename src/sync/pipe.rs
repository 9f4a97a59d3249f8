//! `Pipe<S, R>`: one end of a duplex connection between two processes.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};
use supervisor_worker::codec;

use super::region::{self, notify, Holder, Kind, Region, SharedState, Waiter};
use super::ring::{Ring, RingState};
use crate::error::{Error, ErrorKind};

/// Buffer size of each direction of a pipe.
const PIPE_BYTES: usize = 1 << 20;

/// Both directions: ring `i` carries what end `i` sends.
#[repr(C)]
struct PipeState {
    rings: [RingState; 2],
}

// SAFETY: repr(C), made of `RingState`s, valid when zeroed.
unsafe impl SharedState for PipeState {}

/// The tag of a pipe whose end 0 is a `Pipe<S, R>` (and end 1 a `Pipe<R, S>`).
fn tag<S, R>() -> u64 {
    region::type_tag(std::any::type_name::<S>())
        .rotate_left(1)
        .wrapping_add(region::type_tag(std::any::type_name::<R>()))
}

/// The tag a pipe must have for end `role` to be a `Pipe<S, R>`: an end decodes only
/// as its own types, not as the other end's.
fn end_tag<S, R>(role: u32) -> u64 {
    match role {
        0 => tag::<S, R>(),
        _ => tag::<R, S>(),
    }
}

fn ring_of(region: &Region, index: u32) -> Ring<'_> {
    let (data, size) = region.data();
    let half = size / 2;
    let index = index as usize % 2;
    // SAFETY: the data area holds two rings of `half` bytes each.
    let data = unsafe { data.add(index * half) };
    Ring::new(
        &region.state::<PipeState>().rings[index],
        data,
        half,
        Kind::Pipe.name(),
    )
}

fn repair(region: &Region) {
    ring_of(region, 0).repair();
    ring_of(region, 1).repair();
}

/// Both ends of a new pipe: `let (a, b) = Pipe::<Ping, Pong>::new()?;`.
pub type PipeEnds<S, R> = (Pipe<S, R>, Pipe<R, S>);

/// One end of a duplex pipe: sends `S`, receives `R`. Python's `Pipe()` connection,
/// typed; the other end is a `Pipe<R, S>`.
///
/// Pass an end to a task as (part of) its argument, or move it to another thread: the
/// two ends work between threads of one process as between processes. An end may also
/// be shared by reference between threads (it is `Sync`, unlike a `Queue`): what a
/// wait waits for is the *other* end, which no user of this one can be. Messages sent
/// before the other end went away are still received; after that, waiting fails with
/// [`ErrorKind::PeerClosed`] (the other end was dropped everywhere) or
/// [`ErrorKind::PeerDied`] (the process holding it died), within about 100 ms.
/// `send` waits for room when the 1 MiB buffer of its direction is full, and, like every
/// call without a timeout, for the pipe's internal mutex (held for a copy; a process
/// stopped while holding it holds up untimed calls until it runs or dies). `recv_timeout`
/// returns by its deadline whatever the other end does (a process stopped holding the
/// pipe's internal mutex included), `try_recv` at once (within about 1 ms).
///
/// ```
/// use supervisor::{Pipe, Process};
///
/// /// Answers each question with its length until the asking end goes away.
/// fn answer(end: Pipe<usize, String>) -> u32 {
///     let mut answered = 0;
///     while let Ok(question) = end.recv() {
///         end.send(&question.len()).unwrap();
///         answered += 1;
///     }
///     answered
/// }
/// supervisor::task!(answer);
///
/// fn main() -> Result<(), supervisor::Error> {
///     supervisor::init();
///     let (ask, theirs) = Pipe::<String, usize>::new()?;
///     let mut child = Process::builder(answer, theirs).start()?;
///     ask.send(&"how long is this?".to_string())?;
///     assert_eq!(ask.recv()?, 17);
///     drop(ask); // the child's next `recv` fails with PeerClosed, and it returns
///     assert_eq!(child.join()?, 1);
///     Ok(())
/// }
/// ```
///
/// At most 128 processes hold one object at once (one holding both ends of a pipe
/// counts twice): decoding a handle in one more fails with
/// [`ErrorKind::TooManyHolders`](crate::ErrorKind::TooManyHolders), until a holder
/// drops its handles or dies.
///
/// A peer that dies before it opened its end (a child killed right after `start`) is
/// not known to the pipe: the end counts as on its way for 10 s after it was
/// serialised, and a wait then fails with
/// [`ErrorKind::PeerClosed`](crate::ErrorKind::PeerClosed), not `PeerDied`.
pub struct Pipe<S, R> {
    att: Holder,
    types: PhantomData<fn(S) -> R>,
}

region::serde_handle!(Pipe<S, R>, Kind::Pipe, role r => end_tag::<S, R>(r), PipeState, repair, |att| Pipe {
    att,
    types: PhantomData
});

impl<S, R> std::fmt::Debug for Pipe<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipe").field("end", &self.att.role).finish()
    }
}

impl<S: Serialize + DeserializeOwned, R: Serialize + DeserializeOwned> Pipe<S, R> {
    /// A new pipe: both ends, in this process. Hand one to another process.
    pub fn new() -> Result<PipeEnds<S, R>, Error> {
        let region = Region::create(
            Kind::Pipe,
            tag::<S, R>(),
            size_of::<PipeState>(),
            2 * PIPE_BYTES,
            |_| Ok(()),
            repair,
        )?;
        let a = Holder::attach(Arc::clone(&region), 0)?;
        let b = Holder::attach(region, 1)?;
        Ok((
            Pipe {
                att: a,
                types: PhantomData,
            },
            Pipe {
                att: b,
                types: PhantomData,
            },
        ))
    }

    fn peer(&self) -> u32 {
        1 - self.att.role
    }

    /// Sends a message. Fails with [`ErrorKind::PeerClosed`] if the other end is gone.
    pub fn send(&self, msg: &S) -> Result<(), Error> {
        let kind = Kind::Pipe.name();
        let region = &self.att.region;
        let ring = ring_of(region, self.att.role);
        let bytes = ring.encode(msg)?;
        ring.check_size(bytes.len())?;
        if !region.has_peer(self.peer(), self.att.role) {
            return Err(ErrorKind::PeerClosed { kind }.into());
        }
        let s = ring.state;
        let waiter = Waiter {
            seq: &s.not_full,
            waiters: &s.putters,
            peer_role: self.peer(),
            own_role: self.att.role,
        };
        region.block(waiter, None, || Ok(ring.try_push(&bytes)?.then_some(())))?;
        notify(&s.not_empty, &s.getters, false);
        Ok(())
    }

    /// Receives the next message, waiting while the other end is alive.
    pub fn recv(&self) -> Result<R, Error> {
        match self.recv_until(None)? {
            Some(msg) => Ok(msg),
            None => unreachable!("a recv without a deadline returns a message or an error"),
        }
    }

    /// Receives the next message, waiting at most `timeout`; `None` if none came.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<R>, Error> {
        self.recv_until(Instant::now().checked_add(timeout))
    }

    /// Receives a message if one is waiting.
    pub fn try_recv(&self) -> Result<Option<R>, Error> {
        self.recv_until(Some(Instant::now()))
    }

    /// Handles sleeping in `recv` on this end right now (for tests that must act while
    /// a receiver waits).
    #[doc(hidden)]
    pub fn waiting_receivers(&self) -> u32 {
        ring_of(&self.att.region, self.peer())
            .state
            .getters
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<Option<R>, Error> {
        let kind = Kind::Pipe.name();
        let region = &self.att.region;
        let ring = ring_of(region, self.peer());
        let s = ring.state;
        let waiter = Waiter {
            seq: &s.not_empty,
            waiters: &s.getters,
            peer_role: self.peer(),
            own_role: self.att.role,
        };
        let Some(bytes) = region.block(waiter, deadline, || ring.try_pop())? else {
            return Ok(None);
        };
        notify(&s.not_full, &s.putters, false);
        codec::decode(&bytes)
            .map(Some)
            .map_err(|source| ErrorKind::DecodeMessage { kind, source }.into())
    }
}
