//! An instance's own thread: the worker that takes its events from its
//! mailbox and hands them to the plugin, obeys the orders of its control
//! lane between events, and carries out restarts and stops. Everything here
//! works on the language-neutral [`Instance`] interface.
//!
//! Invariants: only the instance's own thread calls into the plugin (each
//! incarnation of an instance, at start and at every restart, gets a fresh
//! thread that runs its `init` and then its events; see [`incarnate`]); events
//! are taken in mailbox order; a failed instance never sees another event, and
//! its queued events are counted as dropped the moment it fails for good. An
//! instance's counters belong to its name: a reload that gives it a new
//! mailbox carries them over. At the host's shutdown an instance's `stop`
//! runs while it still takes events, and it ends only later (see
//! [`Control::StopInPlace`]); any other stop ends it right after its `stop`.

mod control;
mod errors;
mod incarnate;
mod orders;
mod restart;
mod stop;

pub(crate) use control::{Control, Factory, Probe, ProbeAnswer, Reply};
pub(crate) use incarnate::Init;

use crate::bus::Bus;
use crate::event::{Event, coarse_nanos};
use crate::instance::{CallFailure, Instance};
use crate::mailbox::{Slot, State, add, bump};
use crate::supervisor::policy::Supervision;
use crate::text::Escaped;
use crossbeam_channel::{Receiver, Sender, select};
use errors::ErrorLog;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How many events the thread takes from its mailbox between looks at its
/// control lane.
const BATCH: usize = 256;

/// How long an idle instance watches its mailbox before it parks. Waking a
/// parked thread costs tens of microseconds on a virtual machine, so a steady
/// stream of events finds its thread awake, at the cost of a core that stays
/// busy while events keep coming more often than this.
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// The body of an instance's thread, from its first event to its last. It
/// moves to a new thread at every restart ([`incarnate`]).
pub(crate) struct Worker {
    slot: Arc<Slot>,
    bus: Arc<Bus>,
    instance: Option<Box<dyn Instance>>,
    factory: Factory,
    supervision: Supervision,
    control: Receiver<Control>,
    errors: ErrorLog,
    /// A failure waiting for the restart policy's decision.
    pending_failure: Option<CallFailure>,
    /// Events taken from the mailbox but never handled (the instance died
    /// first): the restarted instance gets them before the mailbox.
    requeue: std::collections::VecDeque<Event>,
    /// The host's shutdown ran the plugin's `stop` ([`Control::StopInPlace`]):
    /// it still takes events, but no tick, check, route or restart, and its
    /// `stop` is not called again.
    stop_ran: bool,
    /// Dropped with the worker, when the instance's last thread ends: the
    /// host waits on its receiver.
    _done: Sender<()>,
}

/// What the worker's loop does next.
enum Next {
    Go,
    /// Stop, after handling (`true`) or dropping what is queued.
    Stop(bool),
    /// A new incarnation runs: hand it the worker, and end this thread.
    Handoff(Sender<Worker>),
}

impl Next {
    fn go(&self) -> bool {
        matches!(self, Next::Go)
    }
}

impl Worker {
    /// A worker for `slot`, with no instance yet: [`incarnate`] makes one,
    /// and is handed the worker once its `init` is done.
    pub(crate) fn new(
        slot: Arc<Slot>,
        bus: Arc<Bus>,
        factory: Factory,
        supervision: Supervision,
        control: Receiver<Control>,
        done: Sender<()>,
    ) -> Worker {
        Worker {
            slot,
            bus,
            instance: None,
            factory,
            supervision,
            control,
            errors: ErrorLog::default(),
            pending_failure: None,
            requeue: Default::default(),
            stop_ran: false,
            _done: done,
        }
    }

    /// Call the plugin's `tick` if it is due; returns when the next one is.
    fn tick_if_due(&mut self, next: &mut Option<Instant>) {
        let Some(interval) = self.supervision.tick.filter(|_| !self.stop_ran) else {
            *next = None;
            return;
        };
        let now = Instant::now();
        let due = next.get_or_insert(now + interval);
        if now < *due {
            return;
        }
        *due = now + interval;
        let Some(instance) = self.instance.as_mut() else {
            return;
        };
        match watched(&self.slot.stats.consumer.busy_since, || instance.tick()) {
            Ok(()) => {}
            Err(CallFailure::Error(message)) => {
                tracing::warn!(plugin = %self.slot.name, "tick failed: {}", Escaped(&message))
            }
            Err(failure) => self.fail(CallFailure::Panic(format!("tick {failure}"))),
        }
    }

