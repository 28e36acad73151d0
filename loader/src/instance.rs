//! One plugin instance: its slot (mailbox, counters, state) and the dedicated
//! thread that feeds it events. Everything here works on the language-neutral
//! [`Instance`] interface; the adapters in `library/` implement it.
//!
//! Invariants: only the instance's own thread calls into the plugin; events
//! are taken in mailbox order; a failed instance never sees another event, and
//! its queued events are counted as dropped.

use crate::bus::Bus;
use crate::config::{Overflow, PluginConfig};
use crate::event::{Event, EventView, Name, coarse_nanos};
use crossbeam_channel::{Receiver, Sender, select};
use crossbeam_utils::CachePadded;
use plughost_api::topic::Pattern;
use plughost_api::{Health, HttpRequest, HttpResponse, JobReport, Readiness};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How many events the thread takes from its mailbox between looks at its
/// control lane.
const BATCH: usize = 256;

/// How long an idle instance watches its mailbox before it parks. Waking a
/// parked thread costs tens of microseconds on a virtual machine, so a steady
/// stream of events finds its thread awake, at the cost of a core that stays
/// busy while events keep coming more often than this.
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// Why a call into a plugin failed.
#[derive(Debug, Clone)]
pub(crate) enum CallFailure {
    /// The plugin returned an error.
    Error(String),
    /// The plugin panicked (caught inside the plugin) or crashed.
    Panic(String),
    /// A process-isolated plugin's process ended by itself, with status 0.
    Exited(String),
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallFailure::Error(message)
            | CallFailure::Panic(message)
            | CallFailure::Exited(message) => f.write_str(message),
        }
    }
}

