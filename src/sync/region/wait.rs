//! Taking a region's mutex with or without a deadline, and waiting under it for a change.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::Region;
use crate::error::{Error, ErrorKind};
use crate::os::{self, Acquire};
use crate::sync::fault::{self, Fault};

/// How often a waiter checks that some process that could wake it is still alive.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// Spins on a changing word before sleeping on it.
const SPINS: u32 = 2_000;
/// How long a `try_*` call waits for the region's mutex: enough for another holder to
/// finish a copy, not enough to notice.
const TRY_LOCK_GRACE: Duration = Duration::from_millis(1);

/// The region's mutex, held. Not `Send`: a pthread mutex is unlocked by its locker.
pub(crate) struct RegionGuard<'a> {
    region: &'a Region,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for RegionGuard<'_> {
    fn drop(&mut self) {
        self.region.header().mutex.unlock();
    }
}

/// What a waiter waits on: a sequence word bumped on every change, and the count of
/// sleepers on it (so wakers skip the system call when nobody sleeps).
pub(crate) struct Waiter<'a> {
    pub(crate) seq: &'a AtomicU32,
    pub(crate) waiters: &'a AtomicU32,
    /// The role of the handles that could end the wait.
    pub(crate) peer_role: u32,
    /// The role of the waiting handle (not a peer of itself).
    pub(crate) own_role: u32,
}

/// Wakes one (or all) sleepers of a sequence word, after its change was made under the
/// region's mutex and the mutex was released.
pub(crate) fn notify(seq: &AtomicU32, waiters: &AtomicU32, all: bool) {
    if waiters.load(Ordering::SeqCst) > 0 {
        os::futex_wake(seq, if all { i32::MAX } else { 1 });
    }
}

impl Region {
    fn sync_error(&self, source: std::io::Error) -> Error {
        ErrorKind::Sync {
            kind: self.kind(),
            source,
        }
        .into()
    }

    /// Locks the region's mutex, waiting as long as it takes. If its previous holder
    /// died holding it, the object's state is repaired first (a half-done operation is
    /// rolled back or completed).
    pub(crate) fn lock(&self) -> Result<RegionGuard<'_>, Error> {
        match self.lock_until(None)? {
            Some(guard) => Ok(guard),
            None => unreachable!("a lock without a deadline returns a guard or an error"),
        }
    }

    /// Locks the region's mutex, giving up at `deadline` (`Ok(None)`): a holder that is
    /// stopped or slow cannot make a timed call late. A deadline already past is a
    /// try-lock. Uncontended, it costs what [`Region::lock`] does: a few try-locks come
    /// first, the timed wait only on contention.
    pub(crate) fn lock_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Option<RegionGuard<'_>>, Error> {
        let mutex = &self.header().mutex;
        let mut acquired = None;
        for _ in 0..64 {
            acquired = mutex.try_lock().map_err(|e| self.sync_error(e))?;
            if acquired.is_some() {
                break;
            }
            std::hint::spin_loop();
        }
        let acquired = match (acquired, deadline) {
            (Some(a), _) => a,
            (None, None) => mutex.lock().map_err(|e| self.sync_error(e))?,
            (None, Some(d)) => {
                let left = d.saturating_duration_since(Instant::now());
                match mutex.lock_timeout(left).map_err(|e| self.sync_error(e))? {
                    Some(a) => a,
                    None => return Ok(None),
                }
            }
        };
        let guard = RegionGuard {
            region: self,
            _not_send: std::marker::PhantomData,
        };
        if acquired == Acquire::OwnerDied {
            (self.repair)(self);
            mutex.make_consistent().map_err(|e| self.sync_error(e))?;
        }
        fault::point(Fault::StopHoldingLock);
        Ok(Some(guard))
    }

    /// Calls `attempt` under the mutex until it returns `Some`, the deadline passes
    /// (`Ok(None)`), or no process that could make it succeed is left
    /// ([`ErrorKind::PeerClosed`], [`ErrorKind::PeerDied`]).
    pub(crate) fn block<R>(
        &self,
        w: Waiter<'_>,
        deadline: Option<Instant>,
        mut attempt: impl FnMut() -> Result<Option<R>, Error>,
    ) -> Result<Option<R>, Error> {
        // A try (a deadline now) still lets another holder finish a copy.
        let lock_by = deadline.map(|d| d.max(Instant::now() + TRY_LOCK_GRACE));
        let Some(first) = self.lock_until(lock_by)? else {
            return Ok(None);
        };
        let mut guard = Some(first);
        let mut next_check: Option<Instant> = None;
        let result = loop {
            match attempt() {
                Ok(None) => {}
                done => break done,
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break Ok(None);
            }
            match next_check {
                None => {
                    // Cheap check first: nobody else holds it at all.
                    if let Some(e) = self.disconnected(w.peer_role, w.own_role, false) {
                        break Err(e);
                    }
                    next_check = Some(now + CHECK_EVERY);
                }
                Some(at) if now >= at => {
                    if let Some(e) = self.disconnected(w.peer_role, w.own_role, true) {
                        break Err(e);
                    }
                    next_check = Some(now + CHECK_EVERY);
                }
                Some(_) => {}
            }
            let seq = w.seq.load(Ordering::SeqCst);
            drop(guard.take());
            let mut until = next_check.unwrap_or(now + CHECK_EVERY);
            if let Some(d) = deadline {
                until = until.min(d);
            }
            let mut spins = 0;
            while w.seq.load(Ordering::Acquire) == seq && spins < SPINS {
                std::hint::spin_loop();
                spins += 1;
            }
            // Counted as a sleeper only now, so a changer skips the wake-up call while
            // we spin. Dekker-style: we write the count then read the word; a changer
            // writes the word then reads the count (both SeqCst), so either we see the
            // change or it sees us (and FUTEX_WAIT re-checks the word atomically).
            w.waiters.fetch_add(1, Ordering::SeqCst);
            if w.seq.load(Ordering::SeqCst) == seq {
                os::futex_wait(w.seq, seq, until.saturating_duration_since(Instant::now()));
            }
            let _ = w
                .waiters
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            guard = self.lock_until(lock_by)?;
            if guard.is_none() {
                // The deadline passed with the mutex held by another: nothing was done.
                break Ok(None);
            }
        };
        drop(guard);
        if !matches!(result, Ok(Some(_))) {
            // A wake meant for a waiter that is leaving goes to the next one.
            notify(w.seq, w.waiters, false);
        }
        result
    }
}
