//! One plugin instance: its slot (mailbox, counters, state) and the dedicated
//! thread that feeds it events. Everything here works on the language-neutral
//! [`Instance`] interface; the adapters in `library/` implement it.
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

use crate::bus::Bus;
use crate::config::{Overflow, PluginConfig};
use crate::event::{Event, EventView, Name, coarse_nanos};
use crate::text::Escaped;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, select};
use crossbeam_utils::CachePadded;
use plughost_api::topic::Pattern;
use plughost_api::{Health, HttpRequest, HttpResponse, JobReport, Readiness};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// The plugin panicked (caught inside the plugin) or crashed, or its
    /// process ended without being told to (whatever its exit status).
    Panic(String),
}

impl CallFailure {
    /// The same failure, its message prefixed with what was being done.
    pub(crate) fn context(self, what: &str) -> CallFailure {
        match self {
            CallFailure::Error(m) => CallFailure::Error(format!("{what} {m}")),
            CallFailure::Panic(m) => CallFailure::Panic(format!("{what} {m}")),
        }
    }
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
    /// Its totals, shared with the slots that had its name before (a reload
    /// that changed its capacity): cumulative for the life of the host.
    pub stats: Arc<Stats>,
    /// What a reload may change without replacing the mailbox.
    settings: std::sync::RwLock<Settings>,
    /// The overflow policy (an `Overflow` as u8), read on the full-mailbox path.
    overflow: AtomicU8,
    /// Restarts so far (shared like `stats`).
    pub restarts: Arc<AtomicU64>,
    /// Threads given up on while they were stuck in the plugin's `init`.
    pub abandoned_threads: AtomicU64,
    /// The `busy_since` the watchdog last reported as stuck.
    pub stuck_at: AtomicU64,
    /// The pid of the instance's process, for process isolation (0: none).
    pub child: Arc<crate::library::process::ChildPid>,
    /// Removed from the config by a reload: no longer listed or routed to.
    pub retired: AtomicBool,
    /// The HTTP routes its plugin serves (as its instance declared them).
    pub routes: Mutex<Vec<String>>,
    /// Slot index + 1 of the mailbox this instance's thread is blocked on, or 0.
    pub waiting_on: AtomicUsize,
    /// Set when an order waits on the control lane: the thread looks there
    /// before its next event rather than after its batch.
    pub control_pending: AtomicBool,
    /// Set when a stop was ordered: an `init` being waited for is given up.
    pub stop_asked: AtomicBool,
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
    pub start_timeout: Duration,
}