/// A live plugin instance, whatever its language. The optional capabilities
/// answer `None` when the plugin does not report them.
pub(crate) trait Instance: Send {
    fn on_event(&mut self, event: &EventView<'_>) -> Result<(), CallFailure>;
    fn stop(&mut self) -> Result<(), CallFailure>;
    fn health(&mut self) -> Result<Option<Health>, CallFailure>;
    fn ready(&mut self) -> Result<Option<Readiness>, CallFailure>;
    fn jobs(&mut self) -> Result<Option<Vec<JobReport>>, CallFailure>;

    /// Instances in another process take events in batches ([`Instance::on_batch`]).
    fn batched(&self) -> bool {
        false
    }

    /// Handle `events` in order. Only called when `batched()`.
    fn on_batch(&mut self, events: &[Event]) -> BatchOutcome {
        let _ = events;
        unreachable!("on_batch is only called on batched instances")
    }

    /// The process the instance runs in, when it has one of its own.
    fn pid(&self) -> Option<i32> {
        None
    }

    /// Background work between events (`tick_interval`).
    fn tick(&mut self) -> Result<(), CallFailure> {
        Ok(())
    }

    /// The routes it serves under `/plugins/NAME`.
    fn routes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Answer an HTTP request; `None` for 404.
    fn http(&mut self, request: HttpRequest) -> Result<Option<HttpResponse>, CallFailure> {
        let _ = request;
        Ok(None)
    }
}

/// What became of a batch of events.
#[derive(Debug, Default)]
pub(crate) struct BatchOutcome {
    /// Events handled without error.
    pub processed: u64,
    /// Events whose handler returned an error: (index in the batch, message).
    pub errors: Vec<(usize, String)>,
    /// The instance died, and why.
    pub fatal: Option<CallFailure>,
    /// Events of the batch that may or may not have been handled when it
    /// died (a crash): counted as lost.
    pub lost: u64,
    /// Events at the end of the batch that were certainly never handled (it
    /// panicked before them): queued again for the restarted instance.
    pub unhandled: usize,
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
    /// Failed, and waiting to be started again; its mailbox keeps taking events.
    Restarting = 5,
    /// Failed too often (see `max_restarts`); stopped for good.
    Flapping = 6,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Starting,
            1 => State::Running,
            2 => State::Failed,
            3 => State::Stopping,
            5 => State::Restarting,
            6 => State::Flapping,
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
            State::Restarting => "restarting",
            State::Flapping => "flapping",
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
    /// When the running handler started ([`coarse_nanos`]), 0 when idle.
    pub busy_since: AtomicU64,
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
    /// Record `events` handler calls that took `took` together, each at their
    /// mean: the sum and the count stay exact, and the buckets are exact for
    /// a run of one (an instance that keeps up handles events one by one).
    fn record(&self, took: std::time::Duration, events: u64) {
        if events == 0 {
            return;
        }
        let seconds = took.as_secs_f64() / events as f64;
        let bucket = HANDLER_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(HANDLER_BUCKETS.len());
        add(&self.counts[bucket], events);
        add(&self.sum_nanos, took.as_nanos() as u64);
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Its instance name, also what its events carry as their source.
    pub name: Name,
    pub capacity: usize,
    pub tx: Sender<Event>,
    pub rx: Receiver<Event>,
    pub stats: Stats,
    /// What a reload may change without replacing the mailbox.
    settings: std::sync::RwLock<Settings>,
    /// The overflow policy (an `Overflow` as u8), read on the full-mailbox path.
    overflow: AtomicU8,
    /// Restarts so far.
    pub restarts: AtomicU64,
    /// The `busy_since` the watchdog last reported as stuck.
    pub stuck_at: AtomicU64,
    /// The pid of the instance's process, for process isolation (0: none).
    pub child_pid: std::sync::atomic::AtomicI32,
    /// Removed from the config by a reload: no longer listed or routed to.
    pub retired: AtomicBool,
    /// The HTTP routes its plugin serves (as its instance declared them).
    pub routes: Mutex<Vec<String>>,
    /// Slot index + 1 of the mailbox this instance's thread is blocked on, or 0.
    pub waiting_on: AtomicUsize,
    /// Set when an order waits on the control lane: the thread looks there
    /// before its next event rather than after its batch.
    pub control_pending: AtomicBool,
    state: AtomicU8,
    last_error: Mutex<Option<String>>,
}

/// An instance's settings from `plugins.toml` that a reload can change in place.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub library: String,
    pub language: &'static str,
    pub subscribe: Vec<Pattern>,
    pub isolation: crate::config::Isolation,
    pub handler_timeout: Option<std::time::Duration>,
}

impl Slot {
    pub(crate) fn new(
        index: usize,
        config: &PluginConfig,
        library: String,
        language: &'static str,
    ) -> Slot {
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity.get());
        let slot = Slot {
            index,
            name: Name::intern(&config.name),
            capacity: config.queue_capacity.get(),
            tx,
            rx,
            stats: Stats::default(),
            settings: std::sync::RwLock::new(Settings {
                library,
                language,
                subscribe: Vec::new(),
                isolation: config.isolation,
                handler_timeout: None,
            }),
            overflow: AtomicU8::new(0),
            restarts: AtomicU64::new(0),
            stuck_at: AtomicU64::new(0),
            child_pid: std::sync::atomic::AtomicI32::new(0),
            retired: AtomicBool::new(false),
            routes: Mutex::new(Vec::new()),
            waiting_on: AtomicUsize::new(0),
            control_pending: AtomicBool::new(false),
            state: AtomicU8::new(State::Starting as u8),
            last_error: Mutex::new(None),
        };
        slot.configure(config, slot.settings().library, language);
        slot
    }

