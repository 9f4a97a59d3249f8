//! Queue, Pipe, shared memory, Lock, Event and Semaphore across processes.
//!
//! Every object is one shared region (`region.rs`): a memfd mapped in each process
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
mod shm;

pub use event::Event;
pub use lock::{Acquired, Lock, LockGuard};
pub use pipe::{Pipe, PipeEnds};
pub use queue::{Queue, QueueBuilder, DEFAULT_QUEUE_BYTES};
pub use semaphore::Semaphore;
pub use shm::{Plain, SharedMemory, SharedSlice};
