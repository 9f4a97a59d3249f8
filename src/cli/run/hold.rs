//! Results that wait for their turn to be printed (input order, behind a slow task).
//!
//! The pool goes on running the inputs after a slow one and hands each result over as
//! it arrives (up to `PoolBuilder::max_held` of them may wait so); what a result holds
//! is its captured output, in memory up to the inline limit per stream, or a spool file
//! (a descriptor) past it. While the waiting outputs take at most [`HOLD_IN_MEMORY`]
//! bytes and [`HOLD_FILES`] spool files, they stay as they are; past either, a waiting
//! result's output moves into one spill file (`supervisor::SpillFile`: unnamed, 0600,
//! in `TMPDIR`) and is printed from there in its turn. So a run's memory and
//! descriptors stay bounded however many results wait, and the spill file is emptied
//! whenever nothing waits in it.

use std::collections::VecDeque;

use supervisor::{Captured, Error, SpillFile};

use super::super::tasks::{Failure, Outcome};

/// Bytes of waiting outputs kept in memory before they go to the spill file.
pub(super) const HOLD_IN_MEMORY: u64 = 16 << 20;

/// Waiting outputs that keep their own spool file (a descriptor each) before the next
/// ones are copied into the spill file: at most this many, and at most a quarter of
/// the descriptors left at the start (under `ulimit -n 64` the pool's own descriptors
/// and the spools of results on their way take most of them).
pub(super) const HOLD_FILES: usize = 64;

/// Descriptors a worker costs this process while it runs, measured under `ulimit -n 30`
/// with `-j 4` (its two sockets, its shared memory, its pidfd), and the spool of a
/// result of it on its way (claimed as it arrives, until it is printed or held).
pub(super) const DESCRIPTORS_PER_WORKER: usize = 6;

/// What the waiting results keep in memory and in spool files of their own.
pub(super) struct Holding {
    /// Spool files the waiting outputs may keep ([`HOLD_FILES`] or fewer).
    max_files: usize,
    /// Bytes in memory and spool files kept by each result from `next` on (results
    /// are printed in input order, so this is a ring from the next one to print).
    kept: VecDeque<(u64, usize)>,
    /// The index of the next result to print: the one `kept[0]` stands for.
    next: usize,
    in_memory: u64,
    files: usize,
    spill: Option<SpillFile>,
}

impl Default for Holding {
    fn default() -> Holding {
        Holding::with_max_files(HOLD_FILES)
    }
}

impl Holding {
    /// Waiting outputs keep at most `max_files` spool files of their own.
    pub(super) fn with_max_files(max_files: usize) -> Holding {
        Holding {
            max_files: max_files.min(HOLD_FILES),
            kept: VecDeque::new(),
            next: 0,
            in_memory: 0,
            files: 0,
            spill: None,
        }
    }

    /// As many spool files as a quarter of the descriptors left now allows, once a
    /// pool of `workers` has taken [`DESCRIPTORS_PER_WORKER`] each.
    pub(super) fn for_this_process(workers: usize) -> Holding {
        let left = super::super::sys::descriptors_left()
            .saturating_sub(workers.saturating_mul(DESCRIPTORS_PER_WORKER));
        Holding::with_max_files(left / 4)
    }

    /// Result `index` waits for its turn: it keeps its output where it is within the
    /// bounds, else the output moves into the spill file. Should the spill file fail
    /// (a full disk), the output stays where it is.
    pub(super) fn hold(&mut self, index: usize, result: &mut Result<Outcome, Error>) {
        let Some(k) = index.checked_sub(self.next) else {
            return;
        };
        let (memory, files) = footprint(result);
        if memory == 0 && files == 0 {
            return;
        }
        let fits =
            self.in_memory + memory <= HOLD_IN_MEMORY && self.files + files <= self.max_files;
        let (memory, files) = if fits {
            (memory, files)
        } else {
            if self.spill.is_none() {
                self.spill = SpillFile::new().ok();
            }
            if let Some(spill) = &self.spill {
                for_each_capture(result, |c| {
                    let _ = c.spill_into(spill);
                });
            }
            footprint(result)
        };
        if memory > 0 || files > 0 {
            if k >= self.kept.len() {
                self.kept.resize(k + 1, (0, 0));
            }
            self.in_memory += memory;
            self.files += files;
            self.kept[k] = (memory, files);
        }
    }

    /// Result `index` is printed (or given up): what it kept is free again. Called
    /// for every result, in input order.
    pub(super) fn printed(&mut self, index: usize) {
        if index != self.next {
            return;
        }
        self.next += 1;
        if let Some((memory, files)) = self.kept.pop_front() {
            self.in_memory -= memory;
            self.files -= files;
        }
    }
}

/// Calls `f` with each captured output of a result.
fn for_each_capture(result: &mut Result<Outcome, Error>, mut f: impl FnMut(&mut Captured)) {
    match result {
        Ok(Ok(out)) => {
            f(&mut out.text);
            f(&mut out.stderr);
        }
        Ok(Err(Failure::Failed { stdout, stderr, .. })) => {
            f(stdout);
            f(stderr);
        }
        _ => {}
    }
}

/// Bytes in memory and spool files of their own that a result's outputs hold.
fn footprint(result: &mut Result<Outcome, Error>) -> (u64, usize) {
    let mut memory = 0;
    let mut files = 0;
    for_each_capture(result, |c| match c.as_bytes() {
        Some(bytes) => memory += bytes.len() as u64,
        None if !c.is_empty() && !c.is_spilled() => files += 1,
        None => {}
    });
    (memory, files)
}

#[cfg(test)]
mod tests {
    use super::super::super::tasks::Output;
    use super::*;

    fn out(bytes: usize) -> Result<Outcome, Error> {
        Ok(Ok(Output {
            text: Captured::from_bytes(vec![b'x'; bytes]),
            stderr: Captured::default(),
            json: false,
            pid: 0,
            slot: 0,
        }))
    }

    fn spilled(r: &Result<Outcome, Error>) -> bool {
        matches!(r, Ok(Ok(o)) if o.text.is_spilled())
    }

    #[test]
    fn waiting_outputs_past_the_budget_move_into_the_spill_file_and_printing_frees_it() {
        let mut h = Holding::default();
        // Input 0 runs long; 1..=40 wait, 1 MiB each.
        let mut waiting: Vec<_> = (1..=40)
            .map(|i| {
                let mut r = out(1 << 20);
                h.hold(i, &mut r);
                r
            })
            .collect();
        assert!(h.in_memory <= HOLD_IN_MEMORY);
        assert_eq!(waiting.iter().filter(|r| spilled(r)).count(), 40 - 16);
        for (i, r) in waiting.iter().enumerate() {
            let Ok(Ok(o)) = r else { unreachable!() };
            assert_eq!(
                o.text.to_vec().unwrap(),
                vec![b'x'; 1 << 20],
                "input {}",
                i + 1
            );
        }
        for i in 0..=40 {
            h.printed(i);
        }
        assert_eq!((h.in_memory, h.files, h.kept.len()), (0, 0, 0));
        // Room again: the next one that waits stays in memory.
        let mut r = out(10);
        h.hold(42, &mut r);
        assert!(!spilled(&r));
        waiting.clear();
    }
}
