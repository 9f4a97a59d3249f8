//! The hub: how events reach the dispatcher's state, with as few thread hops as possible.
//!
//! The pool's state (the dispatcher) sits behind one mutex, and every event is handled
//! by whichever thread holds it. A thread with an event (a caller submitting work, a
//! worker's reader with a result, a starter, the reaper) puts it in the inbox and tries
//! the lock: if it gets it, it handles everything in the inbox itself and dispatches
//! (so an `apply` sends its task to an idle worker from the caller's own thread, and a
//! result wakes its waiter straight from the reader that received it); if not, the
//! holder handles it before letting go. Nobody but the timer thread ever blocks on the
//! lock, so an event can be posted from any thread, even one the holder might be
//! waiting for. A poster serves a few rounds at most, then leaves the rest to the pool
//! thread; the reaper only posts (`post_later`). A panic while handling (a bug) stops the
//! pool as if its dispatcher had died, whichever thread it happened on.
//!
//! The timer thread is the pool's own thread: it fires deadlines (task timeouts, kill
//! after grace, exit settling), handles what posters left to it, notices the end, and
//! records the final statistics. (The workers are started by the first dispatch, its
//! or an earlier poster's.) It sleeps until the next deadline; a poster that moves the next
//! deadline earlier or ends the pool unparks it.
//!
//! Lost events are impossible: a poster that fails to take the lock pushed its event
//! first, and every holder (the timer thread too) looks at the inbox again after
//! letting go.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError, Weak};
use std::thread::Thread;
use std::time::Instant;

use super::stats::PoolStats;
use crate::error::BrokenReason;

/// What the hub serves: the pool's state machine (the dispatcher), seen from here only
/// through the events it takes and the deadlines it names.
pub(crate) trait Machine {
    type Event;
    fn handle(&mut self, event: Self::Event);
    /// Acts on the state after a round of events (hands out work).
    fn dispatch(&mut self);
    /// Acts on every deadline that has passed.
    fn on_timers(&mut self);
    /// The earliest deadline, if any.
    fn next_wake(&self) -> Option<Instant>;
    /// Nothing left to do.
    fn finished(&self) -> bool;
    /// Stops the pool after a panic with `message`: every waiter gets `PoolBroken`.
    fn break_pool(&mut self, message: String);
    fn stats(&self) -> PoolStats;
    /// Events that reach a pool whose machine has ended (`broken`: why it broke).
    fn refuse(events: Vec<Self::Event>, broken: Option<&BrokenReason>);
}

/// How many times a posting thread empties the inbox before it leaves the rest to the
/// pool thread.
const POSTER_ROUNDS: usize = 4;

/// The shared state and its inbox.
pub(crate) struct Hub<M: Machine> {
    inbox: Mutex<Vec<M::Event>>,
    core: Mutex<Core<M>>,
    timer: OnceLock<Thread>,
}

struct Core<M> {
    dispatcher: Option<M>,
    /// When the timer thread means to wake next (`None`: only when told to).
    timer_at: Option<Instant>,
    /// Why the dispatcher ended, if the pool broke: later submissions fail with it.
    broken: Option<BrokenReason>,
}

impl<M: Machine> Hub<M> {
    /// A hub holding the dispatcher `make` builds (given the hub's weak handle).
    pub(crate) fn new(make: impl FnOnce(Weak<Hub<M>>) -> M) -> Arc<Hub<M>> {
        Arc::new_cyclic(|hub| Hub {
            inbox: Mutex::new(Vec::new()),
            core: Mutex::new(Core {
                dispatcher: Some(make(hub.clone())),
                timer_at: None,
                broken: None,
            }),
            timer: OnceLock::new(),
        })
    }

    /// Hands an event to the dispatcher; handled before this returns when the state is
    /// free, else by its current holder. After the pool has stopped, the event is
    /// dropped (its jobs fail as terminated, its reply channel closes).
    pub(crate) fn post(&self, event: M::Event) {
        lock(&self.inbox).push(event);
        for _ in 0..POSTER_ROUNDS {
            let mut core = match self.core.try_lock() {
                Ok(core) => core,
                Err(TryLockError::Poisoned(p)) => {
                    self.wake_timer();
                    stopped(p.into_inner())
                }
                // The holder looks at the inbox again after letting go.
                Err(TryLockError::WouldBlock) => return,
            };
            self.drain(&mut core);
            drop(core);
            if lock(&self.inbox).is_empty() {
                return;
            }
        }
        // Others keep posting: leave the rest to the pool thread rather than serve them
        // all from this caller's (or reader's) time.
        self.wake_timer();
    }

