//! The reaper: one long-lived thread that owns every child process.
//!
//! It forks spawned children itself, so their parent-death signal is tied to a thread
//! that lives as long as the process (a user thread that calls `start` and then exits
//! does not take its children with it). It polls one pidfd per child plus an eventfd
//! for requests, and when a pidfd turns readable it reaps that child and publishes the
//! exit status in the child's [`ChildSlot`].
//!
//! Signals go through the slot, under the same lock the reaper holds while reaping, so
//! a signal is only ever sent to a process that has not been reaped: a reused pid is
//! never hit.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::cgroup::WorkerCgroup;
use crate::exit::ExitStatus;
use crate::os;

/// How a process ended, with its peak memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit {
    pub(crate) status: ExitStatus,
    pub(crate) peak_rss_kib: u64,
    pub(crate) cpu_time: Duration,
    /// It died of a SIGKILL this program did not send, and the system says the
    /// kernel's OOM killer sent it (`os::oom_killed`).
    pub(crate) oom_killed: bool,
}

impl Exit {
    /// An exit whose status could not be collected.
    pub(crate) const UNKNOWN: Exit = Exit {
        status: ExitStatus::Unknown,
        peak_rss_kib: 0,
        cpu_time: Duration::ZERO,
        oom_killed: false,
    };
}

/// Who can collect a child's exit status.
pub(crate) enum Owner {
    /// Our own child: `wait4`.
    Direct,
    /// A child of a zygote or forkserver: ask it.
    Server(Arc<dyn ReapServer>),
}

/// A process that reaps its children when asked (a zygote or forkserver client
/// implements it), so the reaper need not know how the question travels.
pub(crate) trait ReapServer: Send + Sync {
    /// Has child `pid`, which has exited, reaped; `None` if that failed.
    fn reap(&self, pid: i32) -> Option<os::Reaped>;
}

type ExitWatcher = Box<dyn FnOnce() + Send>;

struct SlotState {
    exit: Option<Exit>,
    /// When the child was reaped, in ticks since boot.
    reaped_at: u64,
    watchers: Vec<ExitWatcher>,
}

/// Everything known about one child; shared by its handle and the reaper.
pub(crate) struct ChildSlot {
    pid: i32,
    pidfd: OwnedFd,
    daemon: bool,
    owner: Owner,
    state: Mutex<SlotState>,
    exited: Condvar,
    /// What tells, at its death, whether the OOM killer ended it.
    oom: os::OomWatch,
    /// This program sent it (or its group) a SIGKILL: such a death is never the OOM
    /// killer's.
    killed: AtomicBool,
    /// The cgroup it was born in (a spawned worker): what runs there counts as its
    /// group, whatever session or parent it has (`crate::cgroup`).
    cgroup: Option<WorkerCgroup>,
}

impl ChildSlot {
    pub(crate) fn new(
        pid: i32,
        pidfd: OwnedFd,
        daemon: bool,
        owner: Owner,
        cgroup: Option<WorkerCgroup>,
    ) -> Arc<ChildSlot> {
        Arc::new(ChildSlot {
            pid,
            pidfd,
            daemon,
            owner,
            state: Mutex::new(SlotState {
                exit: None,
                reaped_at: 0,
                watchers: Vec::new(),
            }),
            exited: Condvar::new(),
            oom: os::oom_watch(),
            killed: AtomicBool::new(false),
            cgroup,
        })
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A poisoned slot still holds consistent data: every write is one assignment.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// The child's pidfd: readable once it has exited.
    pub(crate) fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.pidfd.as_fd()
    }

    pub(crate) fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// The exit, once the reaper has collected it.
    pub(crate) fn exit(&self) -> Option<Exit> {
        self.lock().exit
    }

