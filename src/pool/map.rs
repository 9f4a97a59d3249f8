//! Many inputs at once: `map`, `starmap`, `map_async` (every input submitted now, in
//! chunks) and the lazy `imap`, `imap_unordered` and `imap_reports`.

use serde::{de::DeserializeOwned, Serialize};
use supervisor_worker::codec::{self, CodecError, BATCH_BYTES};
use supervisor_worker::registry::{self, RegistryError};
use supervisor_worker::Call;

use super::iter::{self, Feed};
use super::job::{Chunk, Delivery, JobMeta, Unit};
use super::{resolve, wake, Imap, MapHandle, Pool, Reports};

use crate::error::{Error, ErrorKind};
use crate::sync::shipped;

impl Pool {
    /// Runs `task` on every input; one result per input, in input order. Chunk size
    /// chosen by [`Pool::auto_chunksize`].
    pub fn map<F, M>(
        &self,
        task: F,
        inputs: impl IntoIterator<Item = F::Arg>,
    ) -> Vec<Result<F::Out, Error>>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
        F::Out: DeserializeOwned,
    {
        self.map_async(task, inputs).wait()
    }

    /// [`Pool::map`] with an explicit chunk size.
    pub fn map_chunked<F, M>(
        &self,
        task: F,
        inputs: impl IntoIterator<Item = F::Arg>,
        chunksize: usize,
    ) -> Vec<Result<F::Out, Error>>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
        F::Out: DeserializeOwned,
    {
        self.map_async_chunked(task, inputs, chunksize).wait()
    }

    /// Python's `starmap`: a task with several parameters over tuples of arguments.
    /// (In Rust this is [`Pool::map`]: a multi-parameter task takes a tuple.)
    pub fn starmap<F, M>(
        &self,
        task: F,
        inputs: impl IntoIterator<Item = F::Arg>,
    ) -> Vec<Result<F::Out, Error>>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
        F::Out: DeserializeOwned,
    {
        self.map(task, inputs)
    }

    /// Submits every input now and returns at once; [`MapHandle::wait`] collects.
    pub fn map_async<F, M>(
        &self,
        task: F,
        inputs: impl IntoIterator<Item = F::Arg>,
    ) -> MapHandle<F::Out>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
        F::Out: DeserializeOwned,
    {
        let inputs = inputs.into_iter();
        match inputs.size_hint() {
            // The length is known: no need to hold every input first.
            (low, Some(high)) if low == high => {
                let chunksize = self.auto_chunksize(low);
                self.map_async_chunked(task, inputs, chunksize)
            }
            _ => {
                let inputs: Vec<F::Arg> = inputs.collect();
                let chunksize = self.auto_chunksize(inputs.len());
                self.map_async_chunked(task, inputs, chunksize)
            }
        }
    }

    /// [`Pool::map_async`] with an explicit chunk size.
    pub fn map_async_chunked<F, M>(
        &self,
        _task: F,
        inputs: impl IntoIterator<Item = F::Arg>,
        chunksize: usize,
    ) -> MapHandle<F::Out>
    where
        F: Call<M> + 'static,
        F::Arg: Serialize,
        F::Out: DeserializeOwned,
    {
        let (tx, rx) = wake::channel();
        let stream = self.shared.next_id();
        let name = match resolve::<F>() {
            Ok(name) => name,
            Err(e) => {
                // Every input fails alike; nothing is sent.
                let items: Vec<_> = inputs
                    .into_iter()
                    .enumerate()
                    .map(|(index, _)| (index, Err(iter::same_error(&e)), JobMeta::default()))
                    .collect();
                let len = items.len();
                tx.send(Delivery::Items(items));
                return MapHandle::new("?", len, rx);
            }
        };
        // A unit holds at most `MAX_CALLS` calls (see `supervisor_worker::progress`).
        let chunksize = chunksize.clamp(1, supervisor_worker::progress::MAX_CALLS as usize);
        let new_chunk = |first_index: usize| {
            let first_id = self.shared.next_ids(chunksize);
            Chunk::new(name, first_id, first_index, stream, tx.clone())
        };
        let submit = |chunk: Option<Chunk>| {
            if let Some(chunk) = chunk {
                self.shared.submit(vec![Unit::chunk(chunk)]);
            }
        };
        let mut inputs = inputs.into_iter();
        let mut len = 0;
        loop {
            // One chunk's inputs are taken and encoded under one collection of the
            // handles they ship, not one per input (that cost a third of the caller's
            // time on tiny tasks). What the input iterator itself serialises on this
            // thread meanwhile is kept with the chunk too: kept longer, never shorter.
            let mut chunk: Option<Chunk> = None;
            let (filled, shipped) = shipped::collecting(|| {
                for input in inputs.by_ref() {
                    let index = len;
                    len += 1;
                    let current = chunk.get_or_insert_with(|| new_chunk(index));
                    let start = current.data.len();
                    let encoded =
                        codec::encode_value_append(&input, &mut current.data).and_then(|n| {
                            // A chunk records each argument's length in 32 bits.
                            u32::try_from(n).map_err(|_| {
                                current.data.truncate(start);
                                CodecError::TooLong {
                                    type_name: std::any::type_name::<F::Arg>(),
                                    len: n,
                                }
                            })
                        });
                    match encoded {
                        Ok(n) => {
                            current.lens.push(n);
                            if current.len() == chunksize || current.data.len() > BATCH_BYTES {
                                return Filled::Full;
                            }
                        }
                        Err(source) => return Filled::Failed(index, source),
                    }
                }
                Filled::Ended
            });
            if let Some(current) = chunk.as_mut() {
                current.shipped.add(shipped);
            }
            match filled {
                // Submitted at once: workers start while the rest is encoded.
                Filled::Full => submit(chunk),
                Filled::Ended => {
                    submit(chunk);
                    break;
                }
                Filled::Failed(index, source) => {
                    // Chunks hold consecutive inputs: close this one, fail the input.
                    submit(chunk.filter(|c| c.len() > 0));
                    let err = ErrorKind::EncodeArgument {
                        task: name.to_string(),
                        source,
                    }
                    .into();
                    tx.send(Delivery::Items(vec![(index, Err(err), JobMeta::default())]));
                }
            }
        }
        MapHandle::new(name, len, rx)
    }

