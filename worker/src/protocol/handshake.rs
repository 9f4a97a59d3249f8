//! The spawn handshake: how a re-executed child finds its parent, and the fixed-layout
//! [`Hello`] it opens with.

use super::messages::PROTOCOL_VERSION;

/// Environment variable that marks a re-executed child as a worker; it holds the path
/// of the bootstrap socket. It is removed from the environment as soon as it is read.
pub const ENV_BOOTSTRAP: &str = "__SUPERVISOR_BOOTSTRAP";
/// Environment variable with the per-spawn secret (hex); removed as soon as it is read.
pub const ENV_SECRET: &str = "__SUPERVISOR_SECRET";
/// Exit code of a child that was started as a worker but could not become one
/// (bad bootstrap, failed set-up). It ran no task.
pub const EXIT_BOOTSTRAP_FAILED: i32 = 70;
/// Exit code of a child that was started as a worker and reached the program's own
/// code (a `Process` or `Pool` about to start) without `supervisor::init()` having run
/// first in `main`. It started nothing.
pub const EXIT_NO_INIT: i32 = 78;

/// The fixed-layout first message of a spawned child. Checked byte for byte, secret
/// first, before anything else the peer sent is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version of the child.
    pub version: u32,
    /// Build id of the child's binary.
    pub build_id: u64,
    /// The child's pid, as it sees itself.
    pub pid: u32,
    /// The per-spawn secret it was given.
    pub secret: [u8; SECRET_LEN],
}

/// Length of the per-spawn secret.
pub const SECRET_LEN: usize = 32;
const HELLO_MAGIC: &[u8; 8] = b"SUPVSR\x00\x01";
/// Length of an encoded [`Hello`].
pub const HELLO_LEN: usize = 8 + 4 + 8 + 4 + SECRET_LEN;

impl Hello {
    /// The fixed 56-byte layout.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HELLO_LEN);
        out.extend_from_slice(HELLO_MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.build_id.to_le_bytes());
        out.extend_from_slice(&self.pid.to_le_bytes());
        out.extend_from_slice(&self.secret);
        out
    }

    /// Checks `bytes` against `secret` first (in constant time), then parses the rest.
    pub fn verify(bytes: &[u8], secret: &[u8; SECRET_LEN]) -> Result<Hello, HelloError> {
        if bytes.len() != HELLO_LEN {
            return Err(HelloError::Length(bytes.len()));
        }
        let theirs = &bytes[HELLO_LEN - SECRET_LEN..];
        let diff = theirs
            .iter()
            .zip(secret.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(HelloError::Secret);
        }
        if &bytes[..8] != HELLO_MAGIC {
            return Err(HelloError::Magic);
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let mut build = [0u8; 8];
        build.copy_from_slice(&bytes[12..20]);
        Ok(Hello {
            version: u32_at(8),
            build_id: u64::from_le_bytes(build),
            pid: u32_at(20),
            secret: *secret,
        })
    }
}

/// A hello that was not what we expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// Wrong size.
    #[error("hello has {0} bytes, expected {HELLO_LEN}")]
    Length(usize),
    /// The secret did not match.
    #[error("wrong secret")]
    Secret,
    /// The secret matched but the magic did not.
    #[error("bad magic")]
    Magic,
}

/// Identifies this binary: parent and worker must agree.
///
/// It combines the protocol version, the crate version and the identity of the
/// executable file (device, inode, size, modification time), so a worker started from
/// a different build of the program is refused.
pub fn build_id() -> u64 {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    static ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ID.get_or_init(|| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        PROTOCOL_VERSION.hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        if let Ok(m) = std::fs::metadata("/proc/self/exe") {
            (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()).hash(&mut h);
        }
        h.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_checks_secret_first() {
        let secret = [7u8; SECRET_LEN];
        let hello = Hello {
            version: PROTOCOL_VERSION,
            build_id: 42,
            pid: 1234,
            secret,
        };
        let bytes = hello.to_bytes();
        assert_eq!(bytes.len(), HELLO_LEN);
        assert_eq!(Hello::verify(&bytes, &secret), Ok(hello));
        assert_eq!(
            Hello::verify(&bytes, &[8u8; SECRET_LEN]),
            Err(HelloError::Secret)
        );
        let mut bad_magic = bytes.clone();
        bad_magic[0] ^= 1;
        assert_eq!(Hello::verify(&bad_magic, &secret), Err(HelloError::Magic));
        assert_eq!(
            Hello::verify(&bytes[1..], &secret),
            Err(HelloError::Length(HELLO_LEN - 1))
        );
    }
}
