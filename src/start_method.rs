//! The three ways to create a worker.

use std::fmt;
use std::str::FromStr;

/// How a worker process is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StartMethod {
    /// Re-execute this program (`/proc/self/exe`); the child becomes a worker inside
    /// `init()`. A clean process: no inherited threads, locks or memory. The default.
    #[default]
    Spawn,
    /// Fork a single-threaded zygote that `init()` made: fast, and it shares the
    /// program's memory as it was at `init()`, copy-on-write.
    Fork,
    /// Fork from a re-executed server started on first use: spawn's clean state at
    /// nearly fork's speed.
    Forkserver,
}

impl StartMethod {
    /// Every start method.
    pub const ALL: [StartMethod; 3] = [
        StartMethod::Spawn,
        StartMethod::Fork,
        StartMethod::Forkserver,
    ];

    /// The lowercase name, as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Spawn => "spawn",
            StartMethod::Fork => "fork",
            StartMethod::Forkserver => "forkserver",
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// An unknown start method name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown start method `{0}` (expected spawn, fork or forkserver)")]
pub struct UnknownStartMethod(String);

impl FromStr for StartMethod {
    type Err = UnknownStartMethod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StartMethod::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownStartMethod(s.to_string()))
    }
}
