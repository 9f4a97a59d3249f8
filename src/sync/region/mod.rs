//! One shared region per object: a memfd mapped `MAP_SHARED` in every process that
//! holds the object. The region starts with a [`Header`] (identity, a robust
//! process-shared mutex, the table of holders) followed by the object's own state and
//! data. See `docs/ARCHITECTURE.md`, "Queue, Pipe, shared memory and locks".

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::error::{Error, ErrorKind};
use crate::os::{self, Mapping, SharedMutex};

mod handle;
mod holders;
mod transit;
mod wait;

pub(crate) use handle::{serde_handle, Attachment, Holder, Wire};
pub(crate) use transit::linger_in_transit;
pub(crate) use wait::{notify, Waiter};

const MAGIC: u64 = u64::from_le_bytes(*b"SUPVSYNC");
const VERSION: u32 = 2;
/// Holders one object can have at once: one per process and role (a process holding
/// both ends of a pipe takes two). Documented on every handle type and in the README.
pub(crate) const MAX_HOLDERS: usize = 128;
/// Serialisations of one role whose first decode is told apart from a repeated one: a
/// ring of that many bits, indexed by the ticket a [`Wire`] carries.
const TICKETS: usize = 4096;

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
}

fn regions() -> std::sync::MutexGuard<'static, HashMap<[u8; 16], Weak<Region>>> {
    static REGIONS: OnceLock<Mutex<HashMap<[u8; 16], Weak<Region>>>> = OnceLock::new();
    REGIONS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}