    /// Apply `config`'s in-place settings (the bus must be told to re-route).
    pub(crate) fn configure(&self, config: &PluginConfig, library: String, language: &'static str) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Settings {
            library,
            language,
            subscribe: config.subscribe.clone(),
            isolation: config.isolation,
            handler_timeout: config.handler_timeout,
        };
        self.overflow
            .store(config.overflow as u8, Ordering::Release);
    }

    /// A copy of the current settings.
    pub(crate) fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The library file, for messages and lifecycle events.
    pub(crate) fn library(&self) -> String {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .library
            .clone()
    }

    pub(crate) fn overflow(&self) -> Overflow {
        match self.overflow.load(Ordering::Relaxed) {
            x if x == Overflow::DropOldest as u8 => Overflow::DropOldest,
            x if x == Overflow::DropNewest as u8 => Overflow::DropNewest,
            _ => Overflow::Block,
        }
    }

    /// Remember what a freshly created instance serves.
    pub(crate) fn adopt(&self, instance: &dyn Instance) {
        *self.routes.lock().unwrap_or_else(|e| e.into_inner()) = instance.routes();
    }

    /// Whether its plugin declared a route matching `path`.
    pub(crate) fn serves(&self, path: &str) -> bool {
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|route| match route.strip_suffix("/*") {
                Some(prefix) => path == prefix || path.starts_with(&format!("{prefix}/")),
                None => path == route,
            })
    }

    /// Whether the watchdog caught the handler running now.
    pub(crate) fn is_stuck(&self) -> bool {
        let since = self.stats.consumer.busy_since.load(Ordering::Acquire);
        since != 0 && self.stuck_at.load(Ordering::Acquire) == since
    }

    pub(crate) fn subscribes_to(&self, topic: &str) -> bool {
        !self.retired.load(Ordering::Acquire)
            && self
                .settings
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .subscribe
                .iter()
                .any(|p| p.matches(topic))
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
        matches!(
            self.state(),
            State::Running | State::Stopping | State::Restarting
        )
    }

    /// Failed and not coming back by itself (no restart, or flapping).
    pub(crate) fn is_down(&self) -> bool {
        matches!(self.state(), State::Failed | State::Flapping)
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
        self.fail_to(bus, reason, State::Failed);
    }

    /// Record a failure, move to `next` (`Failed`, or `Restarting` when the
    /// policy restarts it: its mailbox then keeps taking events), tell everyone.
    pub(crate) fn fail_to(&self, bus: &Bus, reason: String, next: State) {
        tracing::error!(plugin = %self.name, "plugin failed: {}", crate::text::Escaped(&reason));
        self.set_last_error(reason.clone());
        self.set_state(next);
        bus.publish_host_on(
            Some(self),
            "plughost.plugin.failed",
            serde_json::json!({"name": &*self.name, "library": self.library(), "reason": reason}),
        );
    }
}

/// Orders for an instance's thread, looked at before its next queued event.
pub(crate) enum Control {
    /// Stop: first handle (`drain`) or drop what is queued, then call `stop`.
    Stop { drain: bool },
    /// Ask the plugin something between events; answer through the reply.
    Probe(Probe, Reply<(usize, ProbeAnswer)>),
    /// Answer an HTTP request to one of its routes (`None`: 404).
    Http(HttpRequest, Reply<Result<Option<HttpResponse>, String>>),
    /// The instance's process (`pid`) ended: `failure` says how.
    Died { pid: i32, failure: CallFailure },
    /// Stop the plugin (its `stop` runs) and start a fresh one from
    /// `factory` on the same mailbox: restart, or reload with a changed config.
    Replace {
        factory: Factory,
        supervision: Supervision,
        reply: Sender<Result<(), String>>,
    },
}

/// Where an order's answer goes: called once, on the instance's thread, or
/// dropped unanswered with the order. The asker chooses how it waits (a
/// blocked thread, an async task) without the worker knowing which.
pub(crate) type Reply<T> = Box<dyn FnOnce(T) + Send>;

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

/// Makes a fresh instance (on the calling thread): at start, and at each restart.
pub(crate) type Factory = Box<dyn FnMut() -> Result<Box<dyn Instance>, CallFailure> + Send>;

