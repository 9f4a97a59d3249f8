//! The region's table of holders: attaching, detaching, and whether anyone else holds it.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use super::transit::on_its_way;
use super::{Region, MAX_HOLDERS};
use crate::error::{Error, ErrorKind};
use crate::os;

/// The pid of a holder slot being claimed (not yet whole: no holder).
const CLAIMING: i32 = -1;

/// This process's pid and start time.
fn me() -> (i32, u64) {
    static START: OnceLock<(i32, u64)> = OnceLock::new();
    let pid = os::getpid();
    match START.get() {
        Some(&(p, start)) if p == pid => (pid, start),
        _ => {
            let start = os::process_start_time(pid).unwrap_or(0);
            let _ = START.set((pid, start));
            (pid, start)
        }
    }
}

impl Region {
    /// `Some(error)` if no handle but the waiter's own (of role `own`) can end a wait on
    /// `role`: no other handle of this process holds it, no other process holds it and
    /// no handle is on its way. `deep` (under the mutex): also checks that the holding
    /// processes are alive, and forgets the dead ones (remembering one for the error).
    pub(super) fn disconnected(&self, role: u32, own: u32, deep: bool) -> Option<Error> {
        let h = self.header();
        let (my_pid, _) = me();
        let r = role as usize % 2;
        let local = self.local[r].load(Ordering::SeqCst);
        let mut others = local > usize::from(own == role);
        for slot in &h.slots {
            if others && !deep {
                break;
            }
            let pid = slot.pid.load(Ordering::Acquire);
            if pid <= 0 || pid == my_pid || slot.role.load(Ordering::Relaxed) != role {
                continue;
            }
            if !deep || os::process_start_time(pid) == Some(slot.start.load(Ordering::Relaxed)) {
                others = true;
            } else if slot
                .pid
                .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                h.dead_pid[r].store(pid as u32, Ordering::Relaxed);
            }
        }
        let in_flight = on_its_way(self, r, os::monotonic_ns());
        if others || in_flight {
            return None;
        }
        let kind = self.kind();
        let error = match h.dead_pid[r].load(Ordering::Relaxed) {
            0 => ErrorKind::PeerClosed { kind },
            pid => ErrorKind::PeerDied { kind, pid },
        };
        Some(error.into())
    }

    /// Whether some handle other than the caller's (of role `own`) holds `role`, in this
    /// process or another, or a handle to it is on its way.
    pub(crate) fn has_peer(&self, role: u32, own: u32) -> bool {
        self.disconnected(role, own, false).is_none()
    }

    /// Registers this process as a holder of `role`. Without the mutex, so that opening
    /// a handle (a task's argument, a returned handle in `join_timeout` or `wait_timeout`)
    /// never waits for another holder, one stopped holding it included: a free slot is
    /// claimed by a compare-and-swap of its pid from 0 to [`CLAIMING`], filled, and only
    /// then given the pid (readers skip a slot whose pid is not positive).
    pub(super) fn attach(&self, role: u32) -> Result<(), Error> {
        let (pid, start) = me();
        let h = self.header();
        let claim = || {
            h.slots.iter().find(|s| {
                s.pid
                    .compare_exchange(0, CLAIMING, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            })
        };
        let mut free = claim();
        if free.is_none() {
            // Reclaim the slots of dead processes.
            for slot in &h.slots {
                let p = slot.pid.load(Ordering::Acquire);
                if p > 0 && os::process_start_time(p) != Some(slot.start.load(Ordering::Relaxed)) {
                    let _ = slot
                        .pid
                        .compare_exchange(p, 0, Ordering::AcqRel, Ordering::Relaxed);
                }
            }
            free = claim();
        }
        let slot = free.ok_or(ErrorKind::TooManyHolders {
            kind: self.kind(),
            limit: MAX_HOLDERS,
        })?;
        h.dead_pid[role as usize % 2].store(0, Ordering::Relaxed);
        // The pid goes last: a slot is in use only once it is whole.
        slot.start.store(start, Ordering::Relaxed);
        slot.role.store(role, Ordering::Relaxed);
        slot.pid.store(pid, Ordering::Release);
        Ok(())
    }

    /// Frees this process's slot of `role`. Without the mutex, so that dropping a handle
    /// never waits for another holder (one stopped holding it would make the drop, and
    /// an ending worker, wait until it is continued): only this process writes its own
    /// slot while it lives (a claim writes a free slot; a sweep frees a dead process's),
    /// and the pid goes last when a slot is claimed, so a slot that matches is whole.
    pub(super) fn detach(&self, role: u32) {
        let (pid, start) = me();
        let h = self.header();
        if let Some(slot) = h.slots.iter().find(|s| {
            s.pid.load(Ordering::Acquire) == pid
                && s.role.load(Ordering::Relaxed) == role
                && s.start.load(Ordering::Relaxed) == start
        }) {
            let _ = slot
                .pid
                .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}
