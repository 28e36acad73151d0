//! Shutdown: intake closes; every queue drains (the bus balance settles);
//! every instance's `stop` runs, last started first, while every mailbox
//! still takes events, and what each stop publishes is drained before the
//! next one, so it reaches every subscriber whatever its place in the
//! config; then each instance ends (its thread, its library's `destroy`, its
//! process), and what is still queued for it or published to it afterwards
//! is dropped, counted and logged. All of it within `shutdown_timeout`, plus
//! [`STOP_GRACE`] for the stops and their deliveries (and one more for the
//! stops that time left out), with the watchdog on.

use super::Host;
use crate::config::Isolation;
use crate::mailbox::{Slot, State};
use crate::observe::lifecycle;
use crate::observe::report::InstanceReport;
use crate::observe::state;
use crate::supervisor::{Background, WATCHDOG, WorkerHandle};
use crate::worker::Control;
use crossbeam_channel::RecvTimeoutError;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Extra time, past `shutdown_timeout`, for the instances' `stop` and the
/// delivery of what they publish.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// How long instances get to end once their stops are done (a C plugin's
/// `destroy`, a process child's exit), even past the deadline.
const TEARDOWN_GRACE: Duration = Duration::from_secs(1);

/// How long a process instance's thread gets to notice that its child,
/// killed because it did not answer in time, is gone.
const KILL_WAIT: Duration = Duration::from_secs(1);

