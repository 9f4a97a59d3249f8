//! A call being stopped (`Pool::stop_call`) keeps its own time limit.

use std::time::Duration;

use super::cases::{scripted, simulate};
use super::checks::check;
use crate::error::ErrorKind;

/// A call of 300 ms under a 50 ms limit, asked to stop at 10 ms, on a worker that
/// ignores SIGTERM (SIGKILL comes after the grace and the children's margin, 550 ms):
/// it ends stopped or timed out, never as a success that ran past its limit (it
/// was one: a stop in progress suspended the call's time limit; found by the packed
/// simulation with calls 1000 times longer).
#[test]
fn a_call_being_stopped_keeps_its_own_time_limit() {
    let mut case = scripted(&[300], 1, Some(Duration::from_millis(50)));
    case.stop_calls = vec![(10_000_000, 0)];
    case.stubborn = 1;
    let (results, world) = simulate(&case);
    check(&case, &results, &world);
    let (result, meta) = &results[0];
    assert!(
        matches!(result, Err(e) if matches!(e.kind(), ErrorKind::TimedOut { .. } | ErrorKind::Stopped { .. })),
        "{result:?} {meta:?}"
    );
}
