//! `Lock`: a mutual-exclusion lock across processes that survives its holder's death.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::region::{Holder, Kind, Region, SharedState};
use crate::error::{Error, ErrorKind};
use crate::os::{Acquire, SharedMutex};

#[repr(C)]
struct LockState {
    mutex: SharedMutex,
    /// Pid of the holder (0 when free): what a new holder reports if the old one died.
    holder: AtomicU32,
}

// SAFETY: repr(C), a mutex (initialised by the creator before sharing) and an atomic.
unsafe impl SharedState for LockState {}

fn repair(_: &Region) {}

/// How a lock was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// The previous holder released it.
    Clean,
    /// The previous holder died holding it (Python's lock would stay held forever):
    /// what it protected may be half-updated.
    PreviousHolderDied {
        /// The dead holder's pid (0 if unknown).
        pid: u32,
    },
}

/// A lock shared by processes: Python's `multiprocessing.Lock`, but a holder that dies
/// releases it, and the next holder learns so from [`LockGuard::acquired`].
///
/// Built on a robust process-shared pthread mutex: the kernel releases it when its
/// holder dies. Not reentrant: locking twice from one thread is
/// [`ErrorKind::WouldDeadlock`]. Threads may share one `Lock` by reference
/// (`Arc<Lock>`, scoped threads) or each hold a clone: the mutex is held by a thread,
/// and nothing waits on the other handles, so both work alike.
///
/// ```
/// use supervisor::{Acquired, Lock, Process};
///
/// /// Takes the lock and dies holding it.
/// fn die_holding(lock: Lock) {
///     let _guard = lock.lock().unwrap();
///     std::process::abort();
/// }
/// supervisor::task!(die_holding);
///
/// fn main() -> Result<(), supervisor::Error> {
///     supervisor::init();
///     let lock = Lock::new()?;
///     let mut child = Process::builder(die_holding, lock.clone()).start()?;
///     assert!(child.join().is_err()); // killed by SIGABRT
///     // Python's lock would stay held forever; this one says what happened.
///     let guard = lock.lock()?;
///     assert!(matches!(guard.acquired(), Acquired::PreviousHolderDied { .. }));
///     drop(guard);
///     assert_eq!(lock.lock()?.acquired(), Acquired::Clean);
///     Ok(())
/// }
/// ```
///
/// At most 128 processes hold one object at once (one holding both ends of a pipe
/// counts twice): decoding a handle in one more fails with
/// [`ErrorKind::TooManyHolders`](crate::ErrorKind::TooManyHolders), until a holder
/// drops its handles or dies.
#[derive(Clone)]
pub struct Lock {
    att: Holder,
}

super::region::serde_handle!(Lock, Kind::Lock, 0, LockState, repair, |att| Lock { att });

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock").finish_non_exhaustive()
    }
}

/// The lock, held; released on drop. Stays on the thread that locked it.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    acquired: Acquired,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl LockGuard<'_> {
    /// Whether the previous holder released the lock or died holding it.
    pub fn acquired(&self) -> Acquired {
        self.acquired
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let st = self.lock.state();
        st.holder.store(0, Ordering::Release);
        st.mutex.unlock();
    }
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> Result<Lock, Error> {
        let region = Region::create(
            Kind::Lock,
            0,
            size_of::<LockState>(),
            0,
            |r| {
                let st: *const LockState = r.state::<LockState>();
                // SAFETY: the state is fresh and not shared yet; the mutex is
                // initialised in place, once.
                unsafe { SharedMutex::init(std::ptr::addr_of!((*st).mutex).cast_mut()) }
            },
            repair,
        )?;
        Ok(Lock {
            att: Holder::attach(region, 0)?,
        })
    }

    fn state(&self) -> &LockState {
        self.att.region.state::<LockState>()
    }

    fn finish(
        &self,
        acquired: std::io::Result<Option<Acquire>>,
    ) -> Result<Option<LockGuard<'_>>, Error> {
        let st = self.state();
        let acquired = match acquired {
            Ok(Some(a)) => a,
            Ok(None) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::EDEADLK) => {
                return Err(ErrorKind::WouldDeadlock.into())
            }
            Err(source) => {
                return Err(ErrorKind::Sync {
                    kind: "lock",
                    source,
                }
                .into())
            }
        };
        let acquired = match acquired {
            Acquire::Clean => Acquired::Clean,
            Acquire::OwnerDied => {
                let pid = st.holder.load(Ordering::Acquire);
                st.mutex
                    .make_consistent()
                    .map_err(|source| ErrorKind::Sync {
                        kind: "lock",
                        source,
                    })?;
                Acquired::PreviousHolderDied { pid }
            }
        };
        st.holder
            .store(crate::os::getpid() as u32, Ordering::Release);
        Ok(Some(LockGuard {
            lock: self,
            acquired,
            _not_send: std::marker::PhantomData,
        }))
    }

    /// Takes the lock, waiting as long as it takes.
    pub fn lock(&self) -> Result<LockGuard<'_>, Error> {
        let r = self.state().mutex.lock().map(Some);
        match self.finish(r)? {
            Some(guard) => Ok(guard),
            None => unreachable!("a blocking lock returns a guard or an error"),
        }
    }

    /// Takes the lock if it is free now.
    pub fn try_lock(&self) -> Result<Option<LockGuard<'_>>, Error> {
        self.finish(self.state().mutex.try_lock())
    }

    /// Takes the lock, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<Option<LockGuard<'_>>, Error> {
        self.finish(self.state().mutex.lock_timeout(timeout))
    }
}
