//! An instance's slot: what publishers, operators and the instance's thread
//! share. Its mailbox (a bounded channel), the settings a reload may change
//! in place, its lifecycle state, and its counters, which belong to its
//! name: a reload that gives it a new mailbox carries them over. Every
//! event routed to an instance is counted once as received and ends up
//! processed, failed or dropped.

use crate::config::{Isolation, Overflow, PluginConfig};
use crate::event::{Event, Name};
use crate::library::process::ChildPid;
use crossbeam_channel::{Receiver, Sender};
use crossbeam_utils::CachePadded;
use plughost_api::topic::Pattern;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    pub(crate) fn record(&self, took: std::time::Duration, events: u64) {
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
pub(crate) fn bump(counter: &AtomicU64) {
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
    /// Who the instance is for the routing's echo rule: its first slot's
    /// index, kept by the slots that replace it (a reload that changed its
    /// capacity), so a publish from either is never delivered back to it.
    pub instance_id: usize,
    /// `echo = true`: it receives the events it published itself.
    pub echo: AtomicBool,
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
    pub child: Arc<ChildPid>,
    /// Removed from the config by a reload: no longer listed or routed to.
    pub retired: AtomicBool,
    /// The HTTP routes its plugin serves (as its instance declared them).
    pub routes: Mutex<Vec<String>>,
    /// Slot index + 1 of the mailbox this instance's thread is blocked on, or 0.
    pub waiting_on: AtomicUsize,
    /// Wakes this instance's thread while it waits for room: another
    /// publisher found the cycle of waits this one must break.
    pub wake_tx: Sender<()>,
    pub wake_rx: Receiver<()>,
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
    pub isolation: Isolation,
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
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
        let slot = Slot {
            index,
            instance_id: predecessor.map_or(index, |p| p.instance_id),
            echo: AtomicBool::new(false),
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
            wake_tx,
            wake_rx,
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
        self.echo.store(config.echo, Ordering::Release);
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
    pub(crate) fn set_routes(&self, routes: Vec<String>) {
        *self.routes.lock().unwrap_or_else(|e| e.into_inner()) = routes;
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
}

/// Single-writer add (see [`bump`]).
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{event, plugin, slot};

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
}
