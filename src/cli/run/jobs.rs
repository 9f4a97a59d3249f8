//! The tasks of a run: one [`Job`] per input record, and what the run keeps of each
//! input ([`Pending`]) until its result is printed.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

use super::super::joblog;
use super::super::replace::{Fill, Template};
use super::super::sources::{Record, Records};
use super::super::tasks::{Job, Outcome, Stream};

/// Inputs read ahead of the output, per worker: enough for the pool to merge tiny
/// tasks into messages of a few hundred calls (the pool never sends work ahead of a
/// worker's running task, so this changes no task's start or timeout).
pub(super) const READ_AHEAD_PER_WORKER: usize = 1024;

/// Command mode's read-ahead per worker: a command takes a millisecond at least, so a
/// few dozen per message is plenty, and results waiting for their turn (each up to
/// [`super::super::tasks::command::INLINE_LIMIT`] per stream in memory, or a spool
/// descriptor) stay bounded: 64 x 2 x 64 KiB = 8 MiB per worker at worst.
pub(super) const COMMAND_READ_AHEAD_PER_WORKER: usize = 64;

/// What [`jobs`] fills in as it reads, and what it makes each job of.
pub(super) struct Feed {
    /// The last input's number read.
    pub read: Rc<std::cell::Cell<u64>>,
    /// The same, for the pool's `--halt` check.
    pub read_total: Arc<AtomicU64>,
    /// Each submitted input, by the job's position, until its result is printed.
    pub inputs: Rc<RefCell<Inputs>>,
    /// Non-zero once the run stops: nothing more is read.
    pub stop: Arc<AtomicI32>,
    pub template: Option<Template>,
    /// The error that ended the input early, if one did.
    pub read_error: Rc<RefCell<Option<std::io::Error>>>,
    /// Set once the input has no more records (its end, or a read error): a run
    /// stopped before then did not read all of it.
    pub ended: Rc<std::cell::Cell<bool>>,
    /// `--resume-failed`: failed tasks run again too.
    pub failed_too: bool,
    /// `--resume`: the job log read.
    pub resume: Option<joblog::Resume>,
    /// `--tag` with `--line-buffer`: each line is tagged by the worker.
    pub tag_lines: bool,
    /// `--arg` (built-in tasks).
    pub task_args: BTreeMap<String, String>,
    pub output_stream: Stream,
    /// `--line-buffer`'s lock file.
    pub lock_path: Option<serde_bytes::ByteBuf>,
}

/// A record and its position in the input (0-based).
type Numbered = (usize, Record);

/// The input's records without those `--resume` skips, and a look-ahead that passes
/// over skipped ones while the input has them at hand.
///
/// The pool sends what it has read only before a read that would wait (it asks
/// [`Skipping::ready`]): a skip that went on to read the next record would wait inside
/// that read while the records read before it sat unsent, on idle workers, until more
/// input came (`--resume` over a pipe that stalls right after lines the log lists).
pub(super) struct Skipping {
    records: Box<dyn Iterator<Item = Numbered>>,
    /// A record the look-ahead read that runs: the next one given.
    taken: Option<Numbered>,
    /// The records have ended (the look-ahead saw their end).
    done: bool,
    /// Records read from the input, the skipped ones too.
    seen: u64,
    resume: Option<joblog::Resume>,
    failed_too: bool,
}

impl Skipping {
    /// Records read from the input so far, skipped ones included.
    pub(super) fn seen(&self) -> u64 {
        self.seen
    }

    fn runs(&mut self, position: usize) -> bool {
        self.seen = self.seen.max(position as u64 + 1);
        self.resume
            .as_ref()
            .is_none_or(|r| r.runs(position as u64 + 1, self.failed_too))
    }

    fn next(&mut self) -> Option<Numbered> {
        if let Some(taken) = self.taken.take() {
            return Some(taken);
        }
        while !self.done {
            match self.records.next() {
                Some(n) if self.runs(n.0) => return Some(n),
                Some(_) => {}
                None => self.done = true,
            }
        }
        None
    }

    /// Whether the next record that runs (or the end) can be had without waiting,
    /// `input_ready` saying whether the input's next record can: the skipped records
    /// at hand are read here, so the next read is not one that waits.
    pub(super) fn ready(&mut self, input_ready: &mut dyn FnMut() -> bool) -> bool {
        if self.resume.is_none() {
            // Nothing is skipped: the input's own readiness, nothing read ahead.
            return self.taken.is_some() || self.done || input_ready();
        }
        while self.taken.is_none() && !self.done {
            if !input_ready() {
                return false;
            }
            match self.records.next() {
                Some(n) if self.runs(n.0) => self.taken = Some(n),
                Some(_) => {}
                None => self.done = true,
            }
        }
        true
    }
}

