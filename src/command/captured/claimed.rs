//! The spools a receiver claimed for values that arrived and are not decoded yet, held
//! within its descriptor limit.
//!
//! A claimed spool is marked received, so its sender lets go of it: from then on the
//! receiver's hold is the only way to its bytes, and dropping a hold loses an output.
//! So a hold is never dropped for want of room: past [`open_budget`] open spools (and
//! whenever an open fails for want of a descriptor, `EMFILE`), the oldest open one moves
//! into this process's own [`SpillFile`] (one descriptor for all of them; its bytes
//! read into memory if even that file cannot be had).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::spool_ref::SpoolRef;
use super::{Body, Captured, SpillFile};
use crate::os;

/// Most values held (open or spilled) for values not decoded yet; past it the oldest
/// hold is let go (a value that arrived and was never decoded, as a result nobody
/// waits for, holds nothing for ever): its decode, if it ever comes, opens the spool
/// itself and fails if the sender let go of it.
const MAX_HELD: usize = 4096;

/// Most claimed spools held open at once: a quarter of the descriptor limit
/// (`RLIMIT_NOFILE`, read once), at most 512.
fn open_budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| os::descriptor_limit().map_or(512, |n| (n / 4).clamp(1, 512) as usize))
}

struct Held {
    queue: VecDeque<(SpoolRef, Captured)>,
    /// Where holds move out of their own descriptor (made when first needed).
    spill: Option<SpillFile>,
}

fn held() -> MutexGuard<'static, Held> {
    static HELD: OnceLock<Mutex<Held>> = OnceLock::new();
    HELD.get_or_init(|| {
        Mutex::new(Held {
            queue: VecDeque::new(),
            spill: None,
        })
    })
    .lock()
    .unwrap_or_else(|p| p.into_inner())
}

/// Whether `e` is the want of a descriptor (this process's limit or the system's).
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

impl Held {
    fn open_count(&self) -> usize {
        self.queue
            .iter()
            .filter(|(_, c)| matches!(c.0, Body::Spooled { .. }))
            .count()
    }

    /// Moves the oldest hold that has a descriptor of its own out of it; whether one
    /// was freed.
    fn shed_one(&mut self) -> bool {
        let Some(at) = self
            .queue
            .iter()
            .position(|(_, c)| matches!(c.0, Body::Spooled { .. }))
        else {
            return false;
        };
        if self.spill.is_none() {
            self.spill = SpillFile::new().ok();
        }
        let capture = &mut self.queue[at].1;
        if let Some(spill) = &self.spill {
            if capture.spill_into(spill).is_ok() {
                return true;
            }
        }
        // No spill file (no descriptor for it, or the disk is full): the bytes in
        // memory, which frees a descriptor for the spill file next time.
        match capture.to_vec() {
            Ok(bytes) => {
                *capture = Captured::from_bytes(bytes);
                true
            }
            Err(_) => false,
        }
    }
}

/// How long [`open`] waits for a descriptor when no held spool can give one up: the
/// others of this process are taken by outputs on their way out (printed, or moved
/// into a spill file, within milliseconds) more often than by what it keeps.
const WAIT_FOR_DESCRIPTOR: Duration = Duration::from_secs(2);

/// `open()`, again each time it fails for want of a descriptor once a held spool has
/// given up its own, or, with none to give up, after a short wait (for at most
/// [`WAIT_FOR_DESCRIPTOR`]).
pub(super) fn open(open: impl Fn() -> io::Result<File>) -> io::Result<File> {
    let until = Instant::now() + WAIT_FOR_DESCRIPTOR;
    let mut pause = Duration::from_micros(200);
    loop {
        match open() {
            Err(e) if out_of_descriptors(&e) => {
                if held().shed_one() {
                    continue;
                }
                if Instant::now() >= until {
                    return Err(e);
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Holds `capture`, the claimed spool `r`, until [`take`] asks for it.
pub(super) fn hold(r: SpoolRef, capture: Captured) {
    let mut held = held();
    if held.queue.len() >= MAX_HELD {
        held.queue.pop_front();
    }
    held.queue.push_back((r, capture));
    while held.open_count() > open_budget() && held.shed_one() {}
}

/// The held capture of spool `r`, if it was claimed.
pub(super) fn take(r: &SpoolRef) -> Option<Captured> {
    let mut held = held();
    let at = held.queue.iter().position(|(c, _)| c == r)?;
    held.queue.remove(at).map(|(_, c)| c)
}

/// An error opening a spool, the descriptor limit named when it is the cause.
pub(super) fn explain(e: io::Error) -> String {
    if out_of_descriptors(&e) {
        format!(
            "{e}: this process is at its descriptor limit (RLIMIT_NOFILE, `ulimit -n`); \
             raise it or run fewer workers at once"
        )
    } else {
        e.to_string()
    }
}