    /// Become the worker of `instance`, on its thread, and serve it.
    fn take_over(mut self, instance: Box<dyn Instance>) {
        self.instance = Some(instance);
        self.run();
    }

    /// Serve the instance until it stops, or until a new incarnation takes over.
    pub(crate) fn run(mut self) {
        match self.serve() {
            Next::Stop(drain) => self.finish(drain),
            Next::Handoff(to) => {
                if let Err(back) = to.send(self) {
                    // The new incarnation's thread is gone: a failure.
                    let mut worker = back.into_inner();
                    let gone = "its thread ended before it took its events".to_owned();
                    worker.fail(CallFailure::Panic(gone));
                    worker.run();
                }
            }
            Next::Go => unreachable!("serve returns only to stop or hand over"),
        }
    }

    /// The event loop: returns only to stop or to hand over to a new incarnation.
    fn serve(&mut self) -> Next {
        let rx = self.slot.rx.clone();
        let mut batch: Vec<Event> = Vec::new();
        let mut next_tick: Option<Instant> = None;
        loop {
            self.tick_if_due(&mut next_tick);
            if let Some(failure) = self.pending_failure.take() {
                let next = self.supervise(failure);
                if !next.go() {
                    return next;
                }
            }
            // Written only when set: the flag shares its line with what
            // publishers read on every event.
            if self.slot.control_pending.load(Ordering::Relaxed) {
                self.slot.control_pending.store(false, Ordering::Relaxed);
            }
            while let Ok(order) = self.control.try_recv() {
                let next = self.obey(order);
                if !next.go() {
                    return next;
                }
            }
            if self.instance.is_none() {
                if self.pending_failure.is_some() {
                    continue;
                }
                // Failed for good, flapping, or stopped: its backlog is
                // counted, and what comes for it is counted at delivery. It
                // costs nothing until an order comes.
                let next = match self.control.recv() {
                    Ok(order) => self.obey(order),
                    Err(_) => Next::Stop(false),
                };
                if !next.go() {
                    return next;
                }
                continue;
            }
            let batched = self.instance.as_ref().is_some_and(|i| i.batched());
            let handled = if batched {
                batch.clear();
                batch.extend(self.requeue.drain(..));
                batch.extend(rx.try_iter().take(BATCH.saturating_sub(batch.len())));
                if !batch.is_empty() {
                    self.handle_batch(&batch);
                }
                batch.len()
            } else {
                // After a failure the rest stays queued for the restarted instance.
                self.handle_run(None)
            };
            if handled == 0 && self.pending_failure.is_none() {
                if self.spin_for_work() {
                    continue;
                }
                let idle = next_tick.map_or(Duration::from_secs(3600), |t| {
                    t.saturating_duration_since(Instant::now())
                });
                select! {
                    recv(self.control) -> order => {
                        let order = order.unwrap_or(Control::Stop { drain: false });
                        let next = self.obey(order);
                        if !next.go() {
                            return next;
                        }
                    }
                    recv(rx) -> event => {
                        if let Ok(event) = event {
                            if batched {
                                batch.clear();
                                batch.push(event);
                                batch.extend(rx.try_iter().take(BATCH - 1));
                                self.handle_batch(&batch);
                            } else {
                                self.handle_run(Some(event));
                            }
                        }
                    }
                    default(idle) => {}
                }
            }
        }
    }

    /// Handle `first`, then what waits in the mailbox, up to [`BATCH`]
    /// events, until the instance fails or an order waits. The run is timed
    /// as a whole, two clock reads however many events it holds (see
    /// [`HandlerTimes::record`]). Returns how many events it took.
    fn handle_run(&mut self, first: Option<Event>) -> usize {
        let started = Instant::now();
        let (mut taken, mut called) = (0, 0);
        let mut next = first;
        loop {
            let event = match next.take() {
                Some(event) => event,
                None if taken >= BATCH
                    || self.instance.is_none()
                    || self.slot.control_pending.load(Ordering::Relaxed) =>
                {
                    break;
                }
                None => match self.slot.rx.try_recv() {
                    Ok(event) => event,
                    Err(_) => break,
                },
            };
            taken += 1;
            called += u64::from(self.handle(&event));
        }
        let handler = &self.slot.stats.consumer.handler;
        handler.record(started.elapsed(), called);
        taken
    }

