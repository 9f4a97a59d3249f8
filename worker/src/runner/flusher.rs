//! The flusher thread: sends finished calls' answers while a batch-mate runs long.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::pending::logged_message;
use super::shared::Shared;

/// How often the flusher looks at a running batch; a call seen running at two looks
/// in a row has its finished batch-mates' answers sent at once.
const FLUSH_TICK: Duration = Duration::from_millis(1);
/// Looks with no unit open before the flusher sleeps until woken (a wake-up per unit
/// would cost more than the units of a busy worker).
const FLUSH_QUIET_TICKS: u32 = 100;

/// The flusher: while a unit of several calls runs, looks at the progress page every
/// [`FLUSH_TICK`]; when the same call is running at two looks in a row and finished
/// calls' answers are in the log unsent, sends them.
pub(super) fn flusher(shared: &Shared) {
    let Some(progress) = &shared.progress else {
        return;
    };
    let mut last = None;
    let mut quiet = 0;
    let mut sender = shared.lock();
    loop {
        if sender.open.is_none() {
            last = None;
            quiet += 1;
            if quiet > FLUSH_QUIET_TICKS {
                shared.flusher_asleep.store(true, Ordering::Release);
                sender = shared
                    .opened
                    .wait_while(sender, |s| s.open.is_none())
                    .unwrap_or_else(|p| p.into_inner());
                shared.flusher_asleep.store(false, Ordering::Release);
            }
        } else {
            quiet = 0;
        }
        sender = shared
            .opened
            .wait_timeout(sender, FLUSH_TICK)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        let Some(open) = sender.open else {
            continue;
        };
        let seen = progress.snapshot();
        let now = (open.seq, seen.next, seen.started_ns);
        if last == Some(now) {
            // Under the send lock: the main thread neither sends nor empties the log.
            let from = shared.sent_to.load(Ordering::Acquire);
            if let Some((msg, next)) = logged_message(open, progress.logged(open.seq), from) {
                if sender.send(&msg).is_err() {
                    // The parent is gone; the main thread finds out on its own.
                    return;
                }
                shared.sent_to.store(next, Ordering::Release);
            }
        }
        last = Some(now);
    }
}
