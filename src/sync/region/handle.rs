//! What a handle serialises to, and the attachment and holder behind every handle.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use serde::{Deserialize, Serialize};

use super::transit::{in_transit, keep_in_transit, kept_budget, ticket_bit};
use super::{Kind, Region};
use crate::error::{Error, ErrorKind};
use crate::os;

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
    pub(super) id: [u8; 16],
    pub(super) sources: Vec<(u32, i32)>,
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
        crate::sync::shipped::note(&self.region);
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