/// The jobs of `records`, read as the pool asks for them, and their [`Skipping`]
/// (whose `ready` is the input's readiness the pool is to look at).
pub(super) fn jobs(
    records: Records,
    feed: Feed,
) -> (impl Iterator<Item = Job>, Rc<RefCell<Skipping>>) {
    let Feed {
        read,
        read_total,
        inputs,
        stop,
        template,
        read_error,
        ended,
        failed_too,
        resume,
        tag_lines,
        task_args,
        output_stream,
        lock_path,
    } = feed;
    let mut position = 0usize;
    let numbered = records
        .map_while(move |record| match record {
            Ok(record) => Some(record),
            Err(e) => {
                *read_error.borrow_mut() = Some(e);
                None
            }
        })
        // Asked for a record after the last one; the records also end when the run
        // stops (a read waiting on a pipe gives up), which is no end of the input.
        .chain(std::iter::from_fn({
            let stop = stop.clone();
            move || {
                if stop.load(Ordering::SeqCst) == 0 {
                    ended.set(true);
                }
                None
            }
        }))
        .take_while(move |_| stop.load(Ordering::SeqCst) == 0)
        .enumerate();
    let skipping = Rc::new(RefCell::new(Skipping {
        records: Box::new(numbered),
        taken: None,
        done: false,
        seen: 0,
        resume,
        failed_too,
    }));
    let from = skipping.clone();
    let jobs = std::iter::from_fn(move || from.borrow_mut().next()).map(move |(i, record)| {
        let seq = i as u64 + 1;
        read.set(seq);
        read_total.store(seq, Ordering::SeqCst);
        let fill = Fill {
            fields: record.fields(),
            whole: &record.whole,
            seq,
            slot: None,
        };
        let (argv, slots) = template
            .as_ref()
            .map(|t| t.argv_and_slots(&fill))
            .unwrap_or_default();
        let argv: Vec<serde_bytes::ByteBuf> =
            argv.into_iter().map(serde_bytes::ByteBuf::from).collect();
        // With `{%}` the command line is made again once the slot is known.
        let with_slot = template.as_ref().is_some_and(|t| t.has_slot());
        let command = template
            .as_ref()
            .filter(|_| !with_slot)
            .map(|t| t.display(&fill));
        let tag = if tag_lines {
            record.whole.clone()
        } else {
            Vec::new()
        };
        let fields = if with_slot {
            record.fields().to_vec()
        } else {
            Vec::new()
        };
        // Built-in tasks take text; command mode has the bytes in argv.
        let text = if template.is_some() {
            String::new()
        } else {
            String::from_utf8_lossy(&record.whole).into_owned()
        };
        let (input, values) = record.into_parts();
        inputs.borrow_mut().insert(
            position,
            Pending {
                seq,
                command,
                fields,
                values,
                input,
            },
        );
        position += 1;
        Job {
            argv,
            line: text,
            seq,
            args: task_args.clone(),
            slots,
            stream: output_stream,
            tag: tag_lines.then(|| serde_bytes::ByteBuf::from(tag.clone())),
            lock: lock_path.clone(),
        }
    });
    (jobs, skipping)
}

/// `--line-buffer`'s lock file: a file with no name (`O_TMPFILE`; where the file system
/// has none, named and unlinked at once), so nothing is left whatever ends the run.
/// Workers open it through `/proc/<pid>/fd/<n>` of this process.
pub(super) struct LineLock {
    _file: std::fs::File,
    pub path: std::path::PathBuf,
}

impl LineLock {
    pub(super) fn create() -> std::io::Result<LineLock> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::env::temp_dir();
        let unnamed = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(&dir);
        let file = match unnamed {
            Ok(file) => file,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let path = dir.join(format!(".supervisor-lines-{}-{nanos}", std::process::id()));
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                std::fs::remove_file(&path)?;
                file
            }
            Err(e) => return Err(e),
        };
        let path = format!("/proc/{}/fd/{}", std::process::id(), file.as_raw_fd()).into();
        Ok(LineLock { _file: file, path })
    }
}

