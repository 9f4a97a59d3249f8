//! `Queue<T>`: a multi-producer, multi-consumer queue shared by any processes.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};
use supervisor_worker::codec;

use super::region::{self, notify, Holder, Kind, Region, Waiter};
use super::ring::{Ring, RingState};
use crate::error::{Error, ErrorKind};

/// Default size of a queue's buffer: the encoded messages waiting in it.
pub const DEFAULT_QUEUE_BYTES: usize = 1 << 20;

fn tag<T>() -> u64 {
    region::type_tag(std::any::type_name::<T>())
}

fn repair(region: &Region) {
    ring_of(region).repair();
}

fn ring_of(region: &Region) -> Ring<'_> {
    let (data, size) = region.data();
    Ring::new(region.state::<RingState>(), data, size, Kind::Queue.name())
}

/// Builds a [`Queue`]: `Queue::builder().capacity(100).buffer_bytes(1 << 24).build()`.
#[must_use = "a builder does nothing until `build` is called"]
pub struct QueueBuilder<T> {
    capacity: Option<usize>,
    bytes: usize,
    item: PhantomData<fn(T) -> T>,
}

impl<T: Serialize + DeserializeOwned> QueueBuilder<T> {
    /// Most items in the queue at once; `put` waits for room beyond that. Default:
    /// no item limit (only the buffer's size). `0` means no limit, as Python's
    /// `Queue(maxsize=0)`.
    pub fn capacity(mut self, items: usize) -> Self {
        self.capacity = (items > 0).then_some(items);
        self
    }

    /// Size of the shared buffer that holds the encoded items waiting in the queue
    /// (default 1 MiB; rounded up to a multiple of 8, at least 4 KiB). An item must fit
    /// in it ([`ErrorKind::MessageTooLarge`]); `put` waits when it is full. Pages are
    /// only used once touched.
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.bytes = bytes;
        self
    }

    /// Creates the queue. A buffer over 64 TiB is [`ErrorKind::TooLarge`].
    pub fn build(self) -> Result<Queue<T>, Error> {
        let capacity = self.capacity.unwrap_or(0) as u64;
        // The largest size that still fits once rounded up: the error names it and the
        // size asked for, never the rounded one.
        let limit = region::max_data(size_of::<RingState>()) / 8 * 8;
        if self.bytes > limit {
            return Err(ErrorKind::TooLarge {
                kind: Kind::Queue.name(),
                requested: self.bytes as u64,
                limit: limit as u64,
            }
            .into());
        }
        let bytes = self.bytes.max(4096).next_multiple_of(8);
        let region = Region::create(
            Kind::Queue,
            tag::<T>(),
            size_of::<RingState>(),
            bytes,
            |r| {
                ring_of(r).set_capacity(capacity);
                Ok(())
            },
            repair,
        )?;
        Ok(Queue {
            att: Holder::attach(region, 0)?,
            item: PhantomData,
            _threads: Default::default(),
        })
    }
}

