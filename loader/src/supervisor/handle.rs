//! The supervisor's handle on one instance's thread: the sending end of its
//! control lane, what it runs (its plugin table and library), and how to
//! tell that it ended.

use super::error::InstanceError;
use crate::bus::Bus;
use crate::config::PluginConfig;
use crate::library::Library;
use crate::mailbox::{Slot, State};
use crate::observe::lifecycle;
use crate::worker::Control;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long an operator's stop waits for an instance to finish its queue.
pub(crate) const STOP_WAIT: Duration = Duration::from_secs(30);

/// The host's handle on one instance's thread.
pub(crate) struct WorkerHandle {
    pub slot: Arc<Slot>,
    pub control: Sender<Control>,
    /// Disconnects when the thread ends.
    pub done: Receiver<()>,
    pub thread: Option<JoinHandle<()>>,
    /// The config and library the instance runs with.
    pub plugin: PluginConfig,
    pub library: Arc<Library>,
}

impl WorkerHandle {
    /// Put `order` on the control lane and have the thread look there before
    /// its next event (send first: the thread clears the flag, then reads).
    pub(crate) fn order(&self, order: Control) {
        if let Control::Stop { .. } | Control::StopInPlace { .. } = order {
            self.slot.stop_asked.store(true, Ordering::Release);
        }
        if self.control.send(order).is_ok() {
            self.slot.control_pending.store(true, Ordering::Release);
        }
    }

    /// Order a stop after the queue (`drain`) or without it; what to wait
    /// on, if the thread runs.
    pub(crate) fn stop_order(&self, drain: bool) -> Option<Waiter> {
        if !self.is_alive() {
            return None;
        }
        self.order(Control::Stop { drain });
        Some(Waiter {
            slot: self.slot.clone(),
            done: self.done.clone(),
        })
    }

    /// Whether the instance's thread still runs.
    pub(crate) fn is_alive(&self) -> bool {
        matches!(
            self.done.try_recv(),
            Err(crossbeam_channel::TryRecvError::Empty)
        )
    }
}

/// What to wait on for a worker to finish, without holding the workers' lock.
pub(crate) struct Waiter {
    pub slot: Arc<Slot>,
    pub done: Receiver<()>,
}

impl Waiter {
    /// Wait for the thread to end.
    pub(crate) fn wait(&self) -> Result<(), InstanceError> {
        // Nothing is ever sent on `done`: it disconnects when the thread ends.
        match self.done.recv_timeout(STOP_WAIT) {
            Err(RecvTimeoutError::Timeout) => Err(InstanceError::StopTimeout {
                name: self.slot.name.to_string(),
                waited: STOP_WAIT,
            }),
            _ => Ok(()),
        }
    }

    /// Wait for the thread to end; publish `stopped` if it stopped cleanly.
    pub(crate) fn finish(self, bus: &Bus) -> Result<(), InstanceError> {
        self.wait()?;
        if self.slot.state() == State::Stopped {
            lifecycle::stopped(bus, &self.slot);
        }
        Ok(())
    }
}
