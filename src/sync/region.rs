//! One shared region per object: a memfd mapped `MAP_SHARED` in every process that
//! holds the object. The region starts with a [`Header`] (identity, a robust
//! process-shared mutex, the table of holders) followed by the object's own state and
//! data. See `docs/ARCHITECTURE.md`, "Queue, Pipe, shared memory and locks".

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::fault::{self, Fault};
use crate::error::{Error, ErrorKind};
use crate::os::{self, Acquire, Mapping, SharedMutex};

const MAGIC: u64 = u64::from_le_bytes(*b"SUPVSYNC");
const VERSION: u32 = 2;
/// Holders one object can have at once: one per process and role (a process holding
/// both ends of a pipe takes two). Documented on every handle type and in the README.
pub(crate) const MAX_HOLDERS: usize = 128;
/// Serialisations of one role whose first decode is told apart from a repeated one: a
/// ring of that many bits, indexed by the ticket a [`Wire`] carries.
const TICKETS: usize = 4096;
/// How often a waiter checks that some process that could wake it is still alive.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// How long a handle serialised for another process counts as "on its way" to it.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(10);
/// The pid of a holder slot being claimed (not yet whole: no holder).
const CLAIMING: i32 = -1;
/// Spins on a changing word before sleeping on it.
const SPINS: u32 = 2_000;
/// How long a `try_*` call waits for the region's mutex: enough for another holder to
/// finish a copy, not enough to notice.
const TRY_LOCK_GRACE: Duration = Duration::from_millis(1);

/// What a region holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    Queue = 1,
    Pipe = 2,
    SharedMemory = 3,
    Lock = 4,
    Event = 5,
    Semaphore = 6,
}

impl Kind {
    fn from_u32(n: u32) -> Option<Kind> {
        [
            Kind::Queue,
            Kind::Pipe,
            Kind::SharedMemory,
            Kind::Lock,
            Kind::Event,
            Kind::Semaphore,
        ]
        .into_iter()
        .find(|k| *k as u32 == n)
    }

    /// How many roles a handle of this kind can have: a pipe's two ends, one otherwise.
    fn roles(self) -> u32 {
        match self {
            Kind::Pipe => 2,
            _ => 1,
        }
    }

    /// Its name with its article: "a queue", "an event".
    fn a_name(self) -> String {
        match self {
            Kind::Event => "an event".to_string(),
            _ => format!("a {}", self.name()),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Queue => "queue",
            Kind::Pipe => "pipe",
            Kind::SharedMemory => "shared memory",
            Kind::Lock => "lock",
            Kind::Event => "event",
            Kind::Semaphore => "semaphore",
        }
    }
}

/// Marker for state that may live in shared memory: `#[repr(C)]`, only atomics and
/// [`SharedMutex`]es, valid when all bytes are zero.
///
/// # Safety
/// Implementors must satisfy exactly that.
pub(crate) unsafe trait SharedState {}

/// One process holding the object in one role (a pipe has two roles, its ends).
#[repr(C)]
struct Slot {
    /// 0 when free.
    pid: AtomicI32,
    role: AtomicU32,
    /// The process's start time: with the pid it survives pid reuse.
    start: AtomicU64,
}

#[repr(C)]
struct Header {
    magic: u64,
    version: u32,
    kind: u32,
    id: [u8; 16],
    /// A hash of the Rust types of the messages (a queue of `u64` is not a queue of
    /// `String`).
    tag: u64,
    len: u64,
    state_offset: u64,
    state_len: u64,
    data_offset: u64,
    data_len: u64,
    creator_pid: u32,
    creator_fd: i32,
    mutex: SharedMutex,
    /// Per role: handles serialised, serialisations decoded at least once, time of the
    /// last serialisation (`CLOCK_MONOTONIC` ns).
    shipped: [AtomicU64; 2],
    opened: [AtomicU64; 2],
    last_ship_ns: [AtomicU64; 2],
    /// Per role: one bit per ticket (modulo [`TICKETS`]), set when it is serialised and
    /// cleared by its first decode, so that decoding one serialisation again (a retried
    /// task's argument, bytes decoded twice) never counts as opening another handle.
    unopened: [[AtomicU64; TICKETS / 64]; 2],
    /// Per role: a holder found dead since the last attach (0: none), so that later
    /// waits report the death at once.
    dead_pid: [AtomicU32; 2],
    slots: [Slot; MAX_HOLDERS],
}

