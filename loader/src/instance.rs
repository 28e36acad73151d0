//! One plugin instance: its slot (mailbox, counters, state) and the dedicated
//! thread that feeds it events. Everything here works on the language-neutral
//! [`Instance`] interface; the adapters in `library/` implement it.
//!
//! Invariants: only the instance's own thread calls into the plugin; events
//! are taken in mailbox order; a failed instance never sees another event, and
//! its queued events are counted as dropped.

use crate::bus::Bus;
use crate::config::{Overflow, PluginConfig};
use crate::event::Event;
use crossbeam_channel::{Receiver, Sender, select};
use crossbeam_utils::CachePadded;
use plughost_api::topic::Pattern;
use plughost_api::{Health, JobReport, Readiness};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How many events the thread takes from its mailbox between looks at its
/// control lane.
const BATCH: usize = 256;

/// Why a call into a plugin failed.
#[derive(Debug, Clone)]
pub(crate) enum CallFailure {
    /// The plugin returned an error.
    Error(String),
    /// The plugin panicked (caught inside the plugin) or crashed.
    Panic(String),
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallFailure::Error(message) | CallFailure::Panic(message) => f.write_str(message),
        }
    }
}

/// A live plugin instance, whatever its language. The optional capabilities
/// answer `None` when the plugin does not report them.
pub(crate) trait Instance: Send {
    fn on_event(&mut self, event: &Event) -> Result<(), CallFailure>;
    fn stop(&mut self) -> Result<(), CallFailure>;
    fn health(&mut self) -> Result<Option<Health>, CallFailure>;
    fn ready(&mut self) -> Result<Option<Readiness>, CallFailure>;
    fn jobs(&mut self) -> Result<Option<Vec<JobReport>>, CallFailure>;
}

/// Lifecycle state of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Created, `init` not finished.
    Starting = 0,
    /// Taking events.
    Running = 1,
    /// Failed (panic, crash); takes no events.
    Failed = 2,
    /// Stopping: finishing its queue.
    Stopping = 3,
    /// Stopped cleanly.
    Stopped = 4,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Starting,
            1 => State::Running,
            2 => State::Failed,
            3 => State::Stopping,
            _ => State::Stopped,
        }
    }

    /// The name shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Failed => "failed",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
        }
    }
}

/// Counters written by publishers (many writers).
#[derive(Default)]
pub(crate) struct ProducerStats {
    pub offered: AtomicU64,
    pub rejected: AtomicU64,
    pub evicted: AtomicU64,
    pub abandoned: AtomicU64,
}

/// Counters written only by the instance's thread.
#[derive(Default)]
pub(crate) struct ConsumerStats {
    pub processed: AtomicU64,
    pub failed: AtomicU64,
    pub discarded: AtomicU64,
    pub handler: HandlerTimes,
}

/// Upper bounds (seconds) of the handler-time histogram buckets.
pub(crate) const HANDLER_BUCKETS: [f64; 14] = [
    1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0, 5.0,
];

/// A histogram of handler times, written by the instance's thread only.
#[derive(Default)]
pub(crate) struct HandlerTimes {
    /// Per bucket (not cumulative); the last one is everything above the last bound.
    counts: [AtomicU64; HANDLER_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl HandlerTimes {
    fn record(&self, took: std::time::Duration) {
        let seconds = took.as_secs_f64();
        let bucket = HANDLER_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(HANDLER_BUCKETS.len());
        bump(&self.counts[bucket]);
        let sum = &self.sum_nanos;
        sum.store(
            sum.load(Ordering::Relaxed) + took.as_nanos() as u64,
            Ordering::Release,
        );
    }

    /// (sum in seconds, count, count per bucket bound, not cumulative: the
    /// encoder accumulates). The last bound is `f64::MAX`, written `+Inf`.
    pub(crate) fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let bounds = HANDLER_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX));
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&self.counts)
            .map(|(bound, n)| (bound, n.load(Ordering::Acquire)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        (
            self.sum_nanos.load(Ordering::Acquire) as f64 / 1e9,
            count,
            buckets,
        )
    }
}

/// Single-writer increment: a load and a store, no locked instruction.
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Release);
}

#[derive(Default)]
pub(crate) struct Stats {
    pub producer: CachePadded<ProducerStats>,
    pub consumer: CachePadded<ConsumerStats>,
}

