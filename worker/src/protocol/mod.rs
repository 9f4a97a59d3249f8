//! The wire protocol between a parent and its workers.
//!
//! ipc-channel moves [`Frame`]s: codec bytes, an optional shared-memory region for big
//! messages, and channel handles. What a frame means is one of the message enums
//! ([`ToChild`], [`FromChild`]), encoded by [`crate::codec`]; ipc-channel never sees
//! our types, so every decode of peer data goes through the bounded codec.
//!
//! A spawned worker opens with a fixed-layout [`Hello`] that is checked byte for byte
//! (secret first) before anything else the peer sent is decoded.
//!
//! - `frame`: [`Frame`], what one ipc-channel message carries.
//! - `link`: [`Link`] and [`Receiver`], sending and checked receiving, [`LinkError`].
//! - `messages`: what parent and child say to each other.
//! - `handshake`: the spawn hello, its environment variables, [`build_id`].

mod frame;
mod handshake;
mod link;
mod messages;

pub use frame::{Channel, Frame, INLINE_LIMIT};
pub use handshake::{
    build_id, Hello, HelloError, ENV_BOOTSTRAP, ENV_SECRET, EXIT_BOOTSTRAP_FAILED, EXIT_NO_INIT,
    HELLO_LEN, SECRET_LEN,
};
pub use link::{send_frame, Link, LinkError, Receiver};
pub use messages::{
    FromChild, Role, TaskOutcome, TaskRequest, TaskRequestRef, Timing, ToChild, ToChildRef,
    WorkerConfig, INIT_ID, PROTOCOL_VERSION,
};
