//! Who publishes, as routing sees it: the instance whose event it is (for
//! the no-echo rule) and the instance whose own thread waits (for cycles of
//! waits).

use crate::mailbox::Slot;
use std::sync::atomic::Ordering;

/// Who publishes, as routing sees it.
#[derive(Clone, Copy, Default)]
pub(crate) struct Origin<'a> {
    /// The instance whose event it is: not delivered back to it unless it
    /// set `echo = true`.
    pub instance: Option<&'a Slot>,
    /// The instance whose own thread publishes: it is the one that waits on
    /// full mailboxes, and may close a cycle of waits (see module docs). A
    /// plugin's other threads wait too, but hold up no mailbox.
    pub waiter: Option<&'a Slot>,
}

impl<'a> Origin<'a> {
    /// Instance `slot`, on its own thread.
    pub(crate) fn instance(slot: &'a Slot) -> Origin<'a> {
        Origin {
            instance: Some(slot),
            waiter: Some(slot),
        }
    }

    /// Instance `slot`, from a thread that is not its own.
    pub(crate) fn instance_elsewhere(slot: &'a Slot) -> Origin<'a> {
        Origin {
            instance: Some(slot),
            waiter: None,
        }
    }

    /// Whether `target` is the publishing instance and must not get its own
    /// event back: no allocation, no lock, two loads.
    #[inline]
    pub(super) fn echoes_to(&self, target: &Slot) -> bool {
        self.instance
            .is_some_and(|me| me.instance_id == target.instance_id)
            && !target.echo.load(Ordering::Relaxed)
    }
}