impl Slot {
    /// A slot for `config`; it carries on the totals of `predecessor` (an
    /// earlier slot of the same name), if any.
    pub(crate) fn new(
        index: usize,
        config: &PluginConfig,
        library: String,
        language: &'static str,
        predecessor: Option<&Slot>,
    ) -> Slot {
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity.get());
        let slot = Slot {
            index,
            name: Name::intern(&config.name),
            capacity: config.queue_capacity.get(),
            tx,
            rx,
            stats: predecessor.map_or_else(Arc::default, |p| p.stats.clone()),
            settings: std::sync::RwLock::new(Settings {
                library,
                language,
                subscribe: Vec::new(),
                isolation: config.isolation,
                handler_timeout: None,
                start_timeout: config.start_timeout,
            }),
            overflow: AtomicU8::new(0),
            restarts: predecessor.map_or_else(Arc::default, |p| p.restarts.clone()),
            abandoned_threads: AtomicU64::new(0),
            stuck_at: AtomicU64::new(0),
            child: Arc::default(),
            retired: AtomicBool::new(false),
            routes: Mutex::new(Vec::new()),
            waiting_on: AtomicUsize::new(0),
            control_pending: AtomicBool::new(false),
            stop_asked: AtomicBool::new(false),
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
            start_timeout: config.start_timeout,
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

    /// Whether publishers should put events in this mailbox: its thread
    /// will take them. A starting instance takes them after its `init`, a
    /// stopping one drains its queue before it stops, a restarting one hands
    /// them to its next incarnation. A failed, flapping or stopped one does
    /// not: what it misses is counted at delivery (received and dropped).
    pub(crate) fn accepts_events(&self) -> bool {
        matches!(
            self.state(),
            State::Starting | State::Running | State::Stopping | State::Restarting
        )
    }

    /// Take everything out of the mailbox, counting it as dropped; returns
    /// how much there was. Safe from any thread (each event is counted by
    /// whoever takes it out).
    pub(crate) fn drop_queued(&self) -> u64 {
        let mut dropped = 0;
        while self.rx.try_recv().is_ok() {
            dropped += 1;
        }
        if dropped > 0 {
            let abandoned = &self.stats.producer.abandoned;
            abandoned.fetch_add(dropped, Ordering::AcqRel);
        }
        dropped
    }

    /// Count as dropped what sits in the mailbox of a listed instance that no
    /// longer takes events: an event that raced its failure or stop (its
    /// publisher saw it running a moment before). Called by whoever looks at
    /// the counts, so no such event stays uncounted.
    pub(crate) fn sweep(&self) {
        if !self.rx.is_empty() && !self.accepts_events() && !self.retired.load(Ordering::Acquire) {
            self.drop_queued();
        }
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
        self.sweep();
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
        tracing::error!(plugin = %self.name, "plugin failed: {}", Escaped(&reason));
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
    /// Stop: first handle (`drain`) or drop what is queued, then call `stop`
    /// (unless a [`Control::StopInPlace`] ran it already), and end.
    Stop { drain: bool },
    /// The host's shutdown: first handle what is queued now (`drop_before`
    /// is `None`), or drop what was published before event id
    /// `drop_before` (the shutdown deadline) and handle the rest, then call
    /// `stop`, but keep the instance and its mailbox: events that arrive
    /// afterwards (what other instances' stops publish) still reach its
    /// `on_event`, until a [`Control::Stop`] ends it. Nothing restarts it
    /// from then on. The reply says whether `stop` ran cleanly.
    StopInPlace {
        drop_before: Option<u64>,
        reply: Sender<bool>,
    },
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

/// Makes a fresh instance on the calling thread (the thread of the
/// incarnation it starts; see [`incarnate`]): at start, and at each restart.
pub(crate) type Factory = Arc<dyn Fn() -> Result<Box<dyn Instance>, CallFailure> + Send + Sync>;

/// Restart policy and the record the flapping rule is judged on.
pub(crate) struct Supervision {
    /// How often the worker calls the plugin's `tick`.
    pub tick: Option<Duration>,
    pub restart: crate::config::Restart,
    pub max_restarts: u32,
    pub window: Duration,
    /// How long a (re)start's `init` may run.
    pub start_timeout: Duration,
    pub recent: std::collections::VecDeque<Instant>,
}

impl Supervision {
    pub(crate) fn new(config: &PluginConfig) -> Supervision {
        Supervision {
            tick: config.tick_interval,
            restart: config.restart,
            max_restarts: config.max_restarts,
            window: config.restart_window,
            start_timeout: config.start_timeout,
            recent: Default::default(),
        }
    }

    /// Every failure that reaches the policy ends the instance: `on-failure`
    /// and `always` restart it, `never` does not. (An instance never ends
    /// by itself without failing, so `always` has nothing more to restart.)
    fn wants_restart(&self, _failure: &CallFailure) -> bool {
        self.restart != crate::config::Restart::Never
    }

    /// The delay before the next restart (exponential, from 50 ms to 5 s), or
    /// `None` when the restarts inside the window already reached the limit.
    fn next_delay(&mut self, now: Instant) -> Option<Duration> {
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
        Some(Duration::from_millis(50 * 2u64.pow(exponent)).min(Duration::from_secs(5)))
    }
}

/// How an incarnation's `init` went (see [`incarnate`]).
pub(crate) enum Init {
    /// The instance exists; its thread waits for its [`Worker`] on `worker`
    /// and then serves its events.
    Ready {
        worker: Sender<Worker>,
        thread: std::thread::JoinHandle<()>,
    },
    /// `init` failed, or did not return within its `start_timeout`.
    Failed(CallFailure),
    /// The OS refused a thread.
    NoThread(std::io::Error),
    /// The host's startup was cancelled, or a stop ordered, while `init` ran.
    Cancelled,
}

/// How often a wait for an `init` looks at its cancel flag.
const CANCEL_CHECK: Duration = Duration::from_millis(5);

/// Make an instance from `factory` on a new thread, which becomes the
/// instance's own thread once it is handed its [`Worker`], and wait for its
/// `init`: up to `limit`, or until `cancelled` is set or a stop is ordered.
///
/// An `init` given up on is ended as far as the host can end it: a process
/// instance's child is killed (its thread then ends by itself); a thread
/// instance's thread is abandoned, blocked in the plugin. It is never
/// joined and its library never unloaded; if its `init` ever returns, the
/// late instance is dropped on that thread and never sees an event.
pub(crate) fn incarnate(
    slot: &Arc<Slot>,
    factory: &Factory,
    limit: Duration,
    cancelled: Option<&AtomicBool>,
) -> Init {
    type Made = Result<Sender<Worker>, CallFailure>;
    let (init_tx, init_rx) = crossbeam_channel::bounded::<Made>(1);
    let (make, own) = (factory.clone(), slot.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("plughost:{}", slot.name))
        .spawn(move || {
            let instance = match make() {
                Ok(instance) => instance,
                Err(failure) => {
                    let _ = init_tx.send(Err(failure));
                    return;
                }
            };
            own.adopt(instance.as_ref());
            let (worker_tx, worker_rx) = crossbeam_channel::bounded::<Worker>(1);
            let sent = init_tx.send(Ok(worker_tx));
            // When the waiter gave up, dropping the last sender discards the
            // channel and the `worker_tx` in it: `recv` below fails.
            drop(init_tx);
            if sent.is_ok()
                && let Ok(mut worker) = worker_rx.recv()
            {
                worker.instance = Some(instance);
                worker.run();
            }
        });
    let thread = match spawned {
        Ok(thread) => thread,
        Err(cause) => return Init::NoThread(cause),
    };
    let deadline = Instant::now() + limit;
    let made = |made: Made, thread: std::thread::JoinHandle<()>| match made {
        Ok(worker) => Init::Ready { worker, thread },
        Err(failure) => {
            // Its thread has nothing left to do.
            let _ = thread.join();
            Init::Failed(failure)
        }
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match init_rx.recv_timeout(left.min(CANCEL_CHECK)) {
            Ok(outcome) => return made(outcome, thread),
            Err(RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
                let ended = "its thread ended during init".to_owned();
                return Init::Failed(CallFailure::Panic(ended));
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        let cancel = cancelled.is_some_and(|flag| flag.load(Ordering::Acquire))
            || slot.stop_asked.load(Ordering::Acquire);
        if cancel || Instant::now() >= deadline {
            // Unless it made it just now, give up on it.
            if let Ok(outcome) = init_rx.try_recv() {
                return made(outcome, thread);
            }
            drop(init_rx);
            let fate = give_up(slot, thread);
            if cancel {
                tracing::warn!(plugin = %slot.name, "stopped during its init; {fate}");
                return Init::Cancelled;
            }
            let reason = format!("did not return within {limit:?} (start_timeout); {fate}");
            return Init::Failed(CallFailure::Panic(reason));
        }
    }
}

/// End an incarnation stuck in `init` as far as the host can; says how.
fn give_up(slot: &Slot, thread: std::thread::JoinHandle<()>) -> String {
    // Never joined: a thread stuck in a plugin may never return.
    drop(thread);
    match slot.settings().isolation {
        crate::config::Isolation::Process => {
            // Its thread sees the child die, and ends.
            slot.child.kill();
            "its process was killed".to_owned()
        }
        crate::config::Isolation::Thread => {
            let n = slot.abandoned_threads.fetch_add(1, Ordering::AcqRel) + 1;
            format!(
                "its thread is abandoned, blocked in the plugin, and its library stays loaded ({n} such thread(s) for this instance)"
            )
        }
    }
}

/// Handler errors logged one by one before the log thins out.
const ERRORS_LOGGED_FIRST: u64 = 10;
/// After the first ones, one handler error in this many is logged.
const ERRORS_LOGGED_EVERY: u64 = 1000;
/// Where every handler error is counted, whether logged or not.
const ERRORS_COUNTED: &str =
    "every one is counted as `failed` in /plugins, /metrics and the shutdown summary";

/// Which handler errors were logged: all are counted, not all are logged.
#[derive(Default)]
struct ErrorLog {
    seen: u64,
    /// Errors not logged since the last one that was.
    unlogged: u64,
}

/// What to log about one more handler error.
#[derive(Debug, PartialEq, Eq)]
enum ErrorNote {
    /// Log it.
    Log,
    /// Log it, and that the log thins out from now on.
    LogAndThin,
    /// Log it, and how many were not logged since the last one.
    LogAfter(u64),
    /// Do not log it (it is counted).
    Skip,
}

impl ErrorLog {
    fn record(&mut self) -> ErrorNote {
        self.seen += 1;
        if self.seen < ERRORS_LOGGED_FIRST {
            ErrorNote::Log
        } else if self.seen == ERRORS_LOGGED_FIRST {
            ErrorNote::LogAndThin
        } else if self.seen.is_multiple_of(ERRORS_LOGGED_EVERY) {
            ErrorNote::LogAfter(std::mem::take(&mut self.unlogged))
        } else {
            self.unlogged += 1;
            ErrorNote::Skip
        }
    }
}

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
                self.log_error(event, &message);
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
            self.log_error(&events[*index], message);
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

    fn log_error(&mut self, event: &Event, message: &str) {
        // Every error is counted; the log says the first ones, then one in
        // a thousand, and says how many it left out.
        let note = self.errors.record();
        let (name, topic, message) = (&self.slot.name, Escaped(event.topic()), Escaped(message));
        let id = event.id();
        match note {
            ErrorNote::Log => {
                tracing::warn!(plugin = %name, "event {id} on {topic} failed: {message}")
            }
            ErrorNote::LogAndThin => tracing::warn!(
                plugin = %name,
                "event {id} on {topic} failed: {message} ({ERRORS_LOGGED_FIRST} handler errors logged; from now on only one in {ERRORS_LOGGED_EVERY} is, and {ERRORS_COUNTED})"
            ),
            ErrorNote::LogAfter(unlogged) => tracing::warn!(
                plugin = %name,
                "event {id} on {topic} failed: {message} ({unlogged} handler error(s) since the last one logged were not logged; {ERRORS_COUNTED})"
            ),
            ErrorNote::Skip => {}
        }
    }

    /// Say how many handler errors went unlogged since the last one logged.
    fn flush_error_log(&mut self) {
        let unlogged = std::mem::take(&mut self.errors.unlogged);
        if unlogged > 0 {
            tracing::warn!(
                plugin = %self.slot.name,
                "{unlogged} handler error(s) since the last one logged were not logged; {ERRORS_COUNTED}"
            );
        }
    }

    /// The instance is dead: report it, and leave the rest to the restart policy.
    fn fail(&mut self, failure: CallFailure) {
        // Drop it here, on its own thread (a process instance reaps its child).
        self.instance = None;
        let next = if !self.stop_ran && self.supervision.wants_restart(&failure) {
            State::Restarting
        } else {
            State::Failed
        };
        self.slot.fail_to(&self.bus, failure.to_string(), next);
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
    fn drop_backlog(&mut self) {
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
    fn supervise(&mut self, failure: CallFailure) -> Next {
        let slot = self.slot.clone();
        if self.stop_ran || !self.supervision.wants_restart(&failure) {
            self.drop_backlog();
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
            self.supervision.recent.push_back(Instant::now());
            let restarts = slot.restarts.fetch_add(1, Ordering::AcqRel) + 1;
            let limit = self.supervision.start_timeout;
            let failure = match incarnate(&slot, &self.factory, limit, None) {
                Init::Ready { worker, .. } => {
                    slot.set_state(State::Running);
                    tracing::info!(plugin = %slot.name, "restarted (restart {restarts})");
                    let payload = lifecycle(serde_json::json!({"restarts": restarts}));
                    self.bus
                        .publish_host_on(Some(&slot), "plughost.plugin.restarted", payload);
                    return Next::Handoff(worker);
                }
                Init::Failed(failure) => format!("init {failure}"),
                Init::NoThread(cause) => format!("cannot start its thread: {cause}"),
                // A stop was ordered: the control lane has it.
                Init::Cancelled => return Next::Go,
            };
            slot.fail_to(&self.bus, failure, State::Restarting);
        }
    }

    /// Carry out one order.
    fn obey(&mut self, order: Control) -> Next {
        match order {
            Control::Stop { drain } => Next::Stop(drain),
            Control::StopInPlace { drop_before, reply } => {
                let _ = reply.send(self.stop_in_place(drop_before));
                Next::Go
            }
            Control::Replace { reply, .. } if self.stop_ran => {
                let _ = reply.send(Err("the host is shutting down".to_owned()));
                Next::Go
            }
            Control::Probe(probe, reply) => {
                reply((self.slot.index, self.probe(probe)));
                Next::Go
            }
            Control::Replace {
                factory,
                supervision,
                reply,
            } => {
                // The old instance stops and goes on its own thread: this one.
                if let Some(mut old) = self.instance.take()
                    && let Err(failure) = old.stop()
                {
                    tracing::warn!(plugin = %self.slot.name, "stop before restart failed: {}", Escaped(&failure.to_string()));
                }
                self.factory = factory;
                self.supervision = supervision;
                self.pending_failure = None;
                let limit = self.supervision.start_timeout;
                let failure = match incarnate(&self.slot, &self.factory, limit, None) {
                    Init::Ready { worker, .. } => {
                        self.slot.set_state(State::Running);
                        let _ = reply.send(Ok(()));
                        return Next::Handoff(worker);
                    }
                    Init::Failed(failure) => failure,
                    Init::NoThread(cause) => {
                        CallFailure::Error(format!("cannot start its thread: {cause}"))
                    }
                    Init::Cancelled => {
                        // A stop was ordered: the control lane has it.
                        let _ = reply.send(Err("stopped during its init".to_owned()));
                        return Next::Go;
                    }
                };
                let _ = reply.send(Err(format!("init {failure}")));
                self.fail_init(failure);
                Next::Go
            }
            Control::Http(request, reply) => {
                let stop_ran = self.stop_ran;
                let answer = match self.instance.as_mut().filter(|_| !stop_ran) {
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
                Next::Go
            }
            Control::Died { pid, failure } => {
                // A stale notice about a process already replaced is ignored.
                if self.instance.as_ref().and_then(|i| i.pid()) == Some(pid) {
                    self.fail(failure);
                }
                Next::Go
            }
        }
    }

    fn probe(&mut self, probe: Probe) -> ProbeAnswer {
        if self.stop_ran {
            return ProbeAnswer::Failed(self.slot.state().as_str().to_owned());
        }
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

    /// End the instance: handle (`drain`) or drop what is queued, run its
    /// `stop`, drop it. After the shutdown's [`Worker::stop_in_place`], only
    /// the last step is left: see [`Worker::tear_down`].
    fn finish(mut self, drain: bool) {
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
        self.flush_error_log();
        if let Some(mut instance) = self.instance.take() {
            match instance.stop() {
                Ok(()) => self.slot.set_state(State::Stopped),
                Err(failure) => self.slot.fail(&self.bus, format!("stop {failure}")),
            }
        } else if matches!(self.slot.state(), State::Stopping | State::Restarting) {
            // It died while draining: it stops failed.
            self.slot.set_state(State::Failed);
        }
    }

    /// Hand the instance up to `limit` events from its mailbox (those a
    /// failure left first), in runs of up to [`BATCH`]; once it has failed,
    /// the rest of a run is counted as dropped.
    fn handle_queued(&mut self, mut limit: usize) {
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
    fn drop_queue(&mut self) -> u64 {
        let requeued = self.requeue.len() as u64;
        self.requeue.clear();
        add(&self.slot.stats.consumer.discarded, requeued);
        requeued + self.slot.drop_queued()
    }

    /// Count as dropped what is queued and was published before event id
    /// `deadline`; keep the rest (published since: what other instances'
    /// `stop`s publish while this one's order waits) at the front of the
    /// queue, in order. Returns how many were dropped.
    fn drop_queued_before(&mut self, deadline: u64) -> u64 {
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
    fn stop_in_place(&mut self, drop_before: Option<u64>) -> bool {
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
        self.flush_error_log();
        let Some(instance) = self.instance.as_mut() else {
            return false; // it failed on one of them, for good (see `fail`)
        };
        match instance.stop() {
            Ok(()) => true,
            Err(failure) => {
                self.instance = None;
                self.slot.fail(&self.bus, format!("stop {failure}"));
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
    fn tear_down(mut self) {
        self.flush_error_log();
        if self.instance.is_some() {
            self.slot.set_state(State::Stopped);
        }
        self.drop_queue();
        drop(self.instance.take());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn plugin(extra: &str) -> PluginConfig {
        let text = format!("[[plugin]]\nname = \"t\"\nlibrary = \"x\"\n{extra}");
        let config = Config::parse(std::path::Path::new("/p.toml"), &text).unwrap();
        config.plugins[0].clone()
    }

    fn slot(extra: &str) -> Arc<Slot> {
        let plugin = plugin(&format!("queue_capacity = 8\n{extra}"));
        Arc::new(Slot::new(0, &plugin, "x".into(), "rust", None))
    }

    fn event(id: u64) -> Event {
        Event::new(
            id,
            0,
            Name::intern("t.e"),
            Name::intern("host"),
            Box::new([]),
        )
    }

    struct Quiet;

    impl Instance for Quiet {
        fn on_event(&mut self, _: &EventView<'_>) -> Result<(), CallFailure> {
            Ok(())
        }
        fn stop(&mut self) -> Result<(), CallFailure> {
            Ok(())
        }
        fn health(&mut self) -> Result<Option<Health>, CallFailure> {
            Ok(None)
        }
        fn ready(&mut self) -> Result<Option<Readiness>, CallFailure> {
            Ok(None)
        }
        fn jobs(&mut self) -> Result<Option<Vec<JobReport>>, CallFailure> {
            Ok(None)
        }
    }

    #[test]
    fn the_error_log_names_ten_then_one_in_a_thousand_and_how_many_it_left_out() {
        let mut log = ErrorLog::default();
        let notes: Vec<ErrorNote> = (0..2500).map(|_| log.record()).collect();
        assert!(notes[..9].iter().all(|n| *n == ErrorNote::Log));
        assert_eq!(notes[9], ErrorNote::LogAndThin);
        assert_eq!(notes[999], ErrorNote::LogAfter(989));
        assert_eq!(notes[1999], ErrorNote::LogAfter(999));
        let logged = notes.iter().filter(|n| **n != ErrorNote::Skip).count();
        assert_eq!(logged, 12);
        assert_eq!(log.unlogged, 500, "said when the instance stops");
    }

    #[test]
    fn an_instance_that_takes_no_events_has_what_sits_in_its_mailbox_counted_as_dropped() {
        for (state, swept) in [
            (State::Starting, false),
            (State::Running, false),
            (State::Stopping, false),
            (State::Restarting, false),
            (State::Failed, true),
            (State::Flapping, true),
            (State::Stopped, true),
        ] {
            let slot = slot("");
            slot.set_state(state);
            for id in 0..3 {
                slot.stats.producer.offered.fetch_add(1, Ordering::Relaxed);
                slot.tx.try_send(event(id)).unwrap();
            }
            let counts = slot.counts();
            assert_eq!(counts.received, 3);
            assert_eq!(slot.accepts_events(), !swept, "{state:?}");
            assert_eq!(counts.dropped, if swept { 3 } else { 0 }, "{state:?}");
            assert_eq!(slot.rx.len(), if swept { 0 } else { 3 }, "{state:?}");
        }
        // A retired slot's mailbox is moved, not swept.
        let slot = slot("");
        slot.set_state(State::Stopped);
        slot.retired.store(true, Ordering::Release);
        slot.tx.try_send(event(1)).unwrap();
        slot.sweep();
        assert_eq!(slot.rx.len(), 1);
    }

    #[test]
    fn a_slot_carries_on_its_predecessors_totals() {
        let old = slot("");
        old.stats.producer.offered.fetch_add(5, Ordering::Relaxed);
        add(&old.stats.consumer.processed, 5);
        old.restarts.fetch_add(2, Ordering::Relaxed);
        let new = Slot::new(
            1,
            &plugin("queue_capacity = 64\n"),
            "x".into(),
            "rust",
            Some(&old),
        );
        new.stats.producer.offered.fetch_add(1, Ordering::Relaxed);
        assert_eq!(new.counts().received, 6);
        assert_eq!(new.counts().processed, 5);
        assert_eq!(new.restarts.load(Ordering::Acquire), 2);
        assert_eq!(new.capacity, 64);
    }

    fn factory(
        make: impl Fn() -> Result<Box<dyn Instance>, CallFailure> + Send + Sync + 'static,
    ) -> Factory {
        Arc::new(make)
    }

    #[test]
    fn an_init_is_waited_for_up_to_its_limit_then_given_up() {
        let slot = slot("");
        let quick = factory(|| Ok(Box::new(Quiet)));
        let limit = Duration::from_secs(30);
        assert!(matches!(
            incarnate(&slot, &quick, limit, None),
            Init::Ready { .. }
        ));
        let failing = factory(|| Err(CallFailure::Error("no".into())));
        match incarnate(&slot, &failing, limit, None) {
            Init::Failed(CallFailure::Error(message)) => assert_eq!(message, "no"),
            _ => panic!("a failing init fails"),
        }
        let hanging = factory(|| {
            loop {
                std::thread::park();
            }
        });
        let limit = Duration::from_millis(50);
        match incarnate(&slot, &hanging, limit, None) {
            Init::Failed(CallFailure::Panic(message)) => assert_eq!(
                message,
                "did not return within 50ms (start_timeout); its thread is abandoned, blocked in the plugin, and its library stays loaded (1 such thread(s) for this instance)"
            ),
            _ => panic!("a hanging init fails at its limit"),
        }
        assert_eq!(slot.abandoned_threads.load(Ordering::Acquire), 1);
    }

    fn supervision(max_restarts: u32, window: &str) -> Supervision {
        Supervision::new(&plugin(&format!(
            "max_restarts = {max_restarts}\nrestart_window = \"{window}\"\n"
        )))
    }

    /// Fail again as soon as each restart is done, as the worker does: ask
    /// for the delay at `now`, wait it out, record the restart. Returns the
    /// delays in order, until the schedule says flapping (or `limit`).
    fn restart_at_once(s: &mut Supervision, now: &mut Instant, limit: usize) -> Vec<u64> {
        let mut delays = Vec::new();
        while delays.len() < limit {
            let Some(delay) = s.next_delay(*now) else {
                break;
            };
            delays.push(delay.as_millis() as u64);
            *now += delay;
            s.recent.push_back(*now);
        }
        delays
    }

    #[test]
    fn every_failure_is_restarted_unless_the_policy_is_never() {
        for (policy, restarts) in [("never", false), ("on-failure", true), ("always", true)] {
            let s = Supervision::new(&plugin(&format!("restart = \"{policy}\"\n")));
            for failure in [
                CallFailure::Error("e".into()),
                CallFailure::Panic("p".into()),
            ] {
                assert_eq!(s.wants_restart(&failure), restarts, "{policy}: {failure:?}");
            }
        }
    }

    #[test]
    fn the_restart_backoff_doubles_from_50ms_up_to_5s() {
        let mut s = supervision(10_000, "24h");
        let mut now = Instant::now();
        assert_eq!(
            restart_at_once(&mut s, &mut now, 12),
            [
                50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000, 5000
            ]
        );
        // However many restarts the window holds, never more than 5 s.
        assert_eq!(
            restart_at_once(&mut s, &mut now, 200).iter().max(),
            Some(&5000)
        );
        assert_eq!(s.recent.len(), 212);
    }

    #[test]
    fn restarts_that_left_the_window_no_longer_count() {
        let mut s = supervision(5, "60s");
        let start = Instant::now();
        let mut now = start;
        assert_eq!(restart_at_once(&mut s, &mut now, 3), [50, 100, 200]);
        let last = now;
        // The first restart (at 50 ms) is exactly 60 s old: it still counts.
        let at = start + Duration::from_millis(50) + Duration::from_secs(60);
        assert_eq!(s.next_delay(at), Some(Duration::from_millis(400)));
        // A millisecond later it left the window: the wait is one step shorter.
        let at = at + Duration::from_millis(1);
        assert_eq!(s.next_delay(at), Some(Duration::from_millis(200)));
        assert_eq!(s.recent.len(), 2);
        // Once the last one left too, the schedule starts over at 50 ms.
        let at = last + Duration::from_secs(60) + Duration::from_millis(1);
        assert_eq!(s.next_delay(at), Some(Duration::from_millis(50)));
        assert!(s.recent.is_empty());
    }

    #[test]
    fn the_failure_after_max_restarts_inside_the_window_is_flapping() {
        let mut now = Instant::now();
        let mut s = supervision(5, "60s");
        assert_eq!(
            restart_at_once(&mut s, &mut now, 100),
            [50, 100, 200, 400, 800],
            "5 restarts, then no delay: flapping"
        );
        assert_eq!(s.next_delay(now), None);
        assert_eq!(s.next_delay(now + Duration::from_secs(50)), None);
        // Restarts spread wider than the window never reach the limit.
        let mut s = supervision(2, "1s");
        for _ in 0..10 {
            let delay = s.next_delay(now).expect("fewer than 2 in the last second");
            now += delay;
            s.recent.push_back(now);
            now += Duration::from_millis(600);
        }
        // `max_restarts = 0`: the first failure is already flapping.
        assert_eq!(supervision(0, "60s").next_delay(Instant::now()), None);
        let mut s = supervision(1, "60s");
        assert_eq!(restart_at_once(&mut s, &mut now, 100), [50]);
    }

    #[test]
    fn an_init_is_given_up_when_cancelled_or_stopped() {
        let slot = slot("");
        let hanging = factory(|| {
            loop {
                std::thread::park();
            }
        });
        let limit = Duration::from_secs(3600);
        let cancelled = AtomicBool::new(true);
        assert!(matches!(
            incarnate(&slot, &hanging, limit, Some(&cancelled)),
            Init::Cancelled
        ));
        slot.stop_asked.store(true, Ordering::Release);
        assert!(matches!(
            incarnate(&slot, &hanging, limit, None),
            Init::Cancelled
        ));
        assert_eq!(slot.abandoned_threads.load(Ordering::Acquire), 2);
    }
}
