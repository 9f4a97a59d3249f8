//! `Event`: a flag processes can wait for.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::region::{notify, Holder, Kind, Region, SharedState, Waiter};
use crate::error::Error;

#[repr(C)]
struct EventState {
    flag: AtomicU32,
    seq: AtomicU32,
    waiters: AtomicU32,
}

// SAFETY: repr(C), only atomics, valid when zeroed.
unsafe impl SharedState for EventState {}

fn repair(_: &Region) {}

/// Python's `multiprocessing.Event` across processes and threads: `set` wakes every
/// waiter. A wait that no other handle can end (all other holders dropped it or died)
/// fails with [`ErrorKind::PeerClosed`] / [`ErrorKind::PeerDied`] instead of hanging.
/// Every handle is a holder: a clone in another thread of this process counts as
/// another process does. `wait_timeout` returns by its deadline whatever the other
/// holders do (one stopped holding the event's internal mutex included).
///
/// A handle is `Send` but not `Sync`: every handle is a holder, and one handle shared by
/// reference between threads would be one, so a lone waiter in one thread would fail
/// with `PeerClosed` although another thread was about to `set` it. Give each thread a
/// `clone()` (clones share one mapping); sharing one by reference does not compile, and
/// the compiler's note names `CloneForEachThread`:
///
/// ```compile_fail,E0277
/// # fn main() -> Result<(), supervisor::Error> {
/// let obj = supervisor::Event::new()?;
/// std::thread::scope(|s| {
///     s.spawn(|| drop(&obj)); // `&Event` cannot be sent: `Event` is not `Sync`
/// });
/// # Ok(())
/// # }
/// ```
///
/// ```
/// # fn main() -> Result<(), supervisor::Error> {
/// let obj = supervisor::Event::new()?;
/// let theirs = obj.clone();
/// std::thread::spawn(move || drop(theirs)).join().unwrap();
/// # Ok(())
/// # }
/// ```
///
/// [`ErrorKind::PeerClosed`]: crate::ErrorKind::PeerClosed
/// [`ErrorKind::PeerDied`]: crate::ErrorKind::PeerDied
///
/// At most 128 processes hold one object at once (one holding both ends of a pipe
/// counts twice): decoding a handle in one more fails with
/// [`ErrorKind::TooManyHolders`](crate::ErrorKind::TooManyHolders), until a holder
/// drops its handles or dies.
#[derive(Clone)]
pub struct Event {
    att: Holder,
    _threads: super::CloneForEachThread,
}

super::region::serde_handle!(Event, Kind::Event, 0, EventState, repair, |att| Event {
    att,
    _threads: Default::default()
});

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Result<Event, Error> {
        let region = Region::create(
            Kind::Event,
            0,
            size_of::<EventState>(),
            0,
            |_| Ok(()),
            repair,
        )?;
        Ok(Event {
            att: Holder::attach(region, 0)?,
            _threads: Default::default(),
        })
    }

    fn state(&self) -> &EventState {
        self.att.region.state::<EventState>()
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) -> Result<(), Error> {
        let st = self.state();
        {
            let _guard = self.att.region.lock()?;
            st.flag.store(1, Ordering::Release);
            st.seq.fetch_add(1, Ordering::SeqCst);
        }
        notify(&st.seq, &st.waiters, true);
        Ok(())
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<(), Error> {
        let _guard = self.att.region.lock()?;
        self.state().flag.store(0, Ordering::Release);
        Ok(())
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.state().flag.load(Ordering::Acquire) != 0
    }

    /// Handles sleeping in `wait` right now, in any process (for tests that must act
    /// while a waiter waits).
    #[doc(hidden)]
    pub fn waiting(&self) -> u32 {
        self.state().waiters.load(Ordering::Relaxed)
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<(), Error> {
        self.wait_until(None).map(|_| ())
    }

    /// Waits at most `timeout`; whether the flag was set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, Error> {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<bool, Error> {
        let st = self.state();
        let waiter = Waiter {
            seq: &st.seq,
            waiters: &st.waiters,
            peer_role: 0,
            own_role: 0,
        };
        let r = self.att.region.block(waiter, deadline, || {
            Ok((st.flag.load(Ordering::Acquire) != 0).then_some(()))
        })?;
        Ok(r.is_some())
    }
}
