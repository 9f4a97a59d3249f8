//! Emptying the process group of a child that has exited, whether or not anyone joins
//! it: what its task left running there gets SIGTERM, a grace period, then SIGKILL.
//!
//! The reaper only tells this module's thread (an unbounded channel: one send, no
//! wait), so neither the reaper thread nor a slot's lock is ever held across a grace
//! period. The thread keeps a list of groups still being emptied and wakes at the next
//! thing due: a look at a group (at growing intervals) or a SIGKILL.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::reaper::ChildSlot;

/// How long, after a SIGKILL to a group, its members may take to be gone before a
/// waiter stops waiting (a process in uninterruptible sleep dies only when it leaves
/// it; such a one is still SIGKILLed, only no longer waited for).
pub(crate) const GONE_WITHIN: Duration = Duration::from_secs(1);

/// The first and the longest pause between looks at a group being emptied.
const LOOK_FIRST: Duration = Duration::from_millis(1);
const LOOK_MAX: Duration = Duration::from_millis(50);

/// Once `slot`'s child has exited, whoever holds its handle: if anything of its
/// process group still runs, SIGTERM to the group, then SIGKILL after `grace`.
pub(crate) fn when_exited(slot: &Arc<ChildSlot>, grace: Duration) -> std::io::Result<()> {
    let tx = sweeper()?;
    let held = slot.clone();
    slot.on_exit(Box::new(move || {
        // The thread outlives every slot; a failed send means it is gone, and then
        // only `join` (or the pool) empties the group.
        let _ = tx.send(Sweep { slot: held, grace });
    }));
    Ok(())
}

/// Waits (looking at growing intervals) until nothing of `slot`'s process group runs,
/// at most until `deadline`; false if something still ran then.
pub(crate) fn wait_gone(slot: &ChildSlot, deadline: Instant) -> bool {
    let mut pause = LOOK_FIRST;
    loop {
        if !slot.group_runs() {
            return true;
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return false;
        };
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(LOOK_MAX);
    }
}

/// A group to empty, sent by the reaper when its leader was reaped.
struct Sweep {
    slot: Arc<ChildSlot>,
    grace: Duration,
}

/// Where a group being emptied stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// SIGTERM sent; SIGKILL at `kill_at` (never, for `None`: a grace too long to
    /// represent) unless it empties first.
    Termed { kill_at: Option<Instant> },
    /// SIGKILL sent; looked at until it is empty or `until`.
    Killed { until: Instant },
}

/// What to do with a group at a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Nothing runs in it any more, or it was waited for long enough: forget it.
    Done,
    /// Its grace is over: SIGKILL it.
    Kill,
    /// Look again later.
    Wait,
}

/// The decision at a look at `now`, given whether anything of the group still runs.
fn next_step(phase: Phase, runs: bool, now: Instant) -> Step {
    match phase {
        _ if !runs => Step::Done,
        Phase::Termed { kill_at: Some(at) } if at <= now => Step::Kill,
        Phase::Termed { .. } => Step::Wait,
        Phase::Killed { until } if until <= now => Step::Done,
        Phase::Killed { .. } => Step::Wait,
    }
}

struct Emptying {
    slot: Arc<ChildSlot>,
    phase: Phase,
    look_at: Instant,
    pause: Duration,
}

impl Emptying {
    fn next_wake(&self) -> Instant {
        match self.phase {
            Phase::Termed { kill_at: Some(at) } => self.look_at.min(at),
            _ => self.look_at,
        }
    }

    /// Acts on what is due at `now`; false once the group is done with.
    fn look(&mut self, now: Instant) -> bool {
        if self.next_wake() > now {
            return true;
        }
        match next_step(self.phase, self.slot.group_runs(), now) {
            Step::Done => return false,
            Step::Kill => {
                let _ = self.slot.signal_group(libc::SIGKILL);
                self.phase = Phase::Killed {
                    until: now + GONE_WITHIN,
                };
                self.pause = LOOK_FIRST;
            }
            Step::Wait => self.pause = (self.pause * 2).min(LOOK_MAX),
        }
        self.look_at = now + self.pause;
        true
    }
}

/// The sender to the sweeper thread, with the pid of the process it runs in.
type SweeperCell = Mutex<Option<(i32, mpsc::Sender<Sweep>)>>;

static SWEEPER: OnceLock<SweeperCell> = OnceLock::new();

/// The sender to the sweeper thread, started on first use (again in a process forked
/// from one that had it: the thread was not copied).
fn sweeper() -> std::io::Result<mpsc::Sender<Sweep>> {
    let cell = SWEEPER.get_or_init(|| Mutex::new(None));
    let mut tx = cell.lock().unwrap_or_else(|p| p.into_inner());
    let me = crate::os::getpid();
    if let Some((pid, tx)) = tx.as_ref() {
        if *pid == me {
            return Ok(tx.clone());
        }
    }
    let (sender, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("supervisor-groups".into())
        .stack_size(128 * 1024)
        .spawn(move || run(rx))?;
    *tx = Some((me, sender.clone()));
    Ok(sender)
}

fn run(rx: mpsc::Receiver<Sweep>) {
    let mut emptying: Vec<Emptying> = Vec::new();
    loop {
        let next = emptying.iter().map(Emptying::next_wake).min();
        let received = match next {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        let now = Instant::now();
        match received {
            Ok(Sweep { slot, grace }) => {
                if slot.group_runs() {
                    let _ = slot.signal_group(libc::SIGTERM);
                    emptying.push(Emptying {
                        slot,
                        phase: Phase::Termed {
                            kill_at: now.checked_add(grace),
                        },
                        look_at: now + LOOK_FIRST,
                        pause: LOOK_FIRST,
                    });
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) if emptying.is_empty() => return,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(
                    LOOK_MAX.min(next.map_or(LOOK_MAX, |at| at.saturating_duration_since(now))),
                );
            }
        }
        let now = Instant::now();
        emptying.retain_mut(|group| group.look(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_group_is_done_in_any_phase() {
        let now = Instant::now();
        for phase in [
            Phase::Termed { kill_at: None },
            Phase::Termed {
                kill_at: Some(now + Duration::from_secs(1)),
            },
            Phase::Killed { until: now },
        ] {
            assert_eq!(next_step(phase, false, now), Step::Done);
        }
    }

    #[test]
    fn a_running_group_is_killed_at_the_end_of_its_grace_and_waited_for_a_bounded_time() {
        let now = Instant::now();
        let later = now + Duration::from_millis(10);
        let termed = Phase::Termed {
            kill_at: Some(later),
        };
        assert_eq!(next_step(termed, true, now), Step::Wait);
        assert_eq!(next_step(termed, true, later), Step::Kill);
        assert_eq!(
            next_step(Phase::Termed { kill_at: None }, true, later),
            Step::Wait
        );
        let killed = Phase::Killed { until: later };
        assert_eq!(next_step(killed, true, now), Step::Wait);
        assert_eq!(next_step(killed, true, later), Step::Done);
    }
}