    /// Hands an event to the pool thread without handling anything here: for the
    /// reaper, whose time belongs to every child of the program.
    pub(crate) fn post_later(&self, event: M::Event) {
        lock(&self.inbox).push(event);
        self.wake_timer();
    }

    fn wake_timer(&self) {
        if let Some(timer) = self.timer.get() {
            timer.unpark();
        }
    }

    /// Handles every waiting event, dispatches, and wakes the timer thread if it must
    /// act sooner than it planned.
    fn drain(&self, core: &mut MutexGuard<'_, Core<M>>) {
        let mut handled = false;
        let timer = Some(std::thread::current().id()) == self.timer_id();
        for round in 0.. {
            if !timer && round == POSTER_ROUNDS {
                self.wake_timer();
                break;
            }
            let events = std::mem::take(&mut *lock(&self.inbox));
            if events.is_empty() {
                break;
            }
            // Stopped: dropping the events fails their jobs and closes their replies.
            let Some(d) = core.dispatcher.as_mut() else {
                M::refuse(events, core.broken.as_ref());
                continue;
            };
            let handling = panic::catch_unwind(AssertUnwindSafe(|| {
                for event in events {
                    d.handle(event);
                }
                d.dispatch();
            }));
            if let Err(panic) = handling {
                // A bug, or a dependency that panicked. The state may be inconsistent:
                // try to break the pool with the reason (every waiter gets it), then
                // stop as if the dispatcher had died (its jobs fail, its workers see
                // their channels close), on whichever thread this happened, and let
                // the pool thread end.
                let message = supervisor_worker::serve::panic_message(panic.as_ref());
                if let Some(d) = core.dispatcher.as_mut() {
                    let message = message.clone();
                    let _ = panic::catch_unwind(AssertUnwindSafe(|| d.break_pool(message)));
                }
                core.broken = Some(BrokenReason::Panic { message });
                core.dispatcher = None;
                drop(std::mem::take(&mut *lock(&self.inbox)));
                self.wake_timer();
                return;
            }
            handled = true;
        }
        let Some(d) = core.dispatcher.as_ref() else {
            return;
        };
        if handled && !timer {
            let sooner = match (d.next_wake(), core.timer_at) {
                (Some(next), Some(planned)) => next < planned,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if sooner || d.finished() {
                core.timer_at = d.next_wake();
                self.wake_timer();
            }
        }
    }

    fn timer_id(&self) -> Option<std::thread::ThreadId> {
        self.timer.get().map(|t| t.id())
    }

    /// The timer thread's body: starts the workers and serves until the pool is closed
    /// and drained, or terminated, then leaves the final statistics in `last`.
    pub(crate) fn run(&self, last: &Mutex<Option<PoolStats>>) {
        let _ = self.timer.set(std::thread::current());
        // The first dispatch (here, or by an earlier poster) starts the workers.
        loop {
            let wake = {
                let mut core = self.core.lock().unwrap_or_else(|p| stopped(p.into_inner()));
                self.drain(&mut core);
                let Some(d) = core.dispatcher.as_mut() else {
                    return;
                };
                d.on_timers();
                d.dispatch();
                if d.finished() {
                    let stats = d.stats();
                    core.broken = stats.broken.clone();
                    *lock(last) = Some(stats);
                    // Later events are dropped; the state itself goes with the hub.
                    let d = core.dispatcher.take();
                    let broken = core.broken.clone();
                    drop(core);
                    drop(d);
                    // Whatever was posted meanwhile: fail it now, not at the hub's end.
                    let events = std::mem::take(&mut *lock(&self.inbox));
                    M::refuse(events, broken.as_ref());
                    return;
                }
                let wake = d.next_wake();
                core.timer_at = wake;
                wake
            };
            if !lock(&self.inbox).is_empty() {
                continue;
            }
            match wake {
                Some(at) => std::thread::park_timeout(at.saturating_duration_since(Instant::now())),
                None => std::thread::park(),
            }
        }
    }
}

/// Posts `event` to the hub behind `hub`; false if the pool is gone.
pub(crate) fn post_to<M: Machine>(hub: &Weak<Hub<M>>, event: M::Event) -> bool {
    match hub.upgrade() {
        Some(hub) => {
            hub.post(event);
            true
        }
        None => false,
    }
}

/// A thread panicked while handling an event: the state may be inconsistent, so the
/// pool stops as if the dispatcher had died (its jobs fail, its workers see their
/// channels close and exit).
fn stopped<M>(mut core: MutexGuard<'_, Core<M>>) -> MutexGuard<'_, Core<M>> {
    core.dispatcher = None;
    core
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
