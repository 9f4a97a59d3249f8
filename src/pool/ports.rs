//! What the dispatcher asks of the world: to start a worker, and of each worker to take
//! a message, a signal or a look at its progress page. The dispatcher decides; these
//! traits carry the decisions out. `live.rs` implements them with real processes and
//! sockets; the dispatcher's tests with simulated workers on a virtual clock, so the
//! scheduling policy is tested without a process or a sleep.

use std::sync::Arc;

use supervisor_worker::progress::Progress;
use supervisor_worker::protocol::ToChild;

use super::job::{HandleState, Unit};
use super::running::Clocks;
use crate::error::Error;
use crate::launch::Spec;
use crate::reaper::Exit;
use crate::StartMethod;

/// Starting workers, and the time.
pub(crate) trait Io {
    /// What a starter hands over once a worker process runs.
    type Started;
    /// A started worker as the dispatcher holds it.
    type Link: WorkerLink;

    /// Starts a worker for `seat` elsewhere; its outcome comes back as
    /// `Event::Started`. An error: nothing could be started (no thread).
    fn start(&mut self, seat: usize, spec: Spec) -> std::io::Result<()>;

    /// Makes a started worker worker `id`: who reads its messages, who hears of its
    /// exit, its progress page. An error: it cannot be used (it has been killed, and
    /// its exit is reported as any other).
    fn attach(&mut self, id: u64, started: Self::Started) -> Result<Self::Link, Error>;

    /// The clocks, read once for a decision.
    fn clocks(&self) -> Clocks;

    /// Notes on the start method for `stats()` (a lost zygote).
    fn notes(&self, method: StartMethod) -> Vec<String>;

    /// Resident memory (KiB) of each of these workers with all its descendants, in the
    /// order given (`None`: gone). One look at the system for all of them.
    fn tree_rss_kib(&mut self, pids: &[u32]) -> Vec<Option<u64>>;
}

/// One worker as the dispatcher holds it.
pub(crate) trait WorkerLink {
    fn pid(&self) -> u32;
    /// Where it claims each call before running it.
    fn page(&self) -> &Progress;
    /// Whether work may still be sent (false once closed or a send failed).
    fn is_open(&self) -> bool;
    /// No more work: the worker exits once it has finished what it has.
    fn close(&mut self);
    /// Sends unit `seq` (whose page has been begun); false if the link is gone (it is
    /// then closed).
    fn send_unit(&mut self, seq: u64, unit: &Unit) -> bool;
    /// Sends the initializer's call; false if the link is gone (it is then closed).
    fn send_init(&mut self, request: &ToChild) -> bool;
    /// Asks it to stop (SIGTERM).
    fn terminate(&self);
    /// Kills its whole process group (SIGKILL), whatever is left of it.
    fn kill(&self);
    /// Kills it, its process group and every descendant of it (SIGKILL), at once.
    fn kill_tree(&self);
    /// Its own resident memory now, in KiB (`None`: gone).
    fn rss_kib(&self) -> Option<u64>;
    /// Asks whatever is left of its process group to stop (SIGTERM), after its exit too.
    fn terminate_group(&self);
    /// How it ended, once it has.
    fn exit(&self) -> Option<Exit>;
    /// Whether anything of its process group still runs.
    fn group_runs(&self) -> bool;
    /// It has exited: what it sent is still read, then its link ends (as if closed),
    /// whoever else holds the channel. False if that cannot be arranged.
    fn end_input(&self) -> bool;
    /// Whether anyone reads its messages (false: nobody ever will).
    fn reading(&self) -> bool;
    /// Tells its reader whether a message (or the end) is expected.
    fn expect(&self, expected: bool);
    /// The caller of an `apply` that went to this worker, on this very thread, may read
    /// the reply itself.
    fn lend_to(&self, caller: &Arc<HandleState>);
}