/// A queue of `T` shared by any number of processes: Python's `multiprocessing.Queue`,
/// typed, and safe against processes that die in the middle of using it.
///
/// Hand it to a task as (part of) its argument: the handle serialises as a reference
/// to the same queue, which the worker opens (no copy of the contents). Clones in one
/// process share one mapping.
///
/// - An item is delivered whole or not at all, to exactly one getter, also when a
///   putter or getter is killed mid-operation (see [`crate::architecture`]).
/// - A `get` on an empty queue (or a `put` on a full one) that no other handle can
///   end fails with [`ErrorKind::PeerClosed`] (every other holder dropped it) or
///   [`ErrorKind::PeerDied`] (the others died) instead of waiting forever, within about
///   100 ms of the last other holder going. Every handle is a holder: a clone held by
///   another thread of this process counts as another process does (so a queue is
///   `Send` but not `Sync`: see below). A handle
///   serialised in the last 10 s and not yet opened counts too (it is on its way to a
///   process).
/// - `*_timeout` calls return by their deadline whatever the other holders do, also
///   when one is stopped (SIGSTOP) or descheduled in the middle of an operation; `try_*`
///   calls wait at most about 1 ms for another holder to finish its copy. The calls
///   without a timeout wait as long as it takes.
/// - [`Queue::close`] ends the queue for everyone: puts fail, gets drain what is left
///   and then fail with [`ErrorKind::Closed`].
///
/// A handle is `Send` but not `Sync`: every handle is a holder, and one handle shared by
/// reference between threads would be one, so a lone waiter in one thread would fail
/// with `PeerClosed` although another thread was about to `put`. Give each thread a
/// `clone()` (clones share one mapping); sharing one by reference does not compile, and
/// the compiler's note names `CloneForEachThread`:
///
/// ```compile_fail,E0277
/// # fn main() -> Result<(), supervisor::Error> {
/// let obj = supervisor::Queue::<u64>::new()?;
/// std::thread::scope(|s| {
///     s.spawn(|| drop(&obj)); // `&Queue<u64>` cannot be sent: `Queue<u64>` is not `Sync`
/// });
/// # Ok(())
/// # }
/// ```
///
/// ```
/// # fn main() -> Result<(), supervisor::Error> {
/// let obj = supervisor::Queue::<u64>::new()?;
/// let theirs = obj.clone();
/// std::thread::spawn(move || drop(theirs)).join().unwrap();
/// # Ok(())
/// # }
/// ```
///
/// ```
/// use supervisor::{ErrorKind, Process, Queue};
///
/// /// Doubles what comes in until the input is closed; returns how many it did.
/// fn doubler((input, output): (Queue<u64>, Queue<u64>)) -> u64 {
///     let mut done = 0;
///     loop {
///         match input.get() {
///             Ok(x) => output.put(&(2 * x)).unwrap(),
///             Err(e) if matches!(e.kind(), ErrorKind::Closed { .. }) => return done,
///             Err(e) => panic!("{e}"),
///         }
///         done += 1;
///     }
/// }
/// supervisor::task!(doubler);
///
/// fn main() -> Result<(), supervisor::Error> {
///     supervisor::init();
///     let input = Queue::<u64>::new()?;
///     let output = Queue::<u64>::bounded(16)?;
///     // The handles travel in the argument; the child opens the same queues.
///     let mut child = Process::builder(doubler, (input.clone(), output.clone())).start()?;
///     for x in 1..=3 {
///         input.put(&x)?;
///     }
///     input.close()?; // the child's next `get` after these three says Closed
///     let mut doubled = vec![output.get()?, output.get()?, output.get()?];
///     doubled.sort();
///     assert_eq!(doubled, [2, 4, 6]);
///     assert_eq!(child.join()?, 3);
///     Ok(())
/// }
/// ```
///
/// At most 128 processes hold one object at once (one holding both ends of a pipe
/// counts twice): decoding a handle in one more fails with
/// [`ErrorKind::TooManyHolders`](crate::ErrorKind::TooManyHolders), until a holder
/// drops its handles or dies.
pub struct Queue<T> {
    att: Holder,
    item: PhantomData<fn(T) -> T>,
    _threads: super::CloneForEachThread,
}

