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

    /// Locks, giving up after `timeout`, measured on the monotonic clock: a step of the
    /// wall clock (an NTP correction, `date -s`) moves no deadline. With glibc's
    /// `pthread_mutex_clocklock` (2.30 and later, looked up at run time) the wait is
    /// one call; without it, `pthread_mutex_timedlock` (which waits on the wall clock)
    /// is called for slices of at most [`WALL_SLICE`], the deadline checked on the
    /// monotonic clock between them, so a step moves it by at most one slice (a
    /// backward step: by the step, once).
    pub(crate) fn lock_timeout(&self, timeout: Duration) -> io::Result<Option<Acquire>> {
        if let Some(clocklock) = clocklock() {
            let abs = deadline_on(libc::CLOCK_MONOTONIC, timeout);
            // SAFETY: as in `lock`; abs is a live, normalised timespec on the clock named.
            let r = unsafe { clocklock(self.0.get(), libc::CLOCK_MONOTONIC, &abs) };
            // EINVAL: a C library that refuses the clock; wait as below.
            if r != libc::EINVAL {
                return Self::outcome(r);
            }
        }
        let until = std::time::Instant::now().checked_add(timeout);
        loop {
            let left = until.map_or(WALL_SLICE, |u| {
                u.saturating_duration_since(std::time::Instant::now())
            });
            let abs = deadline_on(libc::CLOCK_REALTIME, left.min(WALL_SLICE));
            // SAFETY: as in `lock`; abs is a live, normalised timespec.
            match Self::outcome(unsafe { libc::pthread_mutex_timedlock(self.0.get(), &abs) })? {
                Some(acquired) => return Ok(Some(acquired)),
                None if until.is_some_and(|u| std::time::Instant::now() >= u) => return Ok(None),
                None => {}
            }
        }
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

/// The longest wait on the wall clock when `pthread_mutex_clocklock` is missing.
const WALL_SLICE: Duration = Duration::from_millis(50);

/// `pthread_mutex_clocklock`'s signature.
type ClockLock = unsafe extern "C" fn(
    *mut libc::pthread_mutex_t,
    libc::clockid_t,
    *const libc::timespec,
) -> libc::c_int;

/// glibc's `pthread_mutex_clocklock`, if this C library has it (looked up once).
fn clocklock() -> Option<ClockLock> {
    static FOUND: std::sync::OnceLock<Option<ClockLock>> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        // SAFETY: dlsym with the default handle and a nul-terminated name only reads.
        let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"pthread_mutex_clocklock".as_ptr()) };
        // SAFETY: the symbol, when there, is glibc's function of exactly this
        // signature (POSIX.1-2024 `pthread_mutex_clocklock`).
        (!sym.is_null())
            .then(|| unsafe { std::mem::transmute::<*mut libc::c_void, ClockLock>(sym) })
    })
}

/// `timeout` from now on `clock`, as the absolute, normalised time pthread takes.
fn deadline_on(clock: libc::clockid_t, timeout: Duration) -> libc::timespec {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a live out-pointer; both clocks used here always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut now) };
    let total = now.tv_nsec as u128 + timeout.subsec_nanos() as u128;
    let secs = (now.tv_sec as u64)
        .saturating_add(timeout.as_secs())
        .saturating_add((total / 1_000_000_000) as u64);
    libc::timespec {
        tv_sec: secs.min(i64::MAX as u64) as libc::time_t,
        tv_nsec: (total % 1_000_000_000) as libc::c_long,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On glibc the timed wait is on the monotonic clock (not the slices on the wall
    /// clock): a clock step cannot move a `lock_timeout`.
    #[test]
    #[cfg(target_env = "gnu")]
    fn timed_locks_wait_on_the_monotonic_clock_with_glibc() {
        assert!(clocklock().is_some());
    }

    #[test]
    fn deadlines_are_normalised_and_saturate() {
        let d = deadline_on(libc::CLOCK_MONOTONIC, Duration::new(1, 999_999_999));
        assert!((0..1_000_000_000).contains(&d.tv_nsec));
        let far = deadline_on(libc::CLOCK_REALTIME, Duration::MAX);
        assert_eq!(far.tv_sec, i64::MAX as libc::time_t);
        assert!((0..1_000_000_000).contains(&far.tv_nsec));
    }

    /// A mutex held by another thread: a timed lock gives up at its deadline, not
    /// before, and not long after.
    #[test]
    fn a_timed_lock_of_a_held_mutex_gives_up_at_its_deadline() {
        let m = Box::new(std::mem::MaybeUninit::<SharedMutex>::uninit());
        let m: &'static SharedMutex = {
            let p = Box::into_raw(m).cast::<SharedMutex>();
            // SAFETY: fresh, aligned, unshared memory of the right size.
            unsafe { SharedMutex::init(p).unwrap() };
            // SAFETY: initialised just above; leaked for the test's life.
            unsafe { &*p }
        };
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            m.lock().unwrap();
            held_tx.send(()).unwrap();
            let _ = done_rx.recv();
        });
        held_rx.recv().unwrap();
        let t = std::time::Instant::now();
        assert_eq!(m.lock_timeout(Duration::from_millis(80)).unwrap(), None);
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(80), "gave up after {took:?}");
        assert!(took < Duration::from_secs(2), "gave up after {took:?}");
        drop(done_tx);
        holder.join().unwrap();
    }
}