/// What the run keeps of a submitted input until its result is printed.
#[derive(Default)]
pub(super) struct Pending {
    /// The input's number (its line in the input): it differs from the job's
    /// position + 1 under `--resume`, which skips inputs, and the job log, the records
    /// and later resumes know a task by it.
    pub seq: u64,
    /// The whole input (`{}`).
    pub input: Vec<u8>,
    /// A value per input source (for `--results`), when they are not the input alone
    /// (`None`: one source, no `--colsep`).
    pub values: Option<Vec<Vec<u8>>>,
    /// The command line (command mode), as the job log names it; `None` with `{%}`
    /// until the slot is known (see [`Pending::command_line`]).
    pub command: Option<Vec<u8>>,
    /// The record's fields, kept only when the command has `{%}`.
    pub fields: Vec<Vec<u8>>,
}

impl Pending {
    /// The command line task `seq` ran, as the job logs name it: with `{%}`, made now
    /// with the slot its result reports.
    pub(super) fn command_line(
        &self,
        template: Option<&Template>,
        seq: u64,
        result: &Result<Outcome, supervisor::Error>,
    ) -> Option<Vec<u8>> {
        if self.command.is_some() {
            return self.command.clone();
        }
        let template = template?;
        let slot = match result {
            Ok(Ok(out)) => out.slot,
            Ok(Err(super::super::tasks::Failure::Failed { slot, .. })) => *slot,
            _ => 0,
        };
        Some(template.display(&Fill {
            fields: &self.fields,
            whole: &self.input,
            seq,
            slot: (slot > 0).then_some(u64::from(slot)),
        }))
    }
}

/// The submitted inputs by the job's position (0-based, in submission order), until
/// their results are printed: a ring from the oldest one not printed, so a record costs
/// no hashing (results are printed in input order, or with `--unordered` within the
/// read-ahead of it).
#[derive(Default)]
pub(super) struct Inputs {
    /// The position of `ring[0]`.
    first: usize,
    ring: VecDeque<Option<Pending>>,
}

impl Inputs {
    /// Keeps the input of the job at `position` (positions come in increasing order).
    pub(super) fn insert(&mut self, position: usize, pending: Pending) {
        let Some(at) = position.checked_sub(self.first) else {
            return;
        };
        if self.ring.is_empty() && at > 0 {
            self.first = position;
        }
        let at = position - self.first;
        while self.ring.len() < at {
            self.ring.push_back(None);
        }
        if at < self.ring.len() {
            self.ring[at] = Some(pending);
        } else {
            self.ring.push_back(Some(pending));
        }
    }

    /// The input of the job at `position`, if it is kept.
    pub(super) fn get(&self, position: usize) -> Option<&Pending> {
        self.ring.get(position.checked_sub(self.first)?)?.as_ref()
    }

    /// Takes the input of the job at `position` (its result is printed).
    pub(super) fn remove(&mut self, position: usize) -> Option<Pending> {
        let at = position.checked_sub(self.first)?;
        let pending = self.ring.get_mut(at)?.take();
        while self.ring.front().is_some_and(Option::is_none) {
            self.ring.pop_front();
            self.first += 1;
        }
        pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(seq: u64) -> Pending {
        Pending {
            seq,
            ..Pending::default()
        }
    }

    /// Taken in any order, each position gives back its own input once, and the ring
    /// shrinks from the front as the oldest ones go.
    #[test]
    fn inputs_by_position_in_any_order() {
        let mut inputs = Inputs::default();
        for p in 0..5 {
            inputs.insert(p, pending(p as u64 * 10));
        }
        assert_eq!(inputs.remove(2).map(|p| p.seq), Some(20));
        assert!(inputs.remove(2).is_none());
        assert_eq!(inputs.get(3).map(|p| p.seq), Some(30));
        assert_eq!(inputs.remove(0).map(|p| p.seq), Some(0));
        assert_eq!(inputs.ring.len(), 4);
        assert_eq!(inputs.remove(1).map(|p| p.seq), Some(10));
        assert_eq!(inputs.ring.len(), 2);
        inputs.insert(5, pending(50));
        assert_eq!(inputs.remove(4).map(|p| p.seq), Some(40));
        assert_eq!(inputs.remove(3).map(|p| p.seq), Some(30));
        assert_eq!(inputs.remove(5).map(|p| p.seq), Some(50));
        assert!(inputs.ring.is_empty());
        assert!(inputs.get(0).is_none() && inputs.remove(7).is_none());
    }
}
