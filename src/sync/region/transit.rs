//! Handles on their way to another process: what keeps their region open until they arrive.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::{Region, TICKETS};
use crate::os;

/// How long a handle serialised for another process counts as "on its way" to it.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(10);

/// A region whose last handle in this process (of `role`) is dropped while a handle
/// it shipped is still on its way: kept open (the descriptor the wire names stays this
/// region's) until every handle shipped was opened at the other end, or
/// [`IN_FLIGHT_GRACE`] passed. So a handle a task returns outlives the task's own,
/// dropped when the task returned, as does a handle moved into a task's argument.
pub(super) fn keep_in_transit(region: &Arc<Region>, role: usize) {
    // Every drop also lets go of what arrived meanwhile.
    let mut kept = in_transit();
    if !on_its_way(region, role, os::monotonic_ns()) {
        return;
    }
    // Unbounded but for time: each entry goes once its handles were opened or
    // [`IN_FLIGHT_GRACE`] passed, so handles nobody opens (results dropped undecoded)
    // hold their descriptors for at most that long. Dropping one earlier would let its
    // descriptor number be reused by another object while a wire still names it.
    if !kept
        .iter()
        .any(|(k, r)| Arc::ptr_eq(k, region) && *r == role)
    {
        kept.push((region.clone(), role));
    }
    // Let go as soon as they arrive, whether or not this process drops or serialises
    // another handle later.
    if SWEEPER.swap(os::getpid(), Ordering::AcqRel) != os::getpid() {
        let spawned = std::thread::Builder::new()
            .name("supervisor-in-transit".to_string())
            .spawn(sweep_in_transit);
        if spawned.is_err() {
            // Without the thread, later drops and serialisations still let go.
            SWEEPER.store(0, Ordering::Release);
        }
    }
    // A worker that ends lets the caller open what its task returned first.
    supervisor_worker::serve::before_exit(crate::linger::before_exit);
}

type Kept = Mutex<Vec<(Arc<Region>, usize)>>;

/// The pid of the process whose [`sweep_in_transit`] thread runs (0: none; another pid:
/// the thread of a process this one was forked from, not running here).
static SWEEPER: AtomicI32 = AtomicI32::new(0);
/// Most objects kept for handles on their way: half the descriptor limit, read once.
pub(super) fn kept_budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET
        .get_or_init(|| os::descriptor_limit().map_or(512, |n| (n / 2).clamp(64, 1 << 20) as usize))
}

/// How often [`sweep_in_transit`] looks whether kept handles have arrived.
const SWEEP_EVERY: Duration = Duration::from_millis(5);

/// Lets go of each region kept for handles on their way once they have all arrived (or
/// their grace passed), and ends when none is kept.
fn sweep_in_transit() {
    loop {
        std::thread::sleep(SWEEP_EVERY);
        let kept = in_transit();
        if kept.is_empty() {
            // Under the lock: a region kept after this starts another sweeper.
            SWEEPER.store(0, Ordering::Release);
            return;
        }
    }
}

/// How long an ending worker waits for the handles it shipped to be opened.
const EXIT_LINGER: Duration = Duration::from_secs(2);

/// What [`keep_in_transit`] keeps, with the entries that are done dropped.
pub(super) fn in_transit() -> std::sync::MutexGuard<'static, Vec<(Arc<Region>, usize)>> {
    static IN_TRANSIT: OnceLock<Kept> = OnceLock::new();
    let mut kept = IN_TRANSIT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let now = os::monotonic_ns();
    kept.retain(|(region, r)| on_its_way(region, *r, now));
    kept
}

/// Whether a handle of `role` serialised by some process has not been opened yet and
/// still counts as on its way (serialised within [`IN_FLIGHT_GRACE`]).
pub(super) fn on_its_way(region: &Region, role: usize, now_ns: u64) -> bool {
    let h = region.header();
    h.shipped[role].load(Ordering::Acquire) > h.opened[role].load(Ordering::Acquire)
        && now_ns.saturating_sub(h.last_ship_ns[role].load(Ordering::Relaxed))
            < IN_FLIGHT_GRACE.as_nanos() as u64
}

/// Waits (at most [`EXIT_LINGER`]) until every handle this process shipped was opened.
pub(crate) fn linger_in_transit() {
    let until = std::time::Instant::now() + EXIT_LINGER;
    while !in_transit().is_empty() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Where a ticket's bit lies in [`Header::unopened`]: word and mask.
pub(super) fn ticket_bit(ticket: u64) -> (usize, u64) {
    let n = (ticket % TICKETS as u64) as usize;
    (n / 64, 1 << (n % 64))
}