impl Stats {
    /// (events offered, events finished: handled, failed or dropped).
    pub(crate) fn balance(&self) -> (u64, u64) {
        let p = &self.producer;
        let c = &self.consumer;
        let finished = c.processed.load(Ordering::Acquire)
            + c.failed.load(Ordering::Acquire)
            + c.discarded.load(Ordering::Acquire)
            + p.rejected.load(Ordering::Acquire)
            + p.evicted.load(Ordering::Acquire)
            + p.abandoned.load(Ordering::Acquire);
        (p.offered.load(Ordering::Acquire), finished)
    }
}

/// What an instance's counters say, at one moment. Every event routed to an
/// instance is counted once in `received`, and ends up in exactly one of
/// `processed`, `failed` or `dropped` (or is still queued).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Events routed to it (including those its overflow policy dropped).
    pub received: u64,
    /// Events its handler finished without error.
    pub processed: u64,
    /// Events dropped: by the overflow policy, or queued when it failed or stopped.
    pub dropped: u64,
    /// Events whose handler returned an error or panicked.
    pub failed: u64,
}

/// The shared, thread-safe part of an instance: what publishers and operators see.
pub(crate) struct Slot {
    pub index: usize,
    pub name: Arc<str>,
    pub library: String,
    pub language: &'static str,
    pub subscribe: Vec<Pattern>,
    pub overflow: Overflow,
    pub capacity: usize,
    pub tx: Sender<Event>,
    pub rx: Receiver<Event>,
    pub stats: Stats,
    /// Restarts so far (restart policies come with supervision).
    pub restarts: AtomicU64,
    /// Slot index + 1 of the mailbox this instance's thread is blocked on, or 0.
    pub waiting_on: AtomicUsize,
    /// Set when an order waits on the control lane: the thread looks there
    /// before its next event rather than after its batch.
    pub control_pending: AtomicBool,
    state: AtomicU8,
    last_error: Mutex<Option<String>>,
}

impl Slot {
    pub(crate) fn new(
        index: usize,
        config: &PluginConfig,
        library: String,
        language: &'static str,
    ) -> Slot {
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity.get());
        Slot {
            index,
            name: Arc::from(config.name.as_str()),
            library,
            language,
            subscribe: config.subscribe.clone(),
            overflow: config.overflow,
            capacity: config.queue_capacity.get(),
            tx,
            rx,
            stats: Stats::default(),
            restarts: AtomicU64::new(0),
            waiting_on: AtomicUsize::new(0),
            control_pending: AtomicBool::new(false),
            state: AtomicU8::new(State::Starting as u8),
            last_error: Mutex::new(None),
        }
    }

    pub(crate) fn subscribes_to(&self, topic: &str) -> bool {
        self.subscribe.iter().any(|p| p.matches(topic))
    }

    pub(crate) fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Whether publishers should put events in this mailbox. A stopping
    /// instance still takes them: it drains its queue before it stops.
    pub(crate) fn accepts_events(&self) -> bool {
        matches!(self.state(), State::Running | State::Stopping)
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_last_error(&self, error: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    pub(crate) fn counts(&self) -> Counts {
        let p = &self.stats.producer;
        let c = &self.stats.consumer;
        Counts {
            received: p.offered.load(Ordering::Acquire),
            processed: c.processed.load(Ordering::Acquire),
            dropped: p.rejected.load(Ordering::Acquire)
                + p.evicted.load(Ordering::Acquire)
                + p.abandoned.load(Ordering::Acquire)
                + c.discarded.load(Ordering::Acquire),
            failed: c.failed.load(Ordering::Acquire),
        }
    }

    /// Record a failure, tell everyone, and stop calling the plugin.
    pub(crate) fn fail(&self, bus: &Bus, reason: String) {
        tracing::error!(plugin = %self.name, "plugin failed: {reason}");
        self.set_last_error(reason.clone());
        self.set_state(State::Failed);
        bus.publish_host_on(
            Some(self),
            "plughost.plugin.failed",
            serde_json::json!({"name": &*self.name, "library": self.library, "reason": reason}),
        );
    }
}

/// Orders for an instance's thread, looked at before its next queued event.
pub(crate) enum Control {
    /// Stop: first handle (`drain`) or drop what is queued, then call `stop`.
    Stop { drain: bool },
    /// Ask the plugin something between events; answer on the channel.
    Probe(Probe, Sender<(usize, ProbeAnswer)>),
}

/// What a probe asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    Health,
    Ready,
    Jobs,
}

/// A plugin's answer to a probe; `None` inside means it does not report that.
#[derive(Debug, Clone)]
pub(crate) enum ProbeAnswer {
    Health(Option<Health>),
    Ready(Option<Readiness>),
    Jobs(Option<Vec<JobReport>>),
    /// The call failed, or the instance is not running.
    Failed(String),
}