/// Restart policy and the record the flapping rule is judged on.
pub(crate) struct Supervision {
    /// How often the worker calls the plugin's `tick`.
    pub tick: Option<std::time::Duration>,
    pub restart: crate::config::Restart,
    pub max_restarts: u32,
    pub window: std::time::Duration,
    pub recent: std::collections::VecDeque<Instant>,
}

impl Supervision {
    pub(crate) fn new(config: &PluginConfig) -> Supervision {
        Supervision {
            tick: config.tick_interval,
            restart: config.restart,
            max_restarts: config.max_restarts,
            window: config.restart_window,
            recent: Default::default(),
        }
    }

    fn wants_restart(&self, failure: &CallFailure) -> bool {
        use crate::config::Restart;
        !matches!(
            (self.restart, failure),
            (Restart::Never, _) | (Restart::OnFailure, CallFailure::Exited(_))
        )
    }

    /// The delay before the next restart (exponential, from 50 ms to 5 s), or
    /// `None` when the restarts inside the window already reached the limit.
    fn next_delay(&mut self, now: Instant) -> Option<std::time::Duration> {
        while self
            .recent
            .front()
            .is_some_and(|&t| now.duration_since(t) > self.window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.max_restarts as usize {
            return None;
        }
        let exponent = self.recent.len().min(7) as u32;
        Some(
            std::time::Duration::from_millis(50 * 2u64.pow(exponent))
                .min(std::time::Duration::from_secs(5)),
        )
    }
}

/// The body of an instance's thread, from its first event to its last.
pub(crate) struct Worker {
    pub slot: Arc<Slot>,
    pub bus: Arc<Bus>,
    pub instance: Option<Box<dyn Instance>>,
    pub factory: Factory,
    pub supervision: Supervision,
    pub control: Receiver<Control>,
    pub errors_logged: u64,
    /// A failure waiting for the restart policy's decision.
    pub pending_failure: Option<CallFailure>,
    /// Events taken from the mailbox but never handled (the instance died
    /// first): the restarted instance gets them before the mailbox.
    pub requeue: std::collections::VecDeque<Event>,
}

/// What the worker's loop does next.
enum Next {
    Go,
    Stop(bool),
}

impl Worker {
    /// Call the plugin's `tick` if it is due; returns when the next one is.
    fn tick_if_due(&mut self, next: &mut Option<Instant>) {
        let Some(interval) = self.supervision.tick else {
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
                tracing::warn!(plugin = %self.slot.name, "tick failed: {}", crate::text::Escaped(&message))
            }
            Err(failure) => self.fail(CallFailure::Panic(format!("tick {failure}"))),
        }
    }

