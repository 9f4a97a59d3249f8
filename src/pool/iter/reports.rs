//! [`Reports`]: the results of `imap_reports` with their records, and its callbacks
//! (input ready, waiting, arrival, hold), as an iterator or a [`ReportStream`].

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use serde::{de::DeserializeOwned, Serialize};

use super::{Arrived, Feed, OnHold, Ready, Waiting};
use crate::error::Error;
use crate::pool::job::JobMeta;
use crate::pool::pack::Packer;

/// One finished input of [`crate::Pool::imap_reports`]: its position, its result, and
/// where and how it ran.
#[derive(Debug)]
pub struct Report<R> {
    /// Position of the input (0-based).
    pub index: usize,
    /// The task's value or its typed error.
    pub result: Result<R, Error>,
    /// Worker pid, attempts, start time, duration.
    pub meta: JobMeta,
}

/// Results with their [`Report`]s, in input order or as they finish.
pub struct Reports<R, I: Iterator> {
    feed: Feed<R, I>,
    input_ready: Ready,
    waiting: Option<Waiting>,
    arrived: Option<Arrived<R>>,
    on_hold: Option<OnHold<R>>,
}

impl<R, I: Iterator> Reports<R, I> {
    pub(crate) fn new(mut feed: Feed<R, I>) -> Reports<R, I> {
        feed.decode_on_arrival = true;
        if feed.task_error.is_none() && feed.chunksize == 1 {
            feed.packer = Some(Packer::new(feed.task, feed.stream, feed.tx.clone()));
        }
        Reports {
            feed,
            input_ready: None,
            waiting: None,
            arrived: None,
            on_hold: None,
        }
    }

    /// Tells the iterator whether reading the next input would return at once (a line
    /// is buffered or the descriptor is readable). For a slow input (a pipe fed now and
    /// then, `tail -f`): what was read is submitted before a read that would wait, and
    /// while results are due the iterator waits for them (looking for input every
    /// 2 ms) instead of for the input. Without it, inputs are read in groups of
    /// `read_ahead`, which suits inputs that are all there.
    pub fn input_ready(mut self, ready: impl FnMut() -> bool + 'static) -> Self {
        self.input_ready = Some(Box::new(ready));
        self
    }

    /// Calls `waiting` each time the iterator is about to wait for a result that is
    /// not in (blocking; a [`ReportStream`] does not call it): a caller that buffers
    /// what [`Reports::on_arrival`] writes can flush it then, once per burst of results
    /// rather than once per result, and nothing stays buffered while the run waits.
    pub fn on_wait(mut self, waiting: impl FnMut() + 'static) -> Self {
        self.waiting = Some(Box::new(waiting));
        self
    }

    /// Calls `arrived` with each result (its input's index, the result, its record) as
    /// soon as it is in, before it waits for its turn in input order: a caller can act
    /// on a failure when it happens (stop the run, say) or log each end as it comes,
    /// rather than when the results before it have come.
    pub fn on_arrival(
        mut self,
        arrived: impl FnMut(usize, &Result<R, Error>, &JobMeta) + 'static,
    ) -> Self {
        self.arrived = Some(Box::new(arrived));
        self
    }

    /// Calls `hold` with each result (its input's index and the result) that must wait
    /// for its turn because an earlier input is still running, after
    /// [`Reports::on_arrival`]'s call and before it waits. Results are decoded as they
    /// arrive, so what they hold is in memory (or in descriptors) while they wait, up to
    /// [`crate::PoolBuilder::max_held`] of them behind a slow task: the caller may move
    /// it elsewhere here (the CLI moves a command's output into one spill file past a
    /// budget, see [`crate::Captured::spill_into`]). Without it, a waiting value that
    /// holds spooled command output (a descriptor) counts against the read-ahead, as a
    /// task in flight does, so descriptors stay bounded.
    pub fn on_hold(mut self, hold: impl FnMut(usize, &mut Result<R, Error>) + 'static) -> Self {
        self.on_hold = Some(Box::new(hold));
        self
    }

    /// The same results as a [`Stream`], for async code (see [`ReportStream`]).
    pub fn into_stream(self) -> ReportStream<R, I> {
        ReportStream(Box::new(self))
    }

    /// Whether `next` would return at once (a result is in, or the end is reached):
    /// lets a writer flush its output only when it is about to wait.
    pub fn ready(&mut self) -> bool {
        self.feed.ready()
    }
}

impl<R, I> Iterator for Reports<R, I>
where
    R: DeserializeOwned,
    I: Iterator,
    I::Item: Serialize,
{
    type Item = Report<R>;

    fn next(&mut self) -> Option<Report<R>> {
        match self.feed.next_report(
            &mut self.input_ready,
            self.waiting.as_mut(),
            self.arrived.as_mut(),
            self.on_hold.as_mut(),
            None,
        ) {
            Poll::Ready(report) => report,
            Poll::Pending => unreachable!("a blocking receive is always ready"),
        }
    }
}

/// [`Reports`] as a [`Stream`]: the same results in the same order, and while none is
/// in, `poll_next` returns `Pending` and the task is woken by the thread that receives
/// the next one. No executor thread is blocked waiting for a worker; the input
/// iterator, though, is read inside `poll_next` (at most `read_ahead` inputs ahead of
/// the results taken), so it should not block; with [`Reports::input_ready`], input is
/// looked at when the stream is polled, not every 2 ms. Dropped before the end, it
/// drops the inputs that have not started, as the iterator does. Not `Send` (the
/// `input_ready` closure need not be); [`ImapStream`](super::ImapStream) is.
pub struct ReportStream<R, I: Iterator>(Box<Reports<R, I>>);

impl<R, I> Stream for ReportStream<R, I>
where
    R: DeserializeOwned,
    I: Iterator,
    I::Item: Serialize,
{
    type Item = Report<R>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Report<R>>> {
        let reports = &mut *self.get_mut().0;
        reports.feed.next_report(
            &mut reports.input_ready,
            None,
            reports.arrived.as_mut(),
            reports.on_hold.as_mut(),
            Some(cx),
        )
    }
}
