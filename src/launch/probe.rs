//! A spawn start's probe in the temporary directory (`os::check_temp_dir`), shared by
//! the start and its accept thread, and removed by whichever needs it last.
//!
//! The probe records the bootstrap directory until that directory is gone. Once the
//! accept succeeded, ipc-channel's server has removed the directory, so the accept
//! thread removes the probe right after telling the start, while the start checks the
//! hello and sends the configuration (the unlink had come after those, on the start's
//! way to its first task); the start returns only once it is gone, as before. On every
//! other path the start removes it when it returns, after the directory.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::os;

/// The probe, until one side takes it.
#[derive(Clone)]
pub(super) struct Probe(Arc<Mutex<Option<os::TempProbe>>>);

impl Probe {
    pub(super) fn new(probe: os::TempProbe) -> Self {
        Self(Arc::new(Mutex::new(Some(probe))))
    }

    fn lock(&self) -> MutexGuard<'_, Option<os::TempProbe>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `tell` (which tells the start its accept succeeded), then, if directory
    /// `dir` was seen gone before, removes the probe, holding the start's
    /// [`ProbeOwner`] back until then: the start's work after the news overlaps the
    /// unlink, and the start still returns only once the probe is gone.
    pub(super) fn remove_after(&self, dir: Option<&Path>, tell: impl FnOnce()) {
        let gone = dir.is_some_and(|dir| {
            std::fs::symlink_metadata(dir).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        });
        let mut held = self.lock();
        let probe = if gone { held.take() } else { None };
        tell();
        drop(probe);
        drop(held);
    }
}

/// The start's hold on its [`Probe`]: removes it when dropped, or waits for the accept
/// thread removing it; an accept thread that outlives its start holds no probe.
pub(super) struct ProbeOwner(pub(super) Probe);

impl Drop for ProbeOwner {
    fn drop(&mut self) {
        // Waits for an accept thread removing it (`Probe::remove_after`).
        drop(self.0.lock().take());
    }
}