    pub(crate) fn run(mut self) {
        let rx = self.slot.rx.clone();
        let mut batch: Vec<Event> = Vec::new();
        let mut next_tick: Option<Instant> = None;
        loop {
            self.tick_if_due(&mut next_tick);
            if let Some(failure) = self.pending_failure.take()
                && let Next::Stop(drain) = self.supervise(failure)
            {
                return self.finish(drain);
            }
            // Written only when set: the flag shares its line with what
            // publishers read on every event.
            if self.slot.control_pending.load(Ordering::Relaxed) {
                self.slot.control_pending.store(false, Ordering::Relaxed);
            }
            while let Ok(order) = self.control.try_recv() {
                if let Some(drain) = self.obey(order) {
                    return self.finish(drain);
                }
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
                let idle = next_tick.map_or(std::time::Duration::from_secs(3600), |t| {
                    t.saturating_duration_since(Instant::now())
                });
                select! {
                    recv(self.control) -> order => {
                        let order = order.unwrap_or(Control::Stop { drain: false });
                        if let Some(drain) = self.obey(order) {
                            return self.finish(drain);
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
                self.log_error(event, &message);
            }
            Err(failure) => {
                bump(&consumer.failed);
                let failure = match failure {
                    CallFailure::Panic(message) => {
                        CallFailure::Panic(format!("on_event({}) {message}", event.topic()))
                    }
                    other => other,
                };
                self.fail(failure);
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
        add(&consumer.processed, outcome.processed);
        add(&consumer.failed, outcome.errors.len() as u64);
        for (index, message) in &outcome.errors {
            self.log_error(&events[*index], message);
        }
        if let Some(failure) = outcome.fatal {
            let lost = outcome.lost;
            if lost > 0 {
                add(&self.slot.stats.consumer.discarded, lost);
                tracing::error!(plugin = %self.slot.name, "{lost} event(s) in flight were lost");
            }
            self.fail(failure);
            let tail = &events[events.len() - outcome.unhandled.min(events.len())..];
            if self.slot.state() == State::Restarting {
                self.requeue.extend(tail.iter().cloned());
            } else {
                add(&self.slot.stats.consumer.discarded, tail.len() as u64);
            }
        }
    }

    fn log_error(&mut self, event: &Event, message: &str) {
        self.errors_logged += 1;
        // Every error is counted; the log says the first ones, then one in a thousand.
        if self.errors_logged <= 10 || self.errors_logged.is_multiple_of(1000) {
            tracing::warn!(plugin = %self.slot.name, "event {} on {} failed: {}", event.id(), crate::text::Escaped(event.topic()), crate::text::Escaped(message));
        }
    }

    /// The instance is dead: report it, and leave the rest to the restart policy.
    fn fail(&mut self, failure: CallFailure) {
        // Drop it here, on its own thread (a process instance reaps its child).
        self.instance = None;
        let next = if self.supervision.wants_restart(&failure) {
            State::Restarting
        } else {
            State::Failed
        };
        match &failure {
            CallFailure::Exited(reason) => {
                tracing::warn!(plugin = %self.slot.name, "{}", crate::text::Escaped(reason));
                self.slot.set_state(next);
            }
            _ => self.slot.fail_to(&self.bus, failure.to_string(), next),
        }
        self.pending_failure = Some(failure);
    }

    /// Apply the restart policy to a failure: restart after a backoff, or
    /// declare the instance flapping, or leave it failed.
    fn supervise(&mut self, failure: CallFailure) -> Next {
        let slot = self.slot.clone();
        if !self.supervision.wants_restart(&failure) {
            if matches!(failure, CallFailure::Exited(_)) {
                slot.set_state(State::Stopped);
            }
            return Next::Go;
        }
        let lifecycle = |extra: serde_json::Value| {
            let mut payload = serde_json::json!({"name": &*slot.name, "library": slot.library()});
            if let (Some(payload), serde_json::Value::Object(extra)) =
                (payload.as_object_mut(), extra)
            {
                payload.extend(extra);
            }
            payload
        };
        loop {
            let Some(delay) = self.supervision.next_delay(Instant::now()) else {
                let reason = format!(
                    "flapping: {} restarts within {:?}; stopped for good",
                    self.supervision.recent.len(),
                    self.supervision.window
                );
                tracing::error!(plugin = %slot.name, "{reason}");
                slot.set_last_error(reason.clone());
                slot.set_state(State::Flapping);
                let payload = lifecycle(
                    serde_json::json!({"restarts": slot.restarts.load(Ordering::Acquire), "reason": reason}),
                );
                self.bus
                    .publish_host_on(Some(&slot), "plughost.plugin.flapping", payload);
                return Next::Go;
            };
            slot.set_state(State::Restarting);
            // Wait out the backoff on the control lane: a stop order still works.
            match self.control.recv_timeout(delay) {
                Ok(order) => {
                    if let Some(drain) = self.obey(order) {
                        return Next::Stop(drain);
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Next::Stop(false),
            }
            self.supervision.recent.push_back(Instant::now());
            let restarts = slot.restarts.fetch_add(1, Ordering::AcqRel) + 1;
            match (self.factory)() {
                Ok(instance) => {
                    slot.adopt(instance.as_ref());
                    self.instance = Some(instance);
                    slot.set_state(State::Running);
                    tracing::info!(plugin = %slot.name, "restarted (restart {restarts})");
                    let payload = lifecycle(serde_json::json!({"restarts": restarts}));
                    self.bus
                        .publish_host_on(Some(&slot), "plughost.plugin.restarted", payload);
                    return Next::Go;
                }
                Err(failure) => {
                    slot.fail_to(&self.bus, format!("init {failure}"), State::Restarting)
                }
            }
        }
    }

    /// Carry out one order; `Some(drain)` means stop.
    fn obey(&mut self, order: Control) -> Option<bool> {
        match order {
            Control::Stop { drain } => Some(drain),
            Control::Probe(probe, reply) => {
                reply((self.slot.index, self.probe(probe)));
                None
            }
            Control::Replace {
                factory,
                supervision,
                reply,
            } => {
                if let Some(mut old) = self.instance.take()
                    && let Err(failure) = old.stop()
                {
                    tracing::warn!(plugin = %self.slot.name, "stop before restart failed: {}", crate::text::Escaped(&failure.to_string()));
                }
                self.factory = factory;
                self.supervision = supervision;
                self.pending_failure = None;
                let outcome = match (self.factory)() {
                    Ok(instance) => {
                        self.slot.adopt(instance.as_ref());
                        self.instance = Some(instance);
                        self.slot.set_state(State::Running);
                        Ok(())
                    }
                    Err(failure) => {
                        let reason = format!("init {failure}");
                        self.slot.fail(&self.bus, reason.clone());
                        Err(reason)
                    }
                };
                let _ = reply.send(outcome);
                None
            }
            Control::Http(request, reply) => {
                let answer = match self.instance.as_mut() {
                    None => Err(format!(
                        "`{}` is {}",
                        self.slot.name,
                        self.slot.state().as_str()
                    )),
                    Some(instance) => match watched(&self.slot.stats.consumer.busy_since, || {
                        instance.http(request)
                    }) {
                        Ok(response) => Ok(response),
                        Err(CallFailure::Error(message)) => Err(message),
                        Err(failure) => {
                            let reason = format!("http {failure}");
                            self.fail(CallFailure::Panic(reason.clone()));
                            Err(reason)
                        }
                    },
                };
                reply(answer);
                None
            }
            Control::Died { pid, failure } => {
                // A stale notice about a process already replaced is ignored.
                if self.instance.as_ref().and_then(|i| i.pid()) == Some(pid) {
                    self.fail(failure);
                }
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
            Err(failure) => {
                let reason = format!("{} check {failure}", format!("{probe:?}").to_lowercase());
                self.fail(CallFailure::Panic(reason.clone()));
                ProbeAnswer::Failed(reason)
            }
        }
    }

    fn finish(mut self, drain: bool) {
        if matches!(self.slot.state(), State::Running | State::Restarting) {
            self.slot.set_state(State::Stopping);
        }
        let rx = self.slot.rx.clone();
        let batched = self.instance.as_ref().is_some_and(|i| i.batched());
        loop {
            let mut batch: Vec<Event> = self.requeue.drain(..).collect();
            batch.extend(rx.try_iter().take(BATCH.saturating_sub(batch.len())));
            if batch.is_empty() {
                break;
            }
            if !drain {
                add(&self.slot.stats.consumer.discarded, batch.len() as u64);
            } else if batched {
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
        if let Some(mut instance) = self.instance.take() {
            match instance.stop() {
                Ok(()) => self.slot.set_state(State::Stopped),
                Err(failure) => self.slot.fail(&self.bus, format!("stop {failure}")),
            }
        } else if self.slot.state() == State::Stopping {
            self.slot.set_state(State::Failed);
        }
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

/// Single-writer add (see [`bump`]).
fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Release);
}
