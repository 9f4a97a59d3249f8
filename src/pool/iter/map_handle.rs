//! [`MapHandle`]: the results of `map_async`, decoded in input order as they arrive,
//! waited for or awaited.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;

use super::{decode, decode_bytes};
use crate::error::{Error, ErrorKind};
use crate::pool::job::{Delivery, JobResult, PackedResults};
use crate::pool::wake;

/// All results of a `map_async`, in input order, once every task has finished.
///
/// Also a [`Future`] of the same results, for async code: `pool.map_async(f, xs).await`.
pub struct MapHandle<R> {
    task: &'static str,
    len: usize,
    rx: wake::Receiver<Delivery>,
    /// Results decoded so far, in input order (each decoded as soon as everything
    /// before it is in, so decoding overlaps the work still running).
    out: Vec<Result<R, Error>>,
    /// Arrived ahead of their turn, still encoded, by input position.
    packed: BTreeMap<usize, PackedResults>,
    items: BTreeMap<usize, (JobResult, u32)>,
    received: usize,
}

impl<R: DeserializeOwned> MapHandle<R> {
    pub(crate) fn new(
        task: &'static str,
        len: usize,
        rx: wake::Receiver<Delivery>,
    ) -> MapHandle<R> {
        MapHandle {
            task,
            len,
            rx,
            out: Vec::new(),
            packed: BTreeMap::new(),
            items: BTreeMap::new(),
            received: 0,
        }
    }

    /// Whether every task has finished.
    pub fn is_ready(&mut self) -> bool {
        while let Ok(delivery) = self.rx.try_recv() {
            self.store(delivery);
        }
        self.received >= self.len
    }

    fn store(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Items(items) => {
                self.received += items.len();
                for (index, result, meta) in items {
                    if index >= self.out.len() {
                        self.items.insert(index, (result, meta.pid));
                    }
                }
            }
            Delivery::Packed(packed) => {
                self.received += packed.lens.len();
                if packed.first_index >= self.out.len() {
                    self.packed.insert(packed.first_index, packed);
                }
            }
        }
        self.advance();
    }

    /// Decodes whatever is next in input order.
    fn advance(&mut self) {
        let task = self.task;
        if self.out.capacity() == 0 {
            self.out.reserve_exact(self.len);
        }
        loop {
            let i = self.out.len();
            if let Some(chunk) = self.packed.remove(&i) {
                let out = &mut self.out;
                let pid = chunk.meta.pid;
                chunk.for_each(|_, r, _| {
                    out.push(r.and_then(|bytes| decode_bytes(task, bytes, pid)))
                });
            } else if let Some((result, pid)) = self.items.remove(&i) {
                self.out.push(decode(task, result, pid));
            } else {
                break;
            }
        }
    }

    /// Waits for every task; one result per input, in input order.
    pub fn wait(mut self) -> Vec<Result<R, Error>> {
        while self.received < self.len {
            match self.rx.recv() {
                Some(delivery) => self.store(delivery),
                // The pool stopped before the rest ran.
                None => break,
            }
        }
        self.finish()
    }

    /// Every result, once all have arrived (or nothing more will).
    fn finish(&mut self) -> Vec<Result<R, Error>> {
        while self.out.len() < self.len {
            self.advance();
            if self.out.len() < self.len {
                // Nothing will come for this position.
                self.out.push(Err(ErrorKind::Terminated {
                    task: self.task.to_string(),
                }
                .into()));
            }
        }
        self.out.truncate(self.len);
        std::mem::take(&mut self.out)
    }
}

// Nothing in it is pinned: results are moved in and out freely.
impl<R> Unpin for MapHandle<R> {}

impl<R: DeserializeOwned> Future for MapHandle<R> {
    type Output = Vec<Result<R, Error>>;

    /// Ready with what [`MapHandle::wait`] would return; never blocks (results are
    /// decoded as they arrive, on the polling thread).
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<Result<R, Error>>> {
        let this = self.get_mut();
        while this.received < this.len {
            match std::task::ready!(this.rx.poll_recv(cx)) {
                Some(delivery) => this.store(delivery),
                None => break,
            }
        }
        Poll::Ready(this.finish())
    }
}