    /// Blocks until the child has exited and been reaped.
    pub(crate) fn wait(&self) -> Exit {
        let mut state = self.lock();
        loop {
            if let Some(exit) = state.exit {
                return exit;
            }
            state = self.exited.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Like [`ChildSlot::wait`], giving up at `deadline`.
    pub(crate) fn wait_until(&self, deadline: Instant) -> Option<Exit> {
        let mut state = self.lock();
        loop {
            if let Some(exit) = state.exit {
                return Some(exit);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            state = self
                .exited
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Runs `f` once the child has exited (at once if it already has).
    pub(crate) fn on_exit(&self, f: ExitWatcher) {
        let mut state = self.lock();
        if state.exit.is_some() {
            drop(state);
            f();
        } else {
            state.watchers.push(f);
        }
    }

    /// Sends `signal` to the child and, with `group`, to its whole process group (and
    /// its cgroup). `Ok(false)` when the child had already exited.
    pub(crate) fn signal(&self, signal: i32, group: bool) -> io::Result<bool> {
        let state = self.lock();
        if state.exit.is_some() {
            return Ok(false);
        }
        self.note_kill(signal);
        // The leader first: a child forked a moment ago may not lead its group yet.
        let alive = os::pidfd_send_signal(&self.pidfd, signal)?;
        if group {
            os::kill_group(self.pid, signal)?;
            self.signal_cgroup(signal);
        }
        drop(state);
        Ok(alive)
    }

    /// Sends `signal` to what runs in the child's cgroup, if it has one; whether
    /// anything was there.
    fn signal_cgroup(&self, signal: i32) -> bool {
        self.cgroup.as_ref().is_some_and(|c| c.signal(signal))
    }

    /// Sends `signal` to the child's process group even after the child itself has
    /// exited (its children may live on in the group), and to what runs in its cgroup.
    /// Once the child is reaped its id may be reused, so then only members that
    /// started before the reap are signalled, each pinned by a pidfd; a reused id is
    /// never hit. `Ok(false)` when none was left.
    pub(crate) fn signal_group(&self, signal: i32) -> io::Result<bool> {
        let state = self.lock();
        if state.exit.is_none() {
            self.note_kill(signal);
            // The leader is not reaped: the group id is still ours.
            let _ = os::pidfd_send_signal(&self.pidfd, signal)?;
            let group = os::kill_group(self.pid, signal);
            let cgroup = self.signal_cgroup(signal);
            return group.map(|any| any || cgroup);
        }
        // The leader is gone and its id may be reused: reach only members that started
        // before it was reaped.
        let reaped_at = state.reaped_at;
        drop(state);
        let group = os::signal_group_members(self.pid, signal, reaped_at);
        let cgroup = self.signal_cgroup(signal);
        match group {
            Err(_) if cgroup => Ok(true),
            other => other.map(|any| any || cgroup),
        }
    }

    /// Kills the child, its process group and every descendant it has (those that left
    /// its group or session too) at once, with SIGKILL. A no-op once it has exited.
    pub(crate) fn kill_tree(&self) {
        let state = self.lock();
        if state.exit.is_some() {
            return;
        }
        self.note_kill(libc::SIGKILL);
        // Pinned first: once the child dies its descendants are adopted elsewhere.
        let descendants = os::pin_descendants(self.pid);
        let _ = os::pidfd_send_signal(&self.pidfd, libc::SIGKILL);
        let _ = os::kill_group(self.pid, libc::SIGKILL);
        os::kill_pinned(&descendants);
        self.signal_cgroup(libc::SIGKILL);
        drop(state);
    }

    /// Whether this program sent it (or its group) a SIGKILL.
    pub(crate) fn killed_by_us(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    fn note_kill(&self, signal: i32) {
        if signal == libc::SIGKILL {
            self.killed.store(true, Ordering::Relaxed);
        }
    }

    /// Whether anything of the child's process group still runs: the child itself, or,
    /// once it is reaped, a member that started before the reap, or anything in its
    /// cgroup (zombies do not count).
    pub(crate) fn group_runs(&self) -> bool {
        let state = self.lock();
        if state.exit.is_none() {
            return true;
        }
        let reaped_at = state.reaped_at;
        drop(state);
        os::group_has_running_members(self.pid, reaped_at)
            || self.cgroup.as_ref().is_some_and(WorkerCgroup::runs)
    }

    /// Collects the exit status; called by the reaper once the pidfd is readable.
    fn reap(&self) {
        let mut state = self.lock();
        if state.exit.is_some() {
            return;
        }
        let collected = match &self.owner {
            Owner::Direct => os::reap(self.pid),
            Owner::Server(server) => server.reap(self.pid),
        };
        let exit = match collected {
            Some((raw, peak_rss_kib, cpu_micros)) => {
                let status = ExitStatus::from_raw(raw);
                let sigkill = matches!(status, ExitStatus::Signal { signal, .. } if signal.number() == libc::SIGKILL);
                Exit {
                    status,
                    peak_rss_kib,
                    cpu_time: Duration::from_micros(cpu_micros),
                    oom_killed: sigkill
                        && !self.killed.load(Ordering::Relaxed)
                        && os::oom_killed(self.pid, &self.oom),
                }
            }
            None => Exit::UNKNOWN,
        };
        state.exit = Some(exit);
        state.reaped_at = os::boot_ticks();
        let watchers = std::mem::take(&mut state.watchers);
        drop(state);
        self.exited.notify_all();
        for w in watchers {
            w();
        }
    }
}

enum Request {
    Spawn(Box<SpawnRequest>, mpsc::SyncSender<io::Result<Spawned>>),
    Watch(Arc<ChildSlot>),
    Live(mpsc::SyncSender<Vec<Arc<ChildSlot>>>),
}

/// Handle to the reaper thread.
pub(crate) struct Reaper {
    requests: mpsc::Sender<Request>,
    wake: Arc<os::EventFd>,
}

static REAPER: OnceLock<Reaper> = OnceLock::new();

/// Held while the reaper starts, so that it starts once.
static STARTING: Mutex<()> = Mutex::new(());

/// The reaper, started on first use. A start that fails (its thread could not be had:
/// the process limit) returns the system's error, with its errno, and the next call
/// tries again: before, the first failure's words were kept for the program's life.
pub(crate) fn reaper() -> io::Result<&'static Reaper> {
    if let Some(r) = REAPER.get() {
        return Ok(r);
    }
    let _starting = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = REAPER.get() {
        return Ok(r);
    }
    let started = Reaper::start()?;
    Ok(REAPER.get_or_init(|| started))
}

/// The reaper if it was ever started.
pub(crate) fn started() -> Option<&'static Reaper> {
    REAPER.get()
}

impl Reaper {
    fn start() -> io::Result<Reaper> {
        let wake = Arc::new(os::EventFd::new()?);
        let (requests, rx) = mpsc::channel();
        let thread_wake = wake.clone();
        std::thread::Builder::new()
            .name("supervisor-reaper".into())
            .stack_size(256 * 1024)
            .spawn(move || run(rx, thread_wake))?;
        Ok(Reaper { requests, wake })
    }

    fn send(&self, req: Request) -> io::Result<()> {
        self.requests
            .send(req)
            .map_err(|_| io::Error::other("the reaper thread is gone"))?;
        self.wake.wake();
        Ok(())
    }

    /// Executes `exec` in a child of the reaper thread that first runs `setup` (see
    /// [`os::spawn_exec`]), watched from the start (a direct child, `daemon` as said);
    /// returns as soon as the child exists (the reaper thread never waits for its
    /// exec): its slot, and what tells how its exec went. One request, not a spawn and
    /// then a watch: the reaper thread is woken once. With `cgroup` the child is born
    /// in it where the system allows (`os::spawn_exec`), and its slot keeps it.
    pub(crate) fn spawn(
        &self,
        exec: os::Exec,
        setup: ChildSetupFn,
        daemon: bool,
        cgroup: Option<WorkerCgroup>,
    ) -> io::Result<Spawned> {
        let (tx, rx) = mpsc::sync_channel(1);
        let req = SpawnRequest {
            exec,
            setup,
            daemon,
            cgroup,
        };
        self.send(Request::Spawn(Box::new(req), tx))?;
        rx.recv()
            .map_err(|_| io::Error::other("the reaper thread is gone"))?
    }

    /// Starts watching a child.
    pub(crate) fn watch(&self, slot: Arc<ChildSlot>) -> io::Result<()> {
        self.send(Request::Watch(slot))
    }

    /// Every child that has not been reaped yet.
    pub(crate) fn live(&self) -> Vec<Arc<ChildSlot>> {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.send(Request::Live(tx)).is_err() {
            return Vec::new();
        }
        rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default()
    }
}

/// The set-up a spawned child runs before it executes (async-signal-safe; an errno).
pub(crate) type ChildSetupFn = os::SetupFn;

/// A child to start from the reaper thread.
pub(crate) struct SpawnRequest {
    exec: os::Exec,
    setup: ChildSetupFn,
    daemon: bool,
    cgroup: Option<WorkerCgroup>,
}

/// A child the reaper thread started and watches.
pub(crate) struct Spawned {
    /// Its slot (a direct child).
    pub(crate) slot: Arc<ChildSlot>,
    /// What tells how its exec went.
    pub(crate) exec: os::PendingExec,
}

fn spawn_one(req: SpawnRequest) -> io::Result<Spawned> {
    use std::os::fd::AsFd;
    // Opened for the start only: an idle cgroup holds no descriptor.
    let dir = req.cgroup.as_ref().and_then(WorkerCgroup::open);
    let started = os::spawn_exec(req.exec, req.setup, dir.as_ref().map(|d| d.as_fd()))?;
    let cgroup = match (req.cgroup, started.cgroup_refused) {
        (Some(cgroup), _) if started.in_cgroup => Some(cgroup),
        (Some(cgroup), Some(errno)) => {
            cgroup.refused(errno);
            None
        }
        _ => None,
    };
    // The slot owns the process from here.
    let slot = ChildSlot::new(
        started.pid,
        started.pidfd,
        req.daemon,
        Owner::Direct,
        cgroup,
    );
    Ok(Spawned {
        slot,
        exec: started.exec,
    })
}

fn run(rx: mpsc::Receiver<Request>, wake: Arc<os::EventFd>) {
    let mut slots: Vec<Arc<ChildSlot>> = Vec::new();
    loop {
        let ready = {
            let fds: Vec<&OwnedFd> = std::iter::once(wake.fd())
                .chain(slots.iter().map(|s| &s.pidfd))
                .collect();
            match os::poll_readable(&fds, None) {
                Ok(ready) => ready,
                // poll only fails for resource exhaustion; back off and try again.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        };
        let mut index = 0;
        slots.retain(|slot| {
            index += 1;
            if ready[index] {
                slot.reap();
                false
            } else {
                true
            }
        });
        if ready[0] {
            wake.drain();
            loop {
                match rx.try_recv() {
                    Ok(Request::Spawn(cmd, reply)) => {
                        let spawned = spawn_one(*cmd);
                        if let Ok(spawned) = &spawned {
                            slots.push(spawned.slot.clone());
                        }
                        let _ = reply.send(spawned);
                    }
                    Ok(Request::Watch(slot)) => slots.push(slot),
                    Ok(Request::Live(reply)) => {
                        let _ = reply.send(slots.clone());
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
        }
    }
}