region::serde_handle!(
    Queue<T>,
    Kind::Queue,
    tag::<T>(),
    RingState,
    repair,
    |att| Queue {
        att,
        item: PhantomData,
        _threads: Default::default()
    }
);

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            att: self.att.clone(),
            item: PhantomData,
            _threads: Default::default(),
        }
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// A queue with no item limit and a 1 MiB buffer.
    pub fn new() -> Result<Queue<T>, Error> {
        Queue::builder().build()
    }

    /// A queue of at most `capacity` items (`0`: no item limit, as Python's
    /// `maxsize=0`).
    pub fn bounded(capacity: usize) -> Result<Queue<T>, Error> {
        Queue::builder().capacity(capacity).build()
    }

    /// Builds a queue with options.
    pub fn builder() -> QueueBuilder<T> {
        QueueBuilder {
            capacity: None,
            bytes: DEFAULT_QUEUE_BYTES,
            item: PhantomData,
        }
    }

    /// Puts an item, waiting for room if the queue is full.
    pub fn put(&self, item: &T) -> Result<(), Error> {
        self.put_until(item, None).map(|_| ())
    }

    /// Puts an item, waiting at most `timeout` for room; false if there was none.
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<bool, Error> {
        self.put_until(item, Instant::now().checked_add(timeout))
    }

    /// Puts an item if there is room now; false if the queue is full.
    pub fn try_put(&self, item: &T) -> Result<bool, Error> {
        self.put_until(item, Some(Instant::now()))
    }

    fn put_until(&self, item: &T, deadline: Option<Instant>) -> Result<bool, Error> {
        let kind = Kind::Queue.name();
        let region = &self.att.region;
        let ring = ring_of(region);
        let bytes = ring.encode(item)?;
        ring.check_size(bytes.len())?;
        let s = ring.state;
        let waiter = Waiter {
            seq: &s.not_full,
            waiters: &s.putters,
            peer_role: 0,
            own_role: 0,
        };
        let done = region.block(waiter, deadline, || {
            if ring.is_closed() {
                return Err(ErrorKind::Closed { kind }.into());
            }
            Ok(ring.try_push(&bytes)?.then_some(()))
        })?;
        if done.is_some() {
            notify(&s.not_empty, &s.getters, false);
        }
        Ok(done.is_some())
    }

    /// Takes the oldest item, waiting as long as some other process could put one.
    pub fn get(&self) -> Result<T, Error> {
        match self.get_until(None)? {
            Some(item) => Ok(item),
            None => unreachable!("a get without a deadline returns an item or an error"),
        }
    }

    /// Takes the oldest item, waiting at most `timeout`; `None` if none came.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>, Error> {
        self.get_until(Instant::now().checked_add(timeout))
    }

    /// Takes the oldest item if there is one now.
    pub fn try_get(&self) -> Result<Option<T>, Error> {
        self.get_until(Some(Instant::now()))
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<Option<T>, Error> {
        let kind = Kind::Queue.name();
        let region = &self.att.region;
        let ring = ring_of(region);
        let s = ring.state;
        let waiter = Waiter {
            seq: &s.not_empty,
            waiters: &s.getters,
            peer_role: 0,
            own_role: 0,
        };
        let got = region.block(waiter, deadline, || match ring.try_pop()? {
            Some(bytes) => Ok(Some(bytes)),
            None if ring.is_closed() => Err(ErrorKind::Closed { kind }.into()),
            None => Ok(None),
        })?;
        let Some(bytes) = got else { return Ok(None) };
        notify(&s.not_full, &s.putters, false);
        codec::decode(&bytes)
            .map(Some)
            .map_err(|source| ErrorKind::DecodeMessage { kind, source }.into())
    }
}

impl<T> Queue<T> {
    /// Items in the queue. Approximate: other processes change it at any moment.
    pub fn len(&self) -> usize {
        ring_of(&self.att.region).len()
    }

    /// Whether the queue looks empty (approximate, like [`Queue::len`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The item limit, if there is one.
    pub fn capacity(&self) -> Option<usize> {
        ring_of(&self.att.region).capacity().map(|c| c as usize)
    }

    /// Closes the queue for every process: later puts fail with [`ErrorKind::Closed`];
    /// gets take what is left, then fail with [`ErrorKind::Closed`]. Waiters wake at
    /// once.
    pub fn close(&self) -> Result<(), Error> {
        let region = &self.att.region;
        let ring = ring_of(region);
        {
            let _guard = region.lock()?;
            ring.close();
        }
        notify(&ring.state.not_empty, &ring.state.getters, true);
        notify(&ring.state.not_full, &ring.state.putters, true);
        Ok(())
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        ring_of(&self.att.region).is_closed()
    }

    /// Handles sleeping in `get` right now, in any process (for tests that must act
    /// while a getter waits).
    #[doc(hidden)]
    pub fn waiting_getters(&self) -> u32 {
        ring_of(&self.att.region)
            .state
            .getters
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Handles sleeping in `put` right now, in any process (for tests that must act
    /// while a putter waits).
    #[doc(hidden)]
    pub fn waiting_putters(&self) -> u32 {
        ring_of(&self.att.region)
            .state
            .putters
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}