impl Host {
    /// Drain and stop in phases (see the module docs), within the config's
    /// `shutdown_timeout` plus a grace for the stops. What cannot be
    /// delivered is dropped, counted and logged. Returns the final report.
    /// Calling it again returns the report without doing anything.
    pub fn shutdown(&self) -> Vec<InstanceReport> {
        let supervisor = &self.supervisor;
        let first = supervisor.begin_shutdown();
        supervisor.close_intake();
        // The watchdog keeps watching until the end: a handler stuck now
        // must still be reported (and a process plugin killed).
        let (watchdog, others): (Vec<Background>, Vec<Background>) = supervisor
            .take_background()
            .into_iter()
            .partition(|background| background.name == WATCHDOG);
        others.into_iter().for_each(Background::stop);

        if first {
            state::stopped(supervisor);
        }
        let deadline = Instant::now() + self.config().host.shutdown_timeout;
        let stops_deadline = deadline + STOP_GRACE;
        let bus = &supervisor.bus;
        // 1. Drain: every queue empties while every instance runs.
        let mut idle = self.wait_idle(deadline);
        if !idle {
            tracing::warn!(
                "shutdown_timeout reached with events still queued; they are dropped and counted"
            );
        }
        let mut workers = std::mem::take(&mut *supervisor.workers());
        // Not those stopped by an operator or retired by a reload: they ended.
        let live: Vec<&WorkerHandle> = workers.iter().filter(|w| w.is_alive()).collect();
        let slots: Vec<Arc<Slot>> = live.iter().map(|w| w.slot.clone()).collect();

        // 2. Stop, and 3. drain again: each instance's `stop`, last started
        // first, one after another; none ends yet. What a stop publishes (and
        // what handlers publish in turn) is drained before the next one
        // stops, so it reaches every subscriber: those listed before the
        // publisher before their own `stop`, the others after theirs.
        let mut stopped: Vec<Option<bool>> = vec![None; live.len()];
        let mut left = live.len();
        while idle && left > 0 && Instant::now() < stops_deadline {
            left -= 1;
            let wait = order_stop(live[left], None);
            let late = format!("did not finish its `stop` by shutdown_timeout + {STOP_GRACE:?}");
            stopped[left] = await_all(vec![wait], stops_deadline, &late).pop().flatten();
            if stopped[left] == Some(true) {
                lifecycle::stopped(bus, &live[left].slot);
            }
            idle = self.wait_idle(stops_deadline);
            if !idle {
                tracing::warn!(
                    "what the plugins published in `stop` was not all delivered within shutdown_timeout + {STOP_GRACE:?}; the rest is dropped and counted"
                );
            }
        }
        if left > 0 {
            // Out of time (a queue that would not drain, a stop that would
            // not return): the others drop their queues and run their `stop`
            // together, and what they publish is drained, within one more
            // grace.
            tracing::warn!(
                "no time left to stop the instances one after another: the other {left} drop their queues and run their `stop` together, within {STOP_GRACE:?}"
            );
            let until = Instant::now() + STOP_GRACE;
            // What is queued from now on was published by the stops (or by
            // handlers in turn): delivered, not dropped with the queues.
            let deadline = bus.next_event_id();
            let waits = live[..left]
                .iter()
                .map(|w| order_stop(w, Some(deadline)))
                .collect();
            let late = format!("did not finish its `stop` within {STOP_GRACE:?}");
            let answers = await_all(waits, until, &late);
            for (i, answer) in answers.into_iter().enumerate().rev() {
                stopped[i] = answer;
                if answer == Some(true) {
                    lifecycle::stopped(bus, &live[i].slot);
                }
            }
            if !self.wait_idle(until) {
                tracing::warn!(
                    "what they published in `stop` was not all delivered within {STOP_GRACE:?}; the rest is dropped and counted"
                );
            }
        }

        // 4. Tear down: each instance ends and is dropped, all at once; from
        // then on what is queued for it, or published to it, is dropped and
        // counted. Not those abandoned in their `stop`.
        let before: Vec<u64> = slots.iter().map(|slot| slot.counts().dropped).collect();
        let waits: Vec<_> = live
            .iter()
            .zip(&stopped)
            .filter(|(_, stopped)| stopped.is_some())
            .map(|(worker, _)| {
                worker.order(Control::Stop { drain: false });
                let done = worker.done.clone();
                let ended = move |until: Instant| match done.recv_deadline(until) {
                    Err(RecvTimeoutError::Timeout) => None,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => Some(()),
                };
                (*worker, ended)
            })
            .collect();
        let late = format!("did not end within {TEARDOWN_GRACE:?}");
        await_all(waits, Instant::now() + TEARDOWN_GRACE, &late);
        for worker in &mut workers {
            if worker.is_alive() {
                continue; // abandoned, stuck in the plugin
            }
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
        watchdog.into_iter().for_each(Background::stop);
        bus.close();
        for (slot, before) in slots.iter().zip(before) {
            let late = slot.counts().dropped.saturating_sub(before);
            if late > 0 {
                tracing::warn!(plugin = %slot.name, "{late} event(s) still queued for it when it ended, or published to it afterwards, could not be delivered and are counted as dropped");
            }
        }
        self.report()
    }

    /// Wait until no event is queued or in a handler anywhere, or `deadline`.
    /// An instance waiting to restart counts as busy: it comes back, takes
    /// what waits for it, and stops like the others.
    fn wait_idle(&self, deadline: Instant) -> bool {
        let mut previous = None;
        loop {
            let balance = self.supervisor.bus.balance();
            let restarting = self
                .supervisor
                .slots()
                .iter()
                .any(|s| s.state() == State::Restarting);
            if balance.0 == balance.1 && previous == Some(balance) && !restarting {
                return true;
            }
            // Two looks at least, even past the deadline: a quiet bus is
            // not reported as busy.
            if previous.is_some() && Instant::now() >= deadline {
                return false;
            }
            previous = Some(balance);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Order `worker`'s instance to run its `stop` in place (handling what is
/// queued first, or dropping what was published before `drop_before`, the
/// deadline); with what waits for its
/// answer (whether `stop` ran cleanly) until a given instant, `None` if it
/// did not come by then.
fn order_stop(
    worker: &WorkerHandle,
    drop_before: Option<u64>,
) -> (&WorkerHandle, impl Fn(Instant) -> Option<bool>) {
    let (reply, answer) = crossbeam_channel::bounded(1);
    worker.order(Control::StopInPlace { drop_before, reply });
    let answered = move |until: Instant| match answer.recv_deadline(until) {
        Ok(clean) => Some(clean),
        Err(RecvTimeoutError::Disconnected) => Some(false),
        Err(RecvTimeoutError::Timeout) => None,
    };
    (worker, answered)
}

/// Wait for the workers of `waits` to answer (each one's function waits for
/// its answer until the instant it is given), until `deadline`. One that did
/// not answer by then (`late` says what it did not do) is given up on: a
/// process instance's child is killed (all of them at once), and its thread
/// gets [`KILL_WAIT`] more to notice and answer; a thread stuck in the plugin
/// is abandoned, with what it queued and held counted as dropped. Returns
/// each one's answer, `None` for those abandoned.
fn await_all<T>(
    waits: Vec<(&WorkerHandle, impl Fn(Instant) -> Option<T>)>,
    deadline: Instant,
    late: &str,
) -> Vec<Option<T>> {
    let mut answers: Vec<Option<T>> = waits.iter().map(|(_, answer)| answer(deadline)).collect();
    let in_process = |worker: &WorkerHandle| worker.slot.settings().isolation == Isolation::Process;
    let overdue: Vec<usize> = (0..waits.len()).filter(|&i| answers[i].is_none()).collect();
    for &i in &overdue {
        if in_process(waits[i].0) {
            waits[i].0.slot.child.kill();
        }
    }
    let killed = Instant::now() + KILL_WAIT;
    for i in overdue {
        let (worker, answer) = &waits[i];
        let slot = &worker.slot;
        if in_process(worker)
            && let Some(answered) = answer(killed)
        {
            let reason = format!("{late}; its process was killed");
            tracing::error!(plugin = %slot.name, "{reason}");
            slot.set_last_error(reason);
            answers[i] = Some(answered);
            continue;
        }
        // The thread is stuck in the plugin and will not count what it
        // holds: what is queued is dropped, and what it holds (the event in
        // its handler, a batch) is lost, both counted.
        let queued = slot.drop_queued();
        let (offered, finished) = slot.stats.balance();
        let held = offered.saturating_sub(finished);
        slot.stats
            .consumer
            .discarded
            .fetch_add(held, Ordering::AcqRel);
        let reason = format!(
            "{late}; its thread is abandoned with {} event(s) unfinished, counted as dropped",
            queued + held
        );
        tracing::error!(plugin = %slot.name, "{reason}");
        slot.set_last_error(reason);
        slot.set_state(State::Failed);
    }
    answers
}
