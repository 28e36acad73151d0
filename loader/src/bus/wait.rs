//! A publisher waiting for room in a full mailbox under `overflow =
//! "block"`, and the cycles of such waits: the publisher that closes a cycle
//! finds it at once; the one with the lowest slot in it drops its event,
//! woken by the closer when that is another one.

use super::Bus;
use crate::event::Event;
use crate::mailbox::Slot;
use crate::text::Escaped;
use crossbeam_channel::{Select, SendTimeoutError};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How often a blocked publisher looks whether its receiver stopped taking
/// events (a cycle of waits wakes it at once).
const CYCLE_CHECK: Duration = Duration::from_millis(10);

impl Bus {
    /// Wait until `target`'s full mailbox takes `event`. `from`, the
    /// instance whose thread waits, looks for a cycle of waits at once, and
    /// again whenever the publisher that closes one wakes it.
    pub(super) fn wait_for_room(&self, from: Option<&Slot>, target: &Slot, mut event: Event) {
        if let Some(me) = from {
            // A wake left from an earlier wait is stale; one sent from now
            // on, after this wait is visible, is for this one.
            while me.wake_rx.try_recv().is_ok() {}
            me.waiting_on.store(target.index + 1, Ordering::Release);
        }
        loop {
            let give_up = if !target.accepts_events() || self.closed.load(Ordering::Acquire) {
                Some("the receiver stopped taking events")
            } else if from.is_some_and(|me| self.breaks_cycle(me, target)) {
                Some("publishers blocked on each other in a cycle (see docs: delivery)")
            } else {
                None
            };
            if let Some(reason) = give_up {
                target
                    .stats
                    .producer
                    .abandoned
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin = %target.name, "dropped event {} on {}: {reason}", event.id(), Escaped(event.topic()));
                break;
            }
            let Some(me) = from else {
                match target.tx.send_timeout(event, CYCLE_CHECK) {
                    Ok(()) => break,
                    Err(SendTimeoutError::Timeout(back)) => event = back,
                    Err(SendTimeoutError::Disconnected(_)) => {
                        unreachable!("a slot owns its own receiver")
                    }
                }
                continue;
            };
            let mut select = Select::new();
            let room = select.send(&target.tx);
            select.recv(&me.wake_rx);
            match select.select_timeout(CYCLE_CHECK) {
                Ok(op) if op.index() == room => match op.send(&target.tx, event) {
                    Ok(()) => break,
                    Err(_) => unreachable!("a slot owns its own receiver"),
                },
                Ok(op) => {
                    let _ = op.recv(&me.wake_rx);
                }
                Err(_) => {}
            }
        }
        if let Some(me) = from {
            me.waiting_on.store(0, Ordering::Release);
        }
    }

    /// True when `me`, blocked on `target`, closes a cycle of instances each
    /// blocked on the next, and `me` has the lowest slot index in it: that one
    /// publisher gives up, so exactly one event is dropped per cycle. When
    /// another one has the lowest index, it is woken to find the cycle. The
    /// cycle is read twice: a publisher that just got room clears its wait
    /// a moment later, and must not be taken for a blocked one.
    fn breaks_cycle(&self, me: &Slot, target: &Slot) -> bool {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        let Some(lowest) = lowest_in_cycle(&slots, me, target) else {
            return false;
        };
        if lowest != me.index {
            // Full: a wake is already pending.
            let _ = slots[lowest].wake_tx.try_send(());
            return false;
        }
        lowest_in_cycle(&slots, me, target) == Some(me.index)
    }
}

/// The lowest slot index in the cycle of waits that `me`, blocked on
/// `target`, closes, if it closes one.
fn lowest_in_cycle(slots: &[std::sync::Arc<Slot>], me: &Slot, target: &Slot) -> Option<usize> {
    let mut lowest = me.index;
    let mut current = target.index;
    for _ in 0..=slots.len() {
        if current == me.index {
            return Some(lowest);
        }
        lowest = lowest.min(current);
        match slots[current].waiting_on.load(Ordering::Acquire) {
            0 => return None,
            next => current = next - 1,
        }
    }
    None
}
