//! What an ending worker waits for before it exits: the caller opening the handles and
//! spooled outputs its tasks returned.

/// Runs before a worker exits (registered with `supervisor_worker::serve::before_exit`
/// by whoever ships something the caller must open).
pub(crate) fn before_exit() {
    crate::sync::region::linger_in_transit();
    crate::command::linger_spools();
}
