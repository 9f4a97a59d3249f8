//! The dispatcher's hands with real processes: worker processes started on starter
//! threads, their links, reader threads and progress pages, signals to their process
//! groups. Nothing here decides anything.

use std::sync::{Arc, Weak};

use ipc_channel::ipc::IpcSender;
use supervisor_worker::arena::Outbox;
use supervisor_worker::progress::Progress;
use supervisor_worker::protocol::{send_frame, Frame, Link, TaskRequestRef, ToChild, ToChildRef};

use super::dispatcher::Dispatcher;
use super::event::Event;
use super::hub::{post_to, Hub};
use super::job::{HandleState, Unit};
use super::ports::{Io, WorkerLink};
use super::reader::{LinkReader, News};
use super::running::Clocks;
use crate::error::{Error, ErrorKind};
use crate::launch::{self, Spec};
use crate::os;
use crate::reaper::{ChildSlot, Exit};
use crate::trace;
use crate::StartMethod;

/// The pool's hub with real workers.
pub(crate) type LiveHub = Hub<Dispatcher<Live>>;

/// Starts real workers for the dispatcher, whose hub it posts to.
pub(crate) struct Live {
    pub(crate) hub: Weak<LiveHub>,
    /// Busy workers' process trees, for `memory_limit`.
    pub(crate) trees: os::TreeWatch,
    /// Starts so far per seat (for the `worker.restarted` event).
    starts: Vec<u32>,
}

impl Live {
    pub(crate) fn new(hub: Weak<LiveHub>) -> Live {
        Live {
            hub,
            trees: Default::default(),
            starts: Vec::new(),
        }
    }
}

/// A worker process as its starter hands it over: its slot (watched by the reaper) and
/// our end of its link.
pub(crate) type Launched = (Arc<ChildSlot>, Link);

impl Io for Live {
    type Started = Launched;
    type Link = LiveWorker;

    fn start(&mut self, seat: usize, spec: Spec) -> std::io::Result<()> {
        let hub = self.hub.clone();
        if self.starts.len() <= seat {
            self.starts.resize(seat + 1, 0);
        }
        let restarts = self.starts[seat];
        self.starts[seat] += 1;
        std::thread::Builder::new()
            .name("supervisor-start".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                // ipc-channel panics where it cannot get descriptors or memory: that is
                // a failed start like any other, never a starter thread that vanishes.
                let result = supervisor_worker::quiet_panic::catch(|| launch::start_worker(&spec))
                    .unwrap_or_else(|panic| Err(dependency_panic(panic.as_ref())));
                match &result {
                    Ok((slot, _)) => {
                        let pid = slot.pid();
                        trace::worker_started(&spec.name, pid, seat, spec.method, restarts);
                        if let Some(grace) = spec.end_task_children {
                            // Whatever ends it, and even after the pool is gone: what
                            // its tasks left in its group goes (the pool does the same
                            // sooner; this one holds when nothing else looks).
                            let _ = crate::group_sweep::when_exited(slot, grace);
                        }
                        let watched = Arc::downgrade(slot);
                        let name = spec.name;
                        slot.on_exit(Box::new(move || {
                            if let Some(slot) = watched.upgrade() {
                                let exit = slot.exit().unwrap_or(Exit::UNKNOWN);
                                trace::worker_exited(&name, pid, exit.status, exit.peak_rss_kib);
                            }
                        }));
                    }
                    Err(e) => trace::worker_start_failed(&spec.name, seat, e),
                }
                post_to(&hub, Event::Started { seat, result });
            })
            .map(drop)
    }

    fn attach(&mut self, id: u64, (slot, link): Launched) -> Result<LiveWorker, Error> {
        let hub = self.hub.clone();
        let pid = slot.pid();
        let post = Box::new(move |news| {
            let event = match news {
                News::Message(msg) => {
                    // Spooled outputs are taken hold of as they arrive, before anyone
                    // hears of the result: the worker may end at once.
                    if let Ok(msg) = &msg {
                        crate::command::claim_spools(pid, msg);
                    }
                    Event::Message { worker: id, msg }
                }
                News::Closed => Event::LinkClosed { worker: id },
            };
            post_to(&hub, event)
        });
        let reader = LinkReader::start(id, link.rx, post);
        let hub = self.hub.clone();
        // The reaper runs this: it only leaves the event for the pool thread.
        slot.on_exit(Box::new(move || {
            if let Some(hub) = hub.upgrade() {
                hub.post_later(Event::Exited { worker: id });
            }
        }));
        // Its page's memfd, the mapping shared to send, and the copy the send makes:
        // asked first, so that out of descriptors this is an error, not ipc-channel's
        // panic (caught below, quietly: another thread may take descriptors between
        // this check and those calls).
        if let Err(e) = os::descriptors_free(3) {
            let _ = slot.signal_group(libc::SIGKILL);
            return Err(ErrorKind::Spawn(e).into());
        }
        let made = supervisor_worker::quiet_panic::catch(|| {
            let progress = Progress::new();
            let page = progress.share();
            (progress, page)
        });
        let Ok((progress, page)) = made else {
            // No shared memory for its page (ipc-channel panics then): this worker
            // cannot be used. It is reaped as any exited child.
            let _ = slot.signal_group(libc::SIGKILL);
            return Err(dependency_panic(&"cannot create its page"));
        };
        let mut worker = LiveWorker {
            slot,
            tx: Some(link.tx),
            outbox: Outbox::new(),
            progress,
            reader,
        };
        // Sending shared memory makes ipc-channel map it once more, and it panics when
        // that fails (out of descriptors): a failed start, not a broken pool.
        let sent = match (Frame::with_page(&ToChild::Progress, page), &worker.tx) {
            (Ok(frame), Some(tx)) => {
                supervisor_worker::quiet_panic::catch(|| send_frame(tx, frame).is_ok())
            }
            _ => Ok(false),
        };
        match sent {
            Ok(true) => {}
            // It is going away; its exit is handled as any other.
            Ok(false) => worker.tx = None,
            Err(_) => {
                let _ = worker.slot.signal_group(libc::SIGKILL);
                return Err(dependency_panic(&"cannot send its page"));
            }
        }
        Ok(worker)
    }

    fn clocks(&self) -> Clocks {
        Clocks::read()
    }

    fn notes(&self, method: StartMethod) -> Vec<String> {
        let mut notes = Vec::new();
        if method == StartMethod::Fork && launch::zygote::lost() {
            notes
                .push("the fork zygote died: new workers are forked by the forkserver".to_string());
        }
        notes
    }

    fn tree_rss_kib(&mut self, pids: &[u32]) -> Vec<Option<u64>> {
        let pids: Vec<i32> = pids.iter().map(|&p| p as i32).collect();
        self.trees.rss_kib(&pids)
    }
}

