//! What the worker does when its instance fails: report it, and carry out
//! the restart policy's verdict (a restart after its backoff on a fresh
//! thread, flapping, or staying down), still obeying orders meanwhile.

use super::{Init, Next, Worker, incarnate};
use crate::instance::CallFailure;
use crate::mailbox::State;
use crate::observe::lifecycle::{self, Lifecycle};
use crossbeam_channel::RecvTimeoutError;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Worker {
    /// The instance is dead: report it, and leave the rest to the restart policy.
    pub(super) fn fail(&mut self, failure: CallFailure) {
        // Drop it here, on its own thread (a process instance reaps its child).
        self.instance = None;
        let next = if !self.stop_ran && self.supervision.wants_restart(&failure) {
            State::Restarting
        } else {
            State::Failed
        };
        lifecycle::failed(&self.bus, &self.slot, failure.to_string(), next);
        self.pending_failure = Some(failure);
    }

    /// An `init` after the first start failed or timed out: a failure like
    /// any other, for the restart policy.
    pub(crate) fn fail_init(&mut self, failure: CallFailure) {
        self.fail(failure.context("init"));
    }

    /// The instance will not run again unless an operator (or a reload)
    /// starts it: what waits for it is counted as dropped now, not when
    /// someone restarts it or the host stops.
    pub(super) fn drop_backlog(&mut self) {
        let dropped = self.drop_queue();
        if dropped > 0 {
            tracing::warn!(
                plugin = %self.slot.name,
                "{dropped} queued event(s) counted as dropped: it is {} and takes no events until it is started again",
                self.slot.state().as_str()
            );
        }
    }

    /// Apply the restart policy to a failure: restart after a backoff, or
    /// declare the instance flapping, or leave it failed.
    pub(super) fn supervise(&mut self, failure: CallFailure) -> Next {
        let slot = self.slot.clone();
        if self.stop_ran || !self.supervision.wants_restart(&failure) {
            self.drop_backlog();
            return Next::Go;
        }
        loop {
            let Some(delay) = self.supervision.next_delay(Instant::now()) else {
                let reason = self.supervision.flapping();
                tracing::error!(plugin = %slot.name, "{reason}");
                slot.set_last_error(reason.clone());
                slot.set_state(State::Flapping);
                let restarts = slot.restarts.load(Ordering::Acquire);
                let flapping = Lifecycle::Flapping { restarts, reason };
                lifecycle::publish_from_instance(&self.bus, &slot, flapping);
                self.drop_backlog();
                return Next::Go;
            };
            slot.set_state(State::Restarting);
            // Wait out the backoff on the control lane: a stop order still works.
            let until = Instant::now() + delay;
            loop {
                match self.control.recv_deadline(until) {
                    Ok(order) => {
                        let next = self.obey(order);
                        // A stop, a replacement, a replacement that failed,
                        // or the shutdown's stop: no restart.
                        if !next.go() || self.pending_failure.is_some() || self.stop_ran {
                            return next;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return Next::Stop(false),
                }
            }
            self.supervision.restarting(Instant::now());
            let restarts = slot.restarts.fetch_add(1, Ordering::AcqRel) + 1;
            let limit = self.supervision.start_timeout;
            let failure = match incarnate(&slot, &self.factory, limit, None) {
                Init::Ready { worker, .. } => {
                    slot.set_state(State::Running);
                    tracing::info!(plugin = %slot.name, "restarted (restart {restarts})");
                    let restarted = Lifecycle::Restarted { restarts };
                    lifecycle::publish_from_instance(&self.bus, &slot, restarted);
                    return Next::Handoff(worker);
                }
                Init::Failed(failure) => format!("init {failure}"),
                Init::NoThread(cause) => format!("cannot start its thread: {cause}"),
                // A stop was ordered: the control lane has it.
                Init::Cancelled => return Next::Go,
            };
            lifecycle::failed(&self.bus, &slot, failure, State::Restarting);
        }
    }
}