/// `EMFILE` said in words: what holds this process's descriptors.
fn out_of_descriptors(e: std::io::Error) -> std::io::Error {
    if e.raw_os_error() != Some(libc::EMFILE) {
        return e;
    }
    std::io::Error::new(
        e.kind(),
        format!(
            "{e}: every object this process holds, and every handle it serialised that is \
             not opened yet (for at most 10 s), holds a descriptor; the limit is \
             RLIMIT_NOFILE (`ulimit -n`)"
        ),
    )
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// The largest shared-memory object made (64 TiB): past it, sizes are a mistake, and
/// every offset computed within a region stays far from overflowing.
pub(crate) const MAX_REGION: usize = 1 << 46;

/// The region length for `state_len` bytes of state and `data_len` bytes of data, with
/// the offsets of both; `None` if it would exceed [`MAX_REGION`].
fn layout(state_len: usize, data_len: usize) -> Option<(usize, usize, usize)> {
    let state_offset = round_up(size_of::<Header>(), 64);
    let data_offset = state_offset
        .checked_add(state_len)
        .filter(|n| *n <= MAX_REGION)
        .map(|n| round_up(n, 64))?;
    let len = data_offset
        .checked_add(data_len)
        .filter(|n| *n <= MAX_REGION)
        .map(|n| round_up(n, 4096))?;
    Some((state_offset, data_offset, len))
}

/// The most data bytes a region with `state_len` bytes of state can have.
pub(crate) fn max_data(state_len: usize) -> usize {
    let state_offset = round_up(size_of::<Header>(), 64);
    state_offset
        .checked_add(state_len)
        .filter(|n| *n <= MAX_REGION)
        .map_or(0, |n| MAX_REGION - round_up(n, 64))
}

/// Whether `data_len` bytes of data can hold what a region of `kind` keeps there: a
/// queue's ring (8-byte frames, at least a page), a pipe's two.
fn ring_fits(kind: Kind, data_len: u64) -> bool {
    match kind {
        Kind::Queue => data_len >= 4096 && data_len.is_multiple_of(8),
        Kind::Pipe => data_len >= 128 && data_len.is_multiple_of(16),
        _ => true,
    }
}

/// FNV-1a of a type name: the tag that makes a handle refuse to open as another type.
pub(crate) fn type_tag(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// This process's pid and start time.
fn me() -> (i32, u64) {
    static START: OnceLock<(i32, u64)> = OnceLock::new();
    let pid = os::getpid();
    match START.get() {
        Some(&(p, start)) if p == pid => (pid, start),
        _ => {
            let start = os::process_start_time(pid).unwrap_or(0);
            let _ = START.set((pid, start));
            (pid, start)
        }
    }
}

/// One mapping of a region in this process.
pub(crate) struct Region {
    map: Mapping,
    fd: OwnedFd,
    kind: Kind,
    id: [u8; 16],
    /// The type tag and state length it was made with (read once on open): what a
    /// handle decoded as some type must match, however it was found.
    tag: u64,
    state_len: usize,
    repair: fn(&Region),
    /// Per role: the handles ([`Holder`]s) of this process, each a holder of its own.
    local: [AtomicUsize; 2],
    /// Where the state and the data lie in the mapping, as checked when it was made or
    /// opened. Kept here, never read again from the header: any holder can write the
    /// header, and a length changed there must not move an access outside the mapping.
    state_offset: usize,
    data_offset: usize,
    data_len: usize,
}

/// The region's mutex, held. Not `Send`: a pthread mutex is unlocked by its locker.
pub(crate) struct RegionGuard<'a> {
    region: &'a Region,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for RegionGuard<'_> {
    fn drop(&mut self) {
        self.region.header().mutex.unlock();
    }
}

/// What a waiter waits on: a sequence word bumped on every change, and the count of
/// sleepers on it (so wakers skip the system call when nobody sleeps).
pub(crate) struct Waiter<'a> {
    pub(crate) seq: &'a AtomicU32,
    pub(crate) waiters: &'a AtomicU32,
    /// The role of the handles that could end the wait.
    pub(crate) peer_role: u32,
    /// The role of the waiting handle (not a peer of itself).
    pub(crate) own_role: u32,
}

/// Wakes one (or all) sleepers of a sequence word, after its change was made under the
/// region's mutex and the mutex was released.
pub(crate) fn notify(seq: &AtomicU32, waiters: &AtomicU32, all: bool) {
    if waiters.load(Ordering::SeqCst) > 0 {
        os::futex_wake(seq, if all { i32::MAX } else { 1 });
    }
}

impl Region {
    /// Creates a region with `state_len` bytes of zeroed state and `data_len` bytes of
    /// data; `init` runs before any other process can see it.
    pub(crate) fn create(
        kind: Kind,
        tag: u64,
        state_len: usize,
        data_len: usize,
        init: impl FnOnce(&Region) -> std::io::Result<()>,
        repair: fn(&Region),
    ) -> Result<Arc<Region>, Error> {
        let fail = |source: std::io::Error| ErrorKind::SharedMemory {
            kind: kind.name(),
            source: out_of_descriptors(source),
        };
        let (state_offset, data_offset, len) =
            layout(state_len, data_len).ok_or_else(|| ErrorKind::TooLarge {
                kind: kind.name(),
                requested: data_len as u64,
                limit: max_data(state_len) as u64,
            })?;
        let fd = os::memfd_create(&format!("supervisor-{}", kind.name()), len).map_err(fail)?;
        let map = Mapping::new(&fd, len).map_err(fail)?;
        let id = os::random_bytes::<16>().map_err(fail)?;
        let header = map.as_ptr().cast::<Header>();
        // SAFETY: a fresh, zeroed, page-aligned mapping of at least `len` bytes that no
        // other thread or process can reach yet; the fields written are plain data or
        // the mutex, initialised in place once.
        unsafe {
            (*header).magic = MAGIC;
            (*header).version = VERSION;
            (*header).kind = kind as u32;
            (*header).id = id;
            (*header).tag = tag;
            (*header).len = len as u64;
            (*header).state_offset = state_offset as u64;
            (*header).state_len = state_len as u64;
            (*header).data_offset = data_offset as u64;
            (*header).data_len = data_len as u64;
            (*header).creator_pid = os::getpid() as u32;
            (*header).creator_fd = fd.as_raw_fd();
            SharedMutex::init(std::ptr::addr_of_mut!((*header).mutex)).map_err(fail)?;
        }
        let region = Region {
            map,
            fd,
            kind,
            id,
            tag,
            state_len,
            repair,
            local: Default::default(),
            state_offset,
            data_offset,
            data_len,
        };
        init(&region).map_err(fail)?;
        let region = Arc::new(region);
        regions().insert(id, Arc::downgrade(&region));
        Ok(region)
    }

    /// The region a handle names: the one this process has open already, or mapped from
    /// a process the handle names. Either way it is checked to be what the handle is
    /// decoded as ([`Region::check`]).
    fn open(
        wire: &Wire,
        kind: Kind,
        tag: u64,
        state_len: usize,
        repair: fn(&Region),
    ) -> Result<Arc<Region>, Error> {
        let mut regions = regions();
        if let Some(region) = regions.get(&wire.id).and_then(Weak::upgrade) {
            region.check(kind, tag, state_len)?;
            return Ok(region);
        }
        let mut last = None;
        for &(pid, fd) in wire.sources.iter().take(4) {
            match Region::open_from(pid, fd, wire, kind, repair) {
                Ok(region) => {
                    region.check(kind, tag, state_len)?;
                    let region = Arc::new(region);
                    regions.retain(|_, w| w.strong_count() > 0);
                    regions.insert(wire.id, Arc::downgrade(&region));
                    return Ok(region);
                }
                Err(e) => last = Some((pid, e)),
            }
        }
        // The error names the process whose descriptor the last attempt tried.
        let (pid, source) =
            last.unwrap_or_else(|| (0, std::io::Error::other("the handle names no process")));
        Err(ErrorKind::OpenShared {
            kind: kind.name(),
            pid,
            source,
        }
        .into())
    }

    /// Whether this region is what a handle decoded as `kind` with `tag` and
    /// `state_len` bytes of state needs: a typed error if not, so that no handle type
    /// ever reads another type's state or data as its own.
    fn check(&self, kind: Kind, tag: u64, state_len: usize) -> Result<(), Error> {
        let reason = if self.kind != kind {
            format!("it names {}", self.kind.a_name())
        } else if self.tag != tag {
            "it was made for other message or element types".to_string()
        } else if self.state_len != state_len {
            format!("its state is {} bytes, not {state_len}", self.state_len)
        } else if !ring_fits(kind, self.data_len as u64) {
            format!(
                "its buffer of {} bytes cannot hold its rings",
                self.data_len
            )
        } else {
            return Ok(());
        };
        Err(ErrorKind::WrongHandle {
            kind: kind.name(),
            reason,
        }
        .into())
    }

    /// Maps the region in `/proc/<pid>/fd/<fd>`, checking it is the one `wire` names
    /// and that its layout is consistent (what it holds is checked by the caller).
    fn open_from(
        pid: u32,
        fd: i32,
        wire: &Wire,
        kind: Kind,
        repair: fn(&Region),
    ) -> std::io::Result<Region> {
        let fd_no = fd;
        let let_go = |what: String| {
            std::io::Error::other(format!(
                "{what}: the process no longer has this {} open (it dropped its last \
                 handle, and this one was serialised over 10 s before or counted as \
                 opened already)",
                kind.name()
            ))
        };
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/fd/{fd}"))
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(if std::fs::metadata(format!("/proc/{pid}")).is_ok() {
                    let_go(format!("process {pid} has no descriptor {fd}"))
                } else {
                    std::io::Error::new(e.kind(), format!("process {pid} has exited"))
                });
            }
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len() as usize;
        let fd = OwnedFd::from(file);
        let wrong = |what: &str| {
            std::io::Error::other(format!(
                "descriptor {fd_no} of process {pid} is not this {} ({what})",
                kind.name()
            ))
        };
        if !os::is_sealed_memfd(&fd) || len < size_of::<Header>() || len > MAX_REGION {
            return Err(wrong("not a sealed memory file"));
        }
        let map = Mapping::new(&fd, len)?;
        // SAFETY: the mapping is at least a header long and page-aligned; the fields
        // read here are written once, before the region is shared.
        let h = unsafe { &*map.as_ptr().cast::<Header>() };
        let found = Kind::from_u32(h.kind);
        if h.magic != MAGIC || h.version != VERSION || found.is_none() {
            return Err(wrong("another object"));
        }
        if h.id != wire.id {
            // One of ours, but not this one: the number was reused after the object
            // the wire names was closed there.
            return Err(let_go(format!(
                "descriptor {fd_no} of process {pid} now holds another object"
            )));
        }
        let found = found.unwrap_or(kind);
        // Read once: the header is shared, another holder could change it meanwhile.
        let fields = (
            std::ptr::addr_of!(h.tag),
            std::ptr::addr_of!(h.state_offset),
            std::ptr::addr_of!(h.state_len),
            std::ptr::addr_of!(h.data_offset),
            std::ptr::addr_of!(h.data_len),
        );
        // SAFETY: five aligned u64 fields of the live header, read as plain values.
        let (tag, state_offset, state_len, data_offset, data_len) = unsafe {
            (
                fields.0.read_volatile(),
                fields.1.read_volatile(),
                fields.2.read_volatile(),
                fields.3.read_volatile(),
                fields.4.read_volatile(),
            )
        };
        let fits = h.len == len as u64
            && state_offset >= size_of::<Header>() as u64
            && state_offset % 64 == 0
            && state_offset
                .checked_add(state_len)
                .is_some_and(|end| end <= data_offset)
            && data_offset % 64 == 0
            && data_offset
                .checked_add(data_len)
                .is_some_and(|end| end <= len as u64)
            && ring_fits(found, data_len);
        if !fits {
            return Err(wrong("inconsistent layout"));
        }
        Ok(Region {
            map,
            fd,
            kind: found,
            id: wire.id,
            tag,
            state_len: state_len as usize,
            repair,
            local: Default::default(),
            state_offset: state_offset as usize,
            data_offset: data_offset as usize,
            data_len: data_len as usize,
        })
    }

    fn header(&self) -> &Header {
        // SAFETY: every region is at least a header long (checked on open) and the
        // header's mutable fields are atomics or the mutex.
        unsafe { &*self.map.as_ptr().cast::<Header>() }
    }

    pub(crate) fn kind(&self) -> &'static str {
        self.kind.name()
    }

    /// The object's state.
    pub(crate) fn state<S: SharedState>(&self) -> &S {
        debug_assert!(size_of::<S>() <= self.state_len);
        debug_assert!(self.state_offset + self.state_len <= self.data_offset);
        // SAFETY: the state lies inside the mapping at a 64-aligned offset with
        // `state_len == size_of::<S>()` (every handle is checked to match its region's
        // kind and state length when made or decoded, `Region::check`; kept in `self`); S is valid for
        // any bytes other processes can have written through atomics (`SharedState`).
        unsafe { &*self.map.as_ptr().add(self.state_offset).cast::<S>() }
    }

    /// The object's data bytes: start and length.
    pub(crate) fn data(&self) -> (*mut u8, usize) {
        // SAFETY: data_offset + data_len lies inside the mapping (checked on create or
        // open, kept in `self`).
        let ptr = unsafe { self.map.as_ptr().add(self.data_offset) };
        (ptr, self.data_len)
    }

    fn sync_error(&self, source: std::io::Error) -> Error {
        ErrorKind::Sync {
            kind: self.kind(),
            source,
        }
        .into()
    }

    /// Locks the region's mutex, waiting as long as it takes. If its previous holder
    /// died holding it, the object's state is repaired first (a half-done operation is
    /// rolled back or completed).
    pub(crate) fn lock(&self) -> Result<RegionGuard<'_>, Error> {
        match self.lock_until(None)? {
            Some(guard) => Ok(guard),
            None => unreachable!("a lock without a deadline returns a guard or an error"),
        }
    }

    /// Locks the region's mutex, giving up at `deadline` (`Ok(None)`): a holder that is
    /// stopped or slow cannot make a timed call late. A deadline already past is a
    /// try-lock. Uncontended, it costs what [`Region::lock`] does: a few try-locks come
    /// first, the timed wait only on contention.
    pub(crate) fn lock_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Option<RegionGuard<'_>>, Error> {
        let mutex = &self.header().mutex;
        let mut acquired = None;
        for _ in 0..64 {
            acquired = mutex.try_lock().map_err(|e| self.sync_error(e))?;
            if acquired.is_some() {
                break;
            }
            std::hint::spin_loop();
        }
        let acquired = match (acquired, deadline) {
            (Some(a), _) => a,
            (None, None) => mutex.lock().map_err(|e| self.sync_error(e))?,
            (None, Some(d)) => {
                let left = d.saturating_duration_since(Instant::now());
                match mutex.lock_timeout(left).map_err(|e| self.sync_error(e))? {
                    Some(a) => a,
                    None => return Ok(None),
                }
            }
        };
        let guard = RegionGuard {
            region: self,
            _not_send: std::marker::PhantomData,
        };
        if acquired == Acquire::OwnerDied {
            (self.repair)(self);
            mutex.make_consistent().map_err(|e| self.sync_error(e))?;
        }
        fault::point(Fault::StopHoldingLock);
        Ok(Some(guard))
    }

    /// Calls `attempt` under the mutex until it returns `Some`, the deadline passes
    /// (`Ok(None)`), or no process that could make it succeed is left
    /// ([`ErrorKind::PeerClosed`], [`ErrorKind::PeerDied`]).
    pub(crate) fn block<R>(
        &self,
        w: Waiter<'_>,
        deadline: Option<Instant>,
        mut attempt: impl FnMut() -> Result<Option<R>, Error>,
    ) -> Result<Option<R>, Error> {
        // A try (a deadline now) still lets another holder finish a copy.
        let lock_by = deadline.map(|d| d.max(Instant::now() + TRY_LOCK_GRACE));
        let Some(first) = self.lock_until(lock_by)? else {
            return Ok(None);
        };
        let mut guard = Some(first);
        let mut next_check: Option<Instant> = None;
        let result = loop {
            match attempt() {
                Ok(None) => {}
                done => break done,
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break Ok(None);
            }
            match next_check {
                None => {
                    // Cheap check first: nobody else holds it at all.
                    if let Some(e) = self.disconnected(w.peer_role, w.own_role, false) {
                        break Err(e);
                    }
                    next_check = Some(now + CHECK_EVERY);
                }
                Some(at) if now >= at => {
                    if let Some(e) = self.disconnected(w.peer_role, w.own_role, true) {
                        break Err(e);
                    }
                    next_check = Some(now + CHECK_EVERY);
                }
                Some(_) => {}
            }
            let seq = w.seq.load(Ordering::SeqCst);
            drop(guard.take());
            let mut until = next_check.unwrap_or(now + CHECK_EVERY);
            if let Some(d) = deadline {
                until = until.min(d);
            }
            let mut spins = 0;
            while w.seq.load(Ordering::Acquire) == seq && spins < SPINS {
                std::hint::spin_loop();
                spins += 1;
            }
            // Counted as a sleeper only now, so a changer skips the wake-up call while
            // we spin. Dekker-style: we write the count then read the word; a changer
            // writes the word then reads the count (both SeqCst), so either we see the
            // change or it sees us (and FUTEX_WAIT re-checks the word atomically).
            w.waiters.fetch_add(1, Ordering::SeqCst);
            if w.seq.load(Ordering::SeqCst) == seq {
                os::futex_wait(w.seq, seq, until.saturating_duration_since(Instant::now()));
            }
            let _ = w
                .waiters
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            guard = self.lock_until(lock_by)?;
            if guard.is_none() {
                // The deadline passed with the mutex held by another: nothing was done.
                break Ok(None);
            }
        };
        drop(guard);
        if !matches!(result, Ok(Some(_))) {
            // A wake meant for a waiter that is leaving goes to the next one.
            notify(w.seq, w.waiters, false);
        }
        result
    }

    /// `Some(error)` if no handle but the waiter's own (of role `own`) can end a wait on
    /// `role`: no other handle of this process holds it, no other process holds it and
    /// no handle is on its way. `deep` (under the mutex): also checks that the holding
    /// processes are alive, and forgets the dead ones (remembering one for the error).
    fn disconnected(&self, role: u32, own: u32, deep: bool) -> Option<Error> {
        let h = self.header();
        let (my_pid, _) = me();
        let r = role as usize % 2;
        let local = self.local[r].load(Ordering::SeqCst);
        let mut others = local > usize::from(own == role);
        for slot in &h.slots {
            if others && !deep {
                break;
            }
            let pid = slot.pid.load(Ordering::Acquire);
            if pid <= 0 || pid == my_pid || slot.role.load(Ordering::Relaxed) != role {
                continue;
            }
            if !deep || os::process_start_time(pid) == Some(slot.start.load(Ordering::Relaxed)) {
                others = true;
            } else if slot
                .pid
                .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                h.dead_pid[r].store(pid as u32, Ordering::Relaxed);
            }
        }
        let in_flight = on_its_way(self, r, os::monotonic_ns());
        if others || in_flight {
            return None;
        }
        let kind = self.kind();
        let error = match h.dead_pid[r].load(Ordering::Relaxed) {
            0 => ErrorKind::PeerClosed { kind },
            pid => ErrorKind::PeerDied { kind, pid },
        };
        Some(error.into())
    }

    /// Whether some handle other than the caller's (of role `own`) holds `role`, in this
    /// process or another, or a handle to it is on its way.
    pub(crate) fn has_peer(&self, role: u32, own: u32) -> bool {
        self.disconnected(role, own, false).is_none()
    }

    /// Registers this process as a holder of `role`. Without the mutex, so that opening
    /// a handle (a task's argument, a returned handle in `join_timeout` or `wait_timeout`)
    /// never waits for another holder, one stopped holding it included: a free slot is
    /// claimed by a compare-and-swap of its pid from 0 to [`CLAIMING`], filled, and only
    /// then given the pid (readers skip a slot whose pid is not positive).
    fn attach(&self, role: u32) -> Result<(), Error> {
        let (pid, start) = me();
        let h = self.header();
        let claim = || {
            h.slots.iter().find(|s| {
                s.pid
                    .compare_exchange(0, CLAIMING, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            })
        };
        let mut free = claim();
        if free.is_none() {
            // Reclaim the slots of dead processes.
            for slot in &h.slots {
                let p = slot.pid.load(Ordering::Acquire);
                if p > 0 && os::process_start_time(p) != Some(slot.start.load(Ordering::Relaxed)) {
                    let _ = slot
                        .pid
                        .compare_exchange(p, 0, Ordering::AcqRel, Ordering::Relaxed);
                }
            }
            free = claim();
        }
        let slot = free.ok_or(ErrorKind::TooManyHolders {
            kind: self.kind(),
            limit: MAX_HOLDERS,
        })?;
        h.dead_pid[role as usize % 2].store(0, Ordering::Relaxed);
        // The pid goes last: a slot is in use only once it is whole.
        slot.start.store(start, Ordering::Relaxed);
        slot.role.store(role, Ordering::Relaxed);
        slot.pid.store(pid, Ordering::Release);
        Ok(())
    }

    /// Frees this process's slot of `role`. Without the mutex, so that dropping a handle
    /// never waits for another holder (one stopped holding it would make the drop, and
    /// an ending worker, wait until it is continued): only this process writes its own
    /// slot while it lives (a claim writes a free slot; a sweep frees a dead process's),
    /// and the pid goes last when a slot is claimed, so a slot that matches is whole.
    fn detach(&self, role: u32) {
        let (pid, start) = me();
        let h = self.header();
        if let Some(slot) = h.slots.iter().find(|s| {
            s.pid.load(Ordering::Acquire) == pid
                && s.role.load(Ordering::Relaxed) == role
                && s.start.load(Ordering::Relaxed) == start
        }) {
            let _ = slot
                .pid
                .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

fn regions() -> std::sync::MutexGuard<'static, HashMap<[u8; 16], Weak<Region>>> {
    static REGIONS: OnceLock<Mutex<HashMap<[u8; 16], Weak<Region>>>> = OnceLock::new();
    REGIONS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// A region whose last handle in this process (of `role`) is dropped while a handle
/// it shipped is still on its way: kept open (the descriptor the wire names stays this
/// region's) until every handle shipped was opened at the other end, or
/// [`IN_FLIGHT_GRACE`] passed. So a handle a task returns outlives the task's own,
/// dropped when the task returned, as does a handle moved into a task's argument.
fn keep_in_transit(region: &Arc<Region>, role: usize) {
    // Every drop also lets go of what arrived meanwhile.
    let mut kept = in_transit();
    if !on_its_way(region, role, os::monotonic_ns()) {
        return;
    }
    // Unbounded but for time: each entry goes once its handles were opened or
    // [`IN_FLIGHT_GRACE`] passed, so handles nobody opens (results dropped undecoded)
    // hold their descriptors for at most that long. Dropping one earlier would let its
    // descriptor number be reused by another object while a wire still names it.
    if !kept
        .iter()
        .any(|(k, r)| Arc::ptr_eq(k, region) && *r == role)
    {
        kept.push((region.clone(), role));
    }
    // Let go as soon as they arrive, whether or not this process drops or serialises
    // another handle later.
    if SWEEPER.swap(os::getpid(), Ordering::AcqRel) != os::getpid() {
        let spawned = std::thread::Builder::new()
            .name("supervisor-in-transit".to_string())
            .spawn(sweep_in_transit);
        if spawned.is_err() {
            // Without the thread, later drops and serialisations still let go.
            SWEEPER.store(0, Ordering::Release);
        }
    }
    // A worker that ends lets the caller open what its task returned first.
    supervisor_worker::serve::before_exit(crate::linger::before_exit);
}

type Kept = Mutex<Vec<(Arc<Region>, usize)>>;

/// The pid of the process whose [`sweep_in_transit`] thread runs (0: none; another pid:
/// the thread of a process this one was forked from, not running here).
static SWEEPER: AtomicI32 = AtomicI32::new(0);
/// Most objects kept for handles on their way: half the descriptor limit, read once.
fn kept_budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET
        .get_or_init(|| os::descriptor_limit().map_or(512, |n| (n / 2).clamp(64, 1 << 20) as usize))
}

/// How often [`sweep_in_transit`] looks whether kept handles have arrived.
const SWEEP_EVERY: Duration = Duration::from_millis(5);

/// Lets go of each region kept for handles on their way once they have all arrived (or
/// their grace passed), and ends when none is kept.
fn sweep_in_transit() {
    loop {
        std::thread::sleep(SWEEP_EVERY);
        let kept = in_transit();
        if kept.is_empty() {
            // Under the lock: a region kept after this starts another sweeper.
            SWEEPER.store(0, Ordering::Release);
            return;
        }
    }
}

/// How long an ending worker waits for the handles it shipped to be opened.
const EXIT_LINGER: Duration = Duration::from_secs(2);

/// What [`keep_in_transit`] keeps, with the entries that are done dropped.
fn in_transit() -> std::sync::MutexGuard<'static, Vec<(Arc<Region>, usize)>> {
    static IN_TRANSIT: OnceLock<Kept> = OnceLock::new();
    let mut kept = IN_TRANSIT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let now = os::monotonic_ns();
    kept.retain(|(region, r)| on_its_way(region, *r, now));
    kept
}

/// Whether a handle of `role` serialised by some process has not been opened yet and
/// still counts as on its way (serialised within [`IN_FLIGHT_GRACE`]).
fn on_its_way(region: &Region, role: usize, now_ns: u64) -> bool {
    let h = region.header();
    h.shipped[role].load(Ordering::Acquire) > h.opened[role].load(Ordering::Acquire)
        && now_ns.saturating_sub(h.last_ship_ns[role].load(Ordering::Relaxed))
            < IN_FLIGHT_GRACE.as_nanos() as u64
}

/// Waits (at most [`EXIT_LINGER`]) until every handle this process shipped was opened.
pub(crate) fn linger_in_transit() {
    let until = std::time::Instant::now() + EXIT_LINGER;
    while !in_transit().is_empty() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Where a ticket's bit lies in [`Header::unopened`]: word and mask.
fn ticket_bit(ticket: u64) -> (usize, u64) {
    let n = (ticket % TICKETS as u64) as usize;
    (n / 64, 1 << (n % 64))
}

type AttachedMap = HashMap<([u8; 16], u32), Weak<Attachment>>;

fn attached() -> std::sync::MutexGuard<'static, AttachedMap> {
    static ATTACHED: OnceLock<Mutex<AttachedMap>> = OnceLock::new();
    ATTACHED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// What a handle turns into when it is serialised: where another process of the same
/// user can open the region (`/proc/<pid>/fd/<fd>`: the sender's, then the creator's),
/// and what it must find there.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Wire {
    kind: u32,
    role: u32,
    id: [u8; 16],
    sources: Vec<(u32, i32)>,
    /// Which serialisation of its role this is (see [`Header::unopened`]).
    ticket: u64,
}

impl Wire {
    /// The role the handle says it is (checked by [`Attachment::from_wire`]).
    pub(crate) fn role(&self) -> u32 {
        self.role
    }
}

/// This process holding one role of a region: registered in the region's holder table
/// while it lives. Every handle of this process to that role shares one.
pub(crate) struct Attachment {
    pub(crate) region: Arc<Region>,
    pub(crate) role: u32,
}

impl Attachment {
    /// What `Serialize` writes; counts the handle as on its way to another process.
    /// Refused ([`ErrorKind::TooManyInTransit`]) while this process keeps as many
    /// objects for handles on their way as half its descriptor limit: handles nobody
    /// opens (results dropped undecoded) must not exhaust its descriptors.
    pub(crate) fn to_wire(&self) -> Result<Wire, Error> {
        let h = self.region.header();
        let r = self.role as usize % 2;
        let budget = kept_budget();
        let kept = in_transit().len();
        if kept >= budget {
            return Err(ErrorKind::TooManyInTransit {
                kind: self.region.kind(),
                kept,
            }
            .into());
        }
        h.last_ship_ns[r].store(os::monotonic_ns(), Ordering::Relaxed);
        let ticket = h.shipped[r].fetch_add(1, Ordering::AcqRel);
        let (word, bit) = ticket_bit(ticket);
        h.unopened[r][word].fetch_or(bit, Ordering::AcqRel);
        super::shipped::note(&self.region);
        let mut sources = vec![(os::getpid() as u32, self.region.fd.as_raw_fd())];
        if h.creator_pid != sources[0].0 {
            sources.push((h.creator_pid, h.creator_fd));
        }
        Ok(Wire {
            kind: self.region.kind as u32,
            role: self.role,
            id: self.region.id,
            sources,
            ticket,
        })
    }

    /// What `Deserialize` builds: the attachment for the object a [`Wire`] names.
    pub(crate) fn from_wire(
        wire: Wire,
        kind: Kind,
        tag: u64,
        state_len: usize,
        repair: fn(&Region),
    ) -> Result<Holder, Error> {
        let wrong = |reason: String| -> Error {
            ErrorKind::WrongHandle {
                kind: kind.name(),
                reason,
            }
            .into()
        };
        if wire.kind != kind as u32 {
            return Err(wrong(match Kind::from_u32(wire.kind) {
                Some(other) => format!("it names {}", other.a_name()),
                None => format!("it names an object of unknown kind {}", wire.kind),
            }));
        }
        if wire.role >= kind.roles() {
            return Err(wrong(match kind.roles() {
                1 => format!("role {} ({} has only role 0)", wire.role, kind.a_name()),
                _ => format!("role {} ({} has roles 0 and 1)", wire.role, kind.a_name()),
            }));
        }
        let key = (wire.id, wire.role);
        let existing = attached().get(&key).and_then(Weak::upgrade);
        let att = match existing {
            // The same checks as for a region opened anew: the bytes may relabel a
            // handle of this process as another type.
            Some(att) => {
                att.region.check(kind, tag, state_len)?;
                att
            }
            None => {
                let region = Region::open(&wire, kind, tag, state_len, repair)?;
                region.attach(wire.role)?;
                let att = Arc::new(Attachment {
                    region,
                    role: wire.role,
                });
                let mut map = attached();
                map.retain(|_, w| w.strong_count() > 0);
                map.insert(key, Arc::downgrade(&att));
                att
            }
        };
        // Only the first decode of a serialisation counts it as opened: a second (the
        // same bytes decoded again, a retried task's argument) must not make a handle
        // still on its way look arrived.
        let h = att.region.header();
        let r = wire.role as usize;
        let (word, bit) = ticket_bit(wire.ticket);
        if h.unopened[r][word].fetch_and(!bit, Ordering::AcqRel) & bit != 0 {
            h.opened[r].fetch_add(1, Ordering::AcqRel);
        }
        Ok(Holder::new(att))
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        keep_in_transit(&self.region, self.role as usize % 2);
        self.region.detach(self.role);
    }
}

/// One handle (a `Queue`, an `Event`, a clone of either, ...): a holder of its role of
/// its own, so that a waiter can be woken by a clone in another thread of its process
/// as by another process. Clones are counted; the process's [`Attachment`] goes with
/// the last one.
pub(crate) struct Holder {
    att: Arc<Attachment>,
}

impl Holder {
    /// Attaches this process to `role` of a region it created: its first handle.
    pub(crate) fn attach(region: Arc<Region>, role: u32) -> Result<Holder, Error> {
        region.attach(role)?;
        let att = Arc::new(Attachment { region, role });
        attached().insert((att.region.id, role), Arc::downgrade(&att));
        Ok(Holder::new(att))
    }

    fn new(att: Arc<Attachment>) -> Holder {
        att.region.local[att.role as usize % 2].fetch_add(1, Ordering::SeqCst);
        Holder { att }
    }
}

impl Clone for Holder {
    fn clone(&self) -> Holder {
        Holder::new(Arc::clone(&self.att))
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.att.region.local[self.att.role as usize % 2].fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::ops::Deref for Holder {
    type Target = Attachment;

    fn deref(&self) -> &Attachment {
        &self.att
    }
}

/// `Serialize` and `Deserialize` for a handle type holding `att: Holder`. The type
/// tag its region must have is an expression, or `role r => expression` for a tag that
/// depends on the role decoded (a pipe's ends are of mirrored types).
macro_rules! serde_handle {
    ($ty:ident $(<$($p:ident),*>)?, $kind:expr, role $role:ident => $tag:expr, $state:ty, $repair:expr, |$att:ident| $build:expr) => {
        crate::sync::region::serde_handle!(@impl $ty $(<$($p),*>)?, $kind, |$role| $tag, $state, $repair, |$att| $build);
    };
    ($ty:ident $(<$($p:ident),*>)?, $kind:expr, $tag:expr, $state:ty, $repair:expr, |$att:ident| $build:expr) => {
        crate::sync::region::serde_handle!(@impl $ty $(<$($p),*>)?, $kind, |_role| $tag, $state, $repair, |$att| $build);
    };
    (@impl $ty:ident $(<$($p:ident),*>)?, $kind:expr, |$role:ident| $tag:expr, $state:ty, $repair:expr, |$att:ident| $build:expr) => {
        impl$(<$($p),*>)? serde::Serialize for $ty$(<$($p),*>)? {
            fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
                let wire = self.att.to_wire().map_err(|e| {
                    <Ser::Error as serde::ser::Error>::custom(supervisor_worker::error_chain(&e))
                })?;
                serde::Serialize::serialize(&wire, s)
            }
        }

        impl<'de, $($($p),*)?> serde::Deserialize<'de> for $ty$(<$($p),*>)? {
            fn deserialize<De: serde::Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
                let wire = <crate::sync::region::Wire as serde::Deserialize>::deserialize(d)?;
                let $role = wire.role();
                let tag = $tag;
                let $att = crate::sync::region::Attachment::from_wire(
                    wire,
                    $kind,
                    tag,
                    size_of::<$state>(),
                    $repair,
                )
                .map_err(|e| {
                    <De::Error as serde::de::Error>::custom(supervisor_worker::error_chain(&e))
                })?;
                Ok($build)
            }
        }
    };
}
pub(crate) use serde_handle;
