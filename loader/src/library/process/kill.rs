//! Ending a child of the host's, or its whole process group, at once: the
//! pids named here are the host's own children, not yet reaped, so their
//! numbers cannot have been reused.

use rustix::process::{Pid, Signal, kill_process, kill_process_group};

/// SIGKILL to the process group led by `pid`, a child of ours not yet
/// reaped (so the number is still its own).
pub(crate) fn kill_group(pid: i32) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = kill_process_group(pid, Signal::KILL);
    }
}

/// SIGKILL to `pid`, a child of ours not yet reaped.
pub(crate) fn kill_child(pid: i32) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = kill_process(pid, Signal::KILL);
    }
}