/// The body of an instance's thread, from its first event to its last.
pub(crate) struct Worker {
    pub slot: Arc<Slot>,
    pub bus: Arc<Bus>,
    pub instance: Option<Box<dyn Instance>>,
    pub control: Receiver<Control>,
    pub errors_logged: u64,
}

impl Worker {
    pub(crate) fn run(mut self) {
        let rx = self.slot.rx.clone();
        loop {
            self.slot.control_pending.store(false, Ordering::Relaxed);
            while let Ok(order) = self.control.try_recv() {
                if let Some(drain) = self.obey(order) {
                    return self.finish(drain);
                }
            }
            let mut handled = 0;
            while handled < BATCH && !self.slot.control_pending.load(Ordering::Relaxed) {
                match rx.try_recv() {
                    Ok(event) => self.handle(&event),
                    Err(_) => break,
                }
                handled += 1;
            }
            if handled == 0 {
                select! {
                    recv(self.control) -> order => {
                        let order = order.unwrap_or(Control::Stop { drain: false });
                        if let Some(drain) = self.obey(order) {
                            return self.finish(drain);
                        }
                    }
                    recv(rx) -> event => {
                        if let Ok(event) = event {
                            self.handle(&event);
                        }
                    }
                }
            }
        }
    }

    fn handle(&mut self, event: &Event) {
        let consumer = &self.slot.stats.consumer;
        let Some(instance) = self.instance.as_mut() else {
            bump(&consumer.discarded);
            return;
        };
        self.bus.metrics_event(
            "event_received",
            Some(&self.slot),
            Some(&self.slot),
            event,
            None,
        );
        let started = Instant::now();
        let outcome = instance.on_event(event);
        let took = started.elapsed();
        consumer.handler.record(took);
        self.bus.metrics_event(
            "event_processed",
            Some(&self.slot),
            Some(&self.slot),
            event,
            Some(took),
        );
        match outcome {
            Ok(()) => bump(&consumer.processed),
            Err(CallFailure::Error(message)) => {
                bump(&consumer.failed);
                self.errors_logged += 1;
                // Every error is counted; the log says the first ones, then one in a thousand.
                if self.errors_logged <= 10 || self.errors_logged.is_multiple_of(1000) {
                    tracing::warn!(plugin = %self.slot.name, "event {} on {} failed: {message}", event.id(), event.topic());
                }
            }
            Err(CallFailure::Panic(message)) => {
                bump(&consumer.failed);
                self.instance = None;
                self.slot
                    .fail(&self.bus, format!("on_event({}) {message}", event.topic()));
            }
        }
    }

    /// Carry out one order; `Some(drain)` means stop.
    fn obey(&mut self, order: Control) -> Option<bool> {
        match order {
            Control::Stop { drain } => Some(drain),
            Control::Probe(probe, reply) => {
                let _ = reply.send((self.slot.index, self.probe(probe)));
                None
            }
        }
    }

    fn probe(&mut self, probe: Probe) -> ProbeAnswer {
        let Some(instance) = self.instance.as_mut() else {
            return ProbeAnswer::Failed(
                self.slot
                    .last_error()
                    .unwrap_or_else(|| self.slot.state().as_str().to_owned()),
            );
        };
        let answer = match probe {
            Probe::Health => instance.health().map(ProbeAnswer::Health),
            Probe::Ready => instance.ready().map(ProbeAnswer::Ready),
            Probe::Jobs => instance.jobs().map(ProbeAnswer::Jobs),
        };
        match answer {
            Ok(answer) => answer,
            Err(CallFailure::Error(message)) => ProbeAnswer::Failed(message),
            Err(CallFailure::Panic(message)) => {
                self.instance = None;
                let reason = format!("{probe:?} check {message}").to_lowercase();
                self.slot.fail(&self.bus, reason.clone());
                ProbeAnswer::Failed(reason)
            }
        }
    }

    fn finish(mut self, drain: bool) {
        if self.slot.state() == State::Running {
            self.slot.set_state(State::Stopping);
        }
        let rx = self.slot.rx.clone();
        while let Ok(event) = rx.try_recv() {
            if drain {
                self.handle(&event);
            } else {
                bump(&self.slot.stats.consumer.discarded);
            }
        }
        if let Some(mut instance) = self.instance.take() {
            match instance.stop() {
                Ok(()) => self.slot.set_state(State::Stopped),
                Err(failure) => self.slot.fail(&self.bus, format!("stop {failure}")),
            }
        }
    }
}