    /// Lazily runs `task` over `inputs`, yielding results in input order, one task per
    /// input. Memory stays bounded for endless inputs (see [`PoolBuilder::read_ahead`]);
    /// behind a slow task the workers go on with the inputs after it, and their
    /// results wait, encoded, for their turn (see [`PoolBuilder::max_held`] and
    /// [`PoolBuilder::hold_in_memory`]).
    ///
    /// [`PoolBuilder::read_ahead`]: super::PoolBuilder::read_ahead
    /// [`PoolBuilder::max_held`]: super::PoolBuilder::max_held
    /// [`PoolBuilder::hold_in_memory`]: super::PoolBuilder::hold_in_memory
    pub fn imap<F, M, I>(&self, task: F, inputs: I) -> Imap<F::Out, I::IntoIter>
    where
        F: Call<M> + 'static,
        I: IntoIterator<Item = F::Arg>,
        F::Arg: Serialize,
    {
        self.imap_with(task, inputs, 1, true)
    }

    /// [`Pool::imap`] yielding results as they finish.
    pub fn imap_unordered<F, M, I>(&self, task: F, inputs: I) -> Imap<F::Out, I::IntoIter>
    where
        F: Call<M> + 'static,
        I: IntoIterator<Item = F::Arg>,
        F::Arg: Serialize,
    {
        self.imap_with(task, inputs, 1, false)
    }

    /// `imap` (ordered) or `imap_unordered` with an explicit chunk size.
    pub fn imap_with<F, M, I>(
        &self,
        _task: F,
        inputs: I,
        chunksize: usize,
        ordered: bool,
    ) -> Imap<F::Out, I::IntoIter>
    where
        F: Call<M> + 'static,
        I: IntoIterator<Item = F::Arg>,
        F::Arg: Serialize,
    {
        Imap(self.feed(resolve::<F>(), inputs.into_iter(), chunksize, ordered))
    }

    /// Runs the task registered under `name` over `inputs` (decoded as `A`, results as
    /// `R`), yielding each result with where and how it ran. For callers that pick tasks
    /// by name, like the CLI.
    pub fn imap_reports<A, R, I>(
        &self,
        name: &str,
        inputs: I,
        chunksize: usize,
        ordered: bool,
    ) -> Reports<R, I::IntoIter>
    where
        I: IntoIterator<Item = A>,
        A: Serialize,
    {
        let task = registry::by_name(name).map(|e| e.name);
        Reports::new(self.feed(task, inputs.into_iter(), chunksize, ordered))
    }

    fn feed<R, I>(
        &self,
        task: Result<&'static str, RegistryError>,
        inputs: I,
        chunksize: usize,
        ordered: bool,
    ) -> Feed<R, I>
    where
        I: Iterator,
        I::Item: Serialize,
    {
        Feed::new(
            self.shared.clone(),
            task,
            inputs,
            chunksize,
            iter::Bounds {
                read_ahead: self.read_ahead,
                max_held: self.max_held,
                hold_in_memory: self.hold_in_memory,
            },
            ordered,
        )
    }
}

/// Why [`Pool::map_async_chunked`] stopped filling a chunk.
enum Filled {
    /// It holds its calls (or its bytes): submit it, go on.
    Full,
    /// The inputs ended.
    Ended,
    /// This input could not be encoded.
    Failed(usize, CodecError),
}
