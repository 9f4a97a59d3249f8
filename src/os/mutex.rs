//! A robust, process-shared mutex in shared memory (used by `src/sync/`).

use std::io;
use std::time::Duration;

/// How a lock of a [`SharedMutex`] was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquire {
    /// The previous holder unlocked it.
    Clean,
    /// The previous holder died (or its thread ended) holding it; the protected data may
    /// be half-updated. The new holder must repair it and call
    /// [`SharedMutex::make_consistent`] before unlocking.
    OwnerDied,
}

/// A robust, process-shared, error-checking pthread mutex that lives in shared memory.
#[repr(C)]
pub(crate) struct SharedMutex(std::cell::UnsafeCell<libc::pthread_mutex_t>);

// SAFETY: a process-shared pthread mutex is made to be used from many threads.
unsafe impl Sync for SharedMutex {}
// SAFETY: as above.
unsafe impl Send for SharedMutex {}

fn check(r: i32) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

impl SharedMutex {
    /// Initialises the mutex in place.
    ///
    /// # Safety
    /// `this` points to writable memory of `size_of::<SharedMutex>()` bytes, suitably
    /// aligned, that no thread or process uses yet.
    pub(crate) unsafe fn init(this: *mut SharedMutex) -> io::Result<()> {
        // SAFETY: attr is initialised by pthread_mutexattr_init before any other use and
        // destroyed at the end; `this` is valid and unused per the caller's contract.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            check(libc::pthread_mutexattr_init(&mut attr))?;
            let r = check(libc::pthread_mutexattr_setpshared(
                &mut attr,
                libc::PTHREAD_PROCESS_SHARED,
            ))
            .and_then(|()| {
                check(libc::pthread_mutexattr_setrobust(
                    &mut attr,
                    libc::PTHREAD_MUTEX_ROBUST,
                ))
            })
            .and_then(|()| {
                check(libc::pthread_mutexattr_settype(
                    &mut attr,
                    libc::PTHREAD_MUTEX_ERRORCHECK,
                ))
            })
            .and_then(|()| check(libc::pthread_mutex_init((*this).0.get(), &attr)));
            libc::pthread_mutexattr_destroy(&mut attr);
            r
        }
    }

    fn outcome(r: i32) -> io::Result<Option<Acquire>> {
        match r {
            0 => Ok(Some(Acquire::Clean)),
            libc::EOWNERDEAD => Ok(Some(Acquire::OwnerDied)),
            libc::EBUSY | libc::ETIMEDOUT => Ok(None),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }

    /// Locks, waiting as long as it takes. `EDEADLK` if this thread holds it already,
    /// `ENOTRECOVERABLE` if a recovering holder gave up.
    pub(crate) fn lock(&self) -> io::Result<Acquire> {
        // SAFETY: the mutex was initialised by `init` before the memory was shared.
        let r = unsafe { libc::pthread_mutex_lock(self.0.get()) };
        Self::outcome(r)?.ok_or_else(|| io::Error::from_raw_os_error(libc::EBUSY))
    }

    /// Locks if it is free now.
    pub(crate) fn try_lock(&self) -> io::Result<Option<Acquire>> {
        // SAFETY: as in `lock`.
        Self::outcome(unsafe { libc::pthread_mutex_trylock(self.0.get()) })
    }

    /// Locks, giving up after `timeout`.
    pub(crate) fn lock_timeout(&self, timeout: Duration) -> io::Result<Option<Acquire>> {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a live out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
        let total = now.tv_nsec as u128 + timeout.subsec_nanos() as u128;
        let secs = (now.tv_sec as u64)
            .saturating_add(timeout.as_secs())
            .saturating_add((total / 1_000_000_000) as u64);
        let abs = libc::timespec {
            tv_sec: secs.min(i64::MAX as u64) as libc::time_t,
            tv_nsec: (total % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: as in `lock`; abs is a live, normalised timespec.
        Self::outcome(unsafe { libc::pthread_mutex_timedlock(self.0.get(), &abs) })
    }

    /// Marks the state protected by a mutex obtained with [`Acquire::OwnerDied`] as
    /// repaired.
    pub(crate) fn make_consistent(&self) -> io::Result<()> {
        // SAFETY: called by the thread that holds the mutex after EOWNERDEAD.
        check(unsafe { libc::pthread_mutex_consistent(self.0.get()) })
    }

    /// Unlocks; the calling thread must hold the mutex.
    pub(crate) fn unlock(&self) {
        // SAFETY: callers only unlock what their thread locked (guards are !Send).
        unsafe { libc::pthread_mutex_unlock(self.0.get()) };
    }
}
