//! `Event`: a flag processes can wait for.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::region::{notify, Attachment, Kind, Region, SharedState, Waiter};
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

/// Python's `multiprocessing.Event` across processes: `set` wakes every process in
/// `wait`. A wait that no other process can end (all others dropped it or died) fails
/// with [`ErrorKind::PeerClosed`] / [`ErrorKind::PeerDied`] instead of hanging.
///
/// [`ErrorKind::PeerClosed`]: crate::ErrorKind::PeerClosed
/// [`ErrorKind::PeerDied`]: crate::ErrorKind::PeerDied
#[derive(Clone)]
pub struct Event {
    att: Arc<Attachment>,
}

super::region::serde_handle!(Event, Kind::Event, 0, EventState, repair, |att| Event {
    att
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
            att: Attachment::new(region, 0)?,
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

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<(), Error> {
        self.wait_until(None).map(|_| ())
    }

    /// Waits at most `timeout`; whether the flag was set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, Error> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<bool, Error> {
        let st = self.state();
        let waiter = Waiter {
            seq: &st.seq,
            waiters: &st.waiters,
            peer_role: 0,
        };
        let r = self.att.region.block(waiter, deadline, || {
            Ok((st.flag.load(Ordering::Acquire) != 0).then_some(()))
        })?;
        Ok(r.is_some())
    }
}
