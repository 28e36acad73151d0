//! How an instance ends: an operator's (or a reload's) stop, after or
//! without its queue; the shutdown's stop in place, which runs the plugin's
//! `stop` while it still takes events; and its last step, the teardown.

use super::{BATCH, Worker};
use crate::event::Event;
use crate::mailbox::{State, add};
use crate::observe::lifecycle;
use std::time::Instant;

impl Worker {
    /// End the instance: handle (`drain`) or drop what is queued, run its
    /// `stop`, drop it. After the shutdown's [`Worker::stop_in_place`], only
    /// the last step is left: see [`Worker::tear_down`].
    pub(super) fn finish(mut self, drain: bool) {
        if self.stop_ran {
            return self.tear_down();
        }
        if matches!(self.slot.state(), State::Running | State::Restarting) {
            self.slot.set_state(State::Stopping);
        }
        if drain {
            self.handle_queued(usize::MAX);
        } else {
            self.drop_queue();
        }
        self.errors.flush(&self.slot.name);
        if let Some(mut instance) = self.instance.take() {
            match instance.stop() {
                Ok(()) => self.slot.set_state(State::Stopped),
                Err(failure) => lifecycle::failed(
                    &self.bus,
                    &self.slot,
                    format!("stop {failure}"),
                    State::Failed,
                ),
            }
        } else if matches!(self.slot.state(), State::Stopping | State::Restarting) {
            // It died while draining: it stops failed.
            self.slot.set_state(State::Failed);
        }
    }

    /// Hand the instance up to `limit` events from its mailbox (those a
    /// failure left first), in runs of up to [`BATCH`]; once it has failed,
    /// the rest of a run is counted as dropped.
    pub(super) fn handle_queued(&mut self, mut limit: usize) {
        let batched = self.instance.as_ref().is_some_and(|i| i.batched());
        while limit > 0 {
            let mut batch: Vec<Event> = self.requeue.drain(..).collect();
            let room = BATCH.min(limit).saturating_sub(batch.len());
            batch.extend(self.slot.rx.try_iter().take(room));
            if batch.is_empty() {
                break;
            }
            limit = limit.saturating_sub(batch.len());
            if batched {
                self.handle_batch(&batch);
            } else {
                let started = Instant::now();
                let mut called = 0;
                for event in &batch {
                    called += u64::from(self.handle(event));
                }
                let handler = &self.slot.stats.consumer.handler;
                handler.record(started.elapsed(), called);
            }
        }
    }

    /// Count what is queued (and what a failure left) as dropped, unhandled;
    /// returns how much.
    pub(super) fn drop_queue(&mut self) -> u64 {
        let requeued = self.requeue.len() as u64;
        self.requeue.clear();
        add(&self.slot.stats.consumer.discarded, requeued);
        requeued + self.slot.drop_queued()
    }

    /// Count as dropped what is queued and was published before event id
    /// `deadline`; keep the rest (published since: what other instances'
    /// `stop`s publish while this one's order waits) at the front of the
    /// queue, in order. Returns how many were dropped.
    pub(super) fn drop_queued_before(&mut self, deadline: u64) -> u64 {
        let queued = self.slot.rx.len();
        let held: Vec<Event> = self
            .requeue
            .drain(..)
            .chain(self.slot.rx.try_iter().take(queued))
            .collect();
        let (old, new): (Vec<Event>, Vec<Event>) =
            held.into_iter().partition(|event| event.id() < deadline);
        self.requeue.extend(new);
        add(&self.slot.stats.consumer.discarded, old.len() as u64);
        old.len() as u64
    }

    /// The shutdown's stop phase ([`Control::StopInPlace`]): handle what is
    /// queued now, or drop what was queued at the deadline (`drop_before`),
    /// then run the plugin's `stop`, and keep the instance taking events.
    /// Returns whether `stop` ran and returned cleanly. An instance that is
    /// down (failed, flapping, waiting to restart) stays down: what waits for
    /// it is dropped, counted.
    pub(super) fn stop_in_place(&mut self, drop_before: Option<u64>) -> bool {
        self.stop_ran = true;
        if self.instance.is_none() {
            if self.slot.state() == State::Restarting {
                self.slot.set_state(State::Failed);
            }
            self.drop_backlog();
            return false;
        }
        self.slot.set_state(State::Stopping);
        match drop_before {
            None => {
                // What is queued now, and no more: a plugin that feeds its own
                // mailbox cannot keep its `stop` from running.
                let queued = self.requeue.len() + self.slot.rx.len();
                self.handle_queued(queued);
            }
            Some(deadline) => {
                // Not what another instance's `stop` published since the
                // deadline, which the stops running together deliver.
                let dropped = self.drop_queued_before(deadline);
                if dropped > 0 {
                    tracing::warn!(
                        plugin = %self.slot.name,
                        "{dropped} event(s) still queued at the shutdown deadline were dropped (counted)"
                    );
                }
                self.handle_queued(self.requeue.len());
            }
        }
        self.errors.flush(&self.slot.name);
        let Some(instance) = self.instance.as_mut() else {
            return false; // it failed on one of them, for good (see `fail`)
        };
        match instance.stop() {
            Ok(()) => true,
            Err(failure) => {
                self.instance = None;
                let reason = format!("stop {failure}");
                lifecycle::failed(&self.bus, &self.slot, reason, State::Failed);
                self.drop_backlog();
                false
            }
        }
    }

    /// The shutdown's last phase, after [`Worker::stop_in_place`]: the
    /// instance is dropped (a C plugin's `destroy` runs, a process child
    /// exits and is reaped) without its `stop` again. It takes no event from
    /// the moment it is `stopped`: what is still queued then, or published to
    /// it later, is counted as dropped (the host logs how many).
    pub(super) fn tear_down(mut self) {
        self.errors.flush(&self.slot.name);
        if self.instance.is_some() {
            self.slot.set_state(State::Stopped);
        }
        self.drop_queue();
        drop(self.instance.take());
    }
}