    /// Hand one event to the plugin; false when there is none to hand it to
    /// (the event is then counted as dropped).
    fn handle(&mut self, event: &Event) -> bool {
        let consumer = &self.slot.stats.consumer;
        let Some(instance) = self.instance.as_mut() else {
            bump(&consumer.discarded);
            return false;
        };
        let metrics = self.bus.metrics_enabled().then(|| {
            let listener = Some(&*self.slot);
            let waiter = listener;
            self.bus
                .metrics_event("event_received", waiter, listener, event, None);
            Instant::now()
        });
        let outcome = watched(&consumer.busy_since, || instance.on_event(&event.view()));
        if let Some(started) = metrics {
            let listener = Some(&*self.slot);
            let took = Some(started.elapsed());
            self.bus
                .metrics_event("event_processed", listener, listener, event, took);
        }
        match outcome {
            Ok(()) => bump(&consumer.processed),
            Err(CallFailure::Error(message)) => {
                bump(&consumer.failed);
                self.errors.log(&self.slot.name, event, &message);
            }
            Err(failure) => {
                let failure = match failure {
                    CallFailure::Panic(message) => {
                        CallFailure::Panic(format!("on_event({}) {message}", event.topic()))
                    }
                    other => other,
                };
                // Failed (or restarting) before its event counts as
                // finished: see `handle_batch`.
                self.fail(failure);
                bump(&self.slot.stats.consumer.failed);
            }
        }
        true
    }

    /// Watch the mailbox and the control lane for [`SPIN`] before parking;
    /// true when something arrived.
    fn spin_for_work(&self) -> bool {
        let deadline = Instant::now() + SPIN;
        for round in 0u32.. {
            if !self.slot.rx.is_empty() || !self.control.is_empty() {
                return true;
            }
            if round < 64 {
                std::hint::spin_loop();
            } else if Instant::now() < deadline {
                // Let a publisher sharing this core run.
                std::thread::yield_now();
            } else {
                break;
            }
        }
        false
    }

    fn handle_batch(&mut self, events: &[Event]) {
        let consumer = &self.slot.stats.consumer;
        let Some(instance) = self.instance.as_mut() else {
            for _ in events {
                bump(&consumer.discarded);
            }
            return;
        };
        let started = Instant::now();
        let outcome = watched(&consumer.busy_since, || instance.on_batch(events));
        let done = outcome.processed + outcome.errors.len() as u64;
        consumer.handler.record(started.elapsed(), done);
        for (index, message) in &outcome.errors {
            self.errors.log(&self.slot.name, &events[*index], message);
        }
        // The instance is failed (or restarting) before the batch's events
        // count as finished: whoever sees every event finished and no
        // instance restarting (shutdown's drain) must not catch it in
        // between, still running, with a restart on its way.
        let mut discarded = 0;
        if let Some(failure) = outcome.fatal {
            let lost = outcome.lost;
            if lost > 0 {
                discarded += lost;
                tracing::error!(plugin = %self.slot.name, "{lost} event(s) in flight were lost");
            }
            self.fail(failure);
            let tail = &events[events.len() - outcome.unhandled.min(events.len())..];
            if self.slot.state() == State::Restarting {
                self.requeue.extend(tail.iter().cloned());
            } else {
                discarded += tail.len() as u64;
            }
        }
        let consumer = &self.slot.stats.consumer;
        add(&consumer.discarded, discarded);
        add(&consumer.processed, outcome.processed);
        add(&consumer.failed, outcome.errors.len() as u64);
    }
}

/// Run `call` into the plugin with the watchdog watching: `busy` holds when
/// it started ([`coarse_nanos`]) until it returns.
fn watched<T>(busy: &AtomicU64, call: impl FnOnce() -> T) -> T {
    busy.store(coarse_nanos(), Ordering::Relaxed);
    let outcome = call();
    busy.store(0, Ordering::Relaxed);
    outcome
}

/// Make an instance of `slot`'s plugin from `factory` on a fresh thread and
/// wait for its `init` (see [`incarnate::incarnate`]); once it is ready,
/// the thread serves the [`Worker`] it is handed.
pub(crate) fn incarnate(
    slot: &Arc<Slot>,
    factory: &Factory,
    limit: Duration,
    cancelled: Option<&AtomicBool>,
) -> Init<Worker> {
    incarnate::incarnate(slot, factory, limit, cancelled, Worker::take_over)
}
