//! `Semaphore`: a counter of permits shared by processes.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::region::{notify, Holder, Kind, Region, SharedState, Waiter};
use crate::error::Error;

#[repr(C)]
struct SemaphoreState {
    permits: AtomicU64,
    seq: AtomicU32,
    waiters: AtomicU32,
}

// SAFETY: repr(C), only atomics, valid when zeroed.
unsafe impl SharedState for SemaphoreState {}

fn repair(_: &Region) {}

/// Python's `multiprocessing.Semaphore` across processes and threads. An `acquire` that
/// no other handle can end fails with [`ErrorKind::PeerClosed`] / [`ErrorKind::PeerDied`]
/// instead of hanging; every handle is a holder (a clone in another thread of this
/// process counts as another process does). `acquire_timeout` returns by its deadline
/// and `try_acquire` at once (within about 1 ms) whatever the other holders do. Permits
/// held by a process that dies are not given back.
///
/// A handle is `Send` but not `Sync`: every handle is a holder, and one handle shared by
/// reference between threads would be one, so a lone waiter in one thread would fail
/// with `PeerClosed` although another thread was about to `release`. Give each thread a
/// `clone()` (clones share one mapping); sharing one by reference does not compile, and
/// the compiler's note names `CloneForEachThread`:
///
/// ```compile_fail,E0277
/// # fn main() -> Result<(), supervisor::Error> {
/// let obj = supervisor::Semaphore::new(0)?;
/// std::thread::scope(|s| {
///     s.spawn(|| drop(&obj)); // `&Semaphore` cannot be sent: `Semaphore` is not `Sync`
/// });
/// # Ok(())
/// # }
/// ```
///
/// ```
/// # fn main() -> Result<(), supervisor::Error> {
/// let obj = supervisor::Semaphore::new(0)?;
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
pub struct Semaphore {
    att: Holder,
    _threads: super::CloneForEachThread,
}

super::region::serde_handle!(
    Semaphore,
    Kind::Semaphore,
    0,
    SemaphoreState,
    repair,
    |att| Semaphore {
        att,
        _threads: Default::default()
    }
);

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("permits", &self.permits())
            .finish()
    }
}

impl Semaphore {
    /// A semaphore with `permits` permits.
    pub fn new(permits: u64) -> Result<Semaphore, Error> {
        let region = Region::create(
            Kind::Semaphore,
            0,
            size_of::<SemaphoreState>(),
            0,
            |r| {
                r.state::<SemaphoreState>()
                    .permits
                    .store(permits, Ordering::Release);
                Ok(())
            },
            repair,
        )?;
        Ok(Semaphore {
            att: Holder::attach(region, 0)?,
            _threads: Default::default(),
        })
    }

    fn state(&self) -> &SemaphoreState {
        self.att.region.state::<SemaphoreState>()
    }

    /// Permits available now (approximate).
    pub fn permits(&self) -> u64 {
        self.state().permits.load(Ordering::Acquire)
    }

    /// Handles sleeping in `acquire` right now, in any process (for tests that must act
    /// while a waiter waits).
    #[doc(hidden)]
    pub fn waiting(&self) -> u32 {
        self.state().waiters.load(Ordering::Relaxed)
    }

    /// Takes a permit, waiting for one.
    pub fn acquire(&self) -> Result<(), Error> {
        self.acquire_until(None).map(|_| ())
    }

    /// Takes a permit, waiting at most `timeout`; whether one was taken.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, Error> {
        self.acquire_until(Instant::now().checked_add(timeout))
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> Result<bool, Error> {
        self.acquire_until(Some(Instant::now()))
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> Result<bool, Error> {
        let st = self.state();
        let waiter = Waiter {
            seq: &st.seq,
            waiters: &st.waiters,
            peer_role: 0,
            own_role: 0,
        };
        let r = self.att.region.block(waiter, deadline, || {
            let n = st.permits.load(Ordering::Acquire);
            if n == 0 {
                return Ok(None);
            }
            st.permits.store(n - 1, Ordering::Release);
            Ok(Some(()))
        })?;
        Ok(r.is_some())
    }

    /// Gives a permit back (or adds one, up to `u64::MAX`) and wakes one waiter.
    pub fn release(&self) -> Result<(), Error> {
        let st = self.state();
        {
            let _guard = self.att.region.lock()?;
            // At most u64::MAX permits: a release past that adds none (it wrapped to 0).
            let _ = st
                .permits
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_add(1));
            st.seq.fetch_add(1, Ordering::SeqCst);
        }
        notify(&st.seq, &st.waiters, false);
        Ok(())
    }
}
