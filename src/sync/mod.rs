//! Queue, Pipe, shared memory, Lock, Event and Semaphore across processes.
//!
//! Every object is one shared region (`region/`): a memfd mapped in each process
//! that holds it, with a robust process-shared mutex and a table of the processes
//! holding it. Handles serialise (serde) as a reference another process of the same
//! user opens through `/proc/<pid>/fd/<n>`, so they can be passed to tasks.

mod event;
pub(crate) mod fault;
mod lock;
mod pipe;
mod queue;
pub(crate) mod region;
mod ring;
mod semaphore;
pub(crate) mod shipped;
mod shm;

pub use event::Event;
pub use lock::{Acquired, Lock, LockGuard};
pub use pipe::{Pipe, PipeEnds};
pub use queue::{Queue, QueueBuilder, DEFAULT_QUEUE_BYTES};
pub use semaphore::Semaphore;
pub use shm::{Plain, SharedMemory, SharedSlice};

/// Makes a handle `Send` but not `Sync`: an [`Event`], [`Semaphore`] or [`Queue`] says
/// `PeerClosed` when no *other handle* can end a wait, and one handle shared by
/// reference between threads (`Arc<Queue<T>>`, `&queue` in a scoped thread) would be
/// one holder, so a lone waiter in one thread failed although another thread was about
/// to put. The compiler refuses the sharing instead; its note names this type: give
/// each thread a `clone()` (cheap: clones share one mapping).
#[derive(Clone, Copy, Default)]
pub(crate) struct CloneForEachThread(std::marker::PhantomData<std::cell::Cell<()>>);