/// A live worker: its process, our end of its link, its page and its reader.
pub(crate) struct LiveWorker {
    slot: Arc<ChildSlot>,
    /// `None` once we closed our sender (the worker exits when its queue is empty).
    tx: Option<IpcSender<Frame>>,
    /// Reused shared memory for big messages to this worker.
    outbox: Outbox,
    progress: Progress,
    /// Who reads its messages (`None`: no reader thread could start).
    reader: Option<Arc<LinkReader>>,
}

impl LiveWorker {
    /// Sends `message`; closes the link if it is gone.
    fn send<T: serde::Serialize + ?Sized>(&mut self, message: &T) -> bool {
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| self.outbox.send(tx, message).is_ok());
        if !sent {
            self.tx = None;
        }
        sent
    }
}

impl WorkerLink for LiveWorker {
    fn pid(&self) -> u32 {
        self.slot.pid()
    }

    fn page(&self) -> &Progress {
        &self.progress
    }

    fn is_open(&self) -> bool {
        self.tx.is_some()
    }

    fn close(&mut self) {
        self.tx = None;
    }

    fn send_unit(&mut self, seq: u64, unit: &Unit) -> bool {
        let sent = self.send(&unit_message(seq, unit));
        if sent {
            trace::task_started(unit.task, unit.first_id(), unit.len(), self.slot.pid());
        }
        sent
    }

    fn send_init(&mut self, request: &ToChild) -> bool {
        self.send(request)
    }

    fn terminate(&self) {
        let _ = self.slot.signal(libc::SIGTERM, true);
    }

    fn kill(&self) {
        let _ = self.slot.signal_group(libc::SIGKILL);
    }

    fn kill_tree(&self) {
        self.slot.kill_tree();
    }

    fn rss_kib(&self) -> Option<u64> {
        if self.slot.exit().is_some() {
            // Reaped: its pid may name another process by now.
            return None;
        }
        supervisor_worker::ProcStat::of(self.slot.pid() as i32)
            .filter(|stat| !stat.has_exited())
            .map(|stat| stat.rss_kib())
    }

    fn terminate_group(&self) {
        let _ = self.slot.signal_group(libc::SIGTERM);
    }

    fn exit(&self) -> Option<Exit> {
        self.slot.exit()
    }

    fn group_runs(&self) -> bool {
        self.slot.group_runs()
    }

    fn end_input(&self) -> bool {
        self.reader.as_ref().is_some_and(|r| r.end_input())
    }

    fn reading(&self) -> bool {
        self.reader.is_some()
    }

    fn expect(&self, expected: bool) {
        if let Some(reader) = &self.reader {
            reader.expect(expected);
        }
    }

    fn lend_to(&self, caller: &Arc<HandleState>) {
        if let Some(reader) = &self.reader {
            if reader.lend() {
                caller.borrow_link(reader.clone());
            }
        }
    }
}

impl Drop for LiveWorker {
    fn drop(&mut self) {
        // Forgotten: its reader thread ends (or ends once it has read the stream out).
        if let Some(reader) = &self.reader {
            reader.close();
        }
    }
}

/// A start that failed by a panic inside ipc-channel (it asserts where a system call
/// fails: out of descriptors, out of memory). Named by the cause when the process is
/// out of descriptors.
fn dependency_panic(panic: &(dyn std::any::Any + Send)) -> Error {
    let message = supervisor_worker::serve::panic_message(panic);
    let source = if os::descriptors_nearly_exhausted() {
        std::io::Error::from_raw_os_error(libc::EMFILE)
    } else {
        std::io::Error::other(format!("ipc-channel panicked: {message}"))
    };
    ErrorKind::Spawn(source).into()
}

fn unit_message(seq: u64, unit: &Unit) -> ToChildRef<'_> {
    if let Some(chunk) = &unit.chunk {
        ToChildRef::Packed {
            first_id: seq,
            task: unit.task,
            lens: &chunk.lens,
            data: serde_bytes::Bytes::new(&chunk.data),
            timed: chunk.timed,
        }
    } else if let [job] = unit.jobs.as_slice() {
        ToChildRef::Task(TaskRequestRef {
            id: seq,
            task: unit.task,
            arg: &job.arg,
        })
    } else {
        ToChildRef::Batch {
            first_id: seq,
            task: unit.task,
            args: unit
                .jobs
                .iter()
                .map(|j| serde_bytes::Bytes::new(&j.arg))
                .collect(),
        }
    }
}
