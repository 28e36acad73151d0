//! Routing: who gets an event, and how it enters their mailboxes.
//!
//! A topic's subscribers are computed once and cached per publishing thread
//! (keyed by the bus's generation, bumped whenever the set of instances
//! changes), so the hot path takes no lock and matches no pattern. An
//! instance is not among the subscribers of its own events unless it set
//! `echo = true` (one comparison of instance ids per delivery). Delivery
//! applies each mailbox's overflow policy. A plugin blocked on a full mailbox
//! never deadlocks the host: when the wait closes a cycle of plugins all
//! blocked on each other (or a plugin on its own mailbox), the publisher with
//! the lowest slot in the cycle drops its one event (counted as dropped for
//! the receiver) and the cycle unwinds. The publisher that closes the cycle
//! finds it at once and wakes that one: no drop waits for a timer.
//!
//! What enters from outside (an entry point, a plugin) is checked here: the
//! size against `max_event_bytes`, and the topic against the host's reserved
//! ones, a flag of the cached route, so the check costs no pattern matching
//! per event (see `intake`).

use crate::config::Overflow;
use crate::event::{Event, Name, now_ms};
use crate::intake::{PublishError, Publisher, Refusals};
use crate::mailbox::Slot;
use crate::observe::metrics;
use crate::text::Escaped;
use crossbeam_channel::TrySendError;
use crossbeam_utils::CachePadded;
use plughost_api::ContentType;
use plughost_api::topic::{TopicError, is_reserved, validate_topic};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Cached routes per thread; cleared when it grows past this many topics.
const ROUTE_CACHE_LIMIT: usize = 4096;

mod origin;
mod wait;

pub(crate) use origin::Origin;

static NEXT_BUS_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct Bus {
    id: u64,
    generation: AtomicU64,
    slots: RwLock<Vec<Arc<Slot>>>,
    /// Taken by every publish: on a line of its own, away from what the
    /// instances' threads read.
    next_event_id: CachePadded<AtomicU64>,
    host_source: Name,
    closed: AtomicBool,
    /// Process name for Lightbus-style metrics events; `None` when disabled.
    metrics: Option<Arc<str>>,
    /// `[host] max_event_bytes`: the largest payload taken from outside.
    max_event_bytes: AtomicUsize,
    /// What entry points and plugins were refused.
    pub(crate) refusals: Refusals,
}

#[derive(Clone)]
struct Route {
    topic: Name,
    targets: Arc<[Arc<Slot>]>,
    /// Only the host publishes on it.
    reserved: bool,
}

struct RouteCache {
    bus: u64,
    generation: u64,
    routes: HashMap<Box<str>, Route>,
    /// The last topic looked up: a publisher usually repeats its topic, and
    /// comparing it costs less than hashing it.
    last: Option<Route>,
}

thread_local! {
    static ROUTES: RefCell<RouteCache> = RefCell::new(RouteCache {
        bus: 0,
        generation: 0,
        routes: HashMap::new(),
        last: None,
    });
}

impl Bus {
    /// A bus; `metrics_process` is the process name when `[metrics]` is
    /// enabled; payloads from outside larger than `max_event_bytes` are refused.
    pub(crate) fn new(metrics_process: Option<String>, max_event_bytes: usize) -> Bus {
        Bus {
            id: NEXT_BUS_ID.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(1),
            slots: RwLock::new(Vec::new()),
            next_event_id: CachePadded::new(AtomicU64::new(1)),
            host_source: Name::Interned("host"),
            closed: AtomicBool::new(false),
            metrics: metrics_process.map(Arc::from),
            max_event_bytes: AtomicUsize::new(max_event_bytes),
            refusals: Refusals::default(),
        }
    }

    /// The id the next event published will get: every event published so
    /// far has a smaller one.
    pub(crate) fn next_event_id(&self) -> u64 {
        self.next_event_id.load(Ordering::Acquire)
    }

    /// A reload changed `[host] max_event_bytes`.
    pub(crate) fn set_max_event_bytes(&self, limit: usize) {
        self.max_event_bytes.store(limit, Ordering::Relaxed);
    }

    /// Make `slot` a subscriber. Routes are recomputed on next use.
    pub(crate) fn attach(&self, slot: Arc<Slot>) {
        self.slots
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(slot);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Recompute routes on next use (subscriptions or retirements changed).
    pub(crate) fn refresh(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// All slots ever attached, in start order.
    pub(crate) fn slots(&self) -> Vec<Arc<Slot>> {
        self.slots.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// After this, blocked publishers give up instead of waiting.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Run `f` on the route of `topic`, from this thread's cache. `f` must
    /// not publish (the cache stays borrowed while it runs), so the bus
    /// publishes metrics events only once `f` has returned.
    fn with_route<R>(&self, topic: &str, f: impl FnOnce(&Route) -> R) -> Result<R, TopicError> {
        let generation = self.generation.load(Ordering::Acquire);
        ROUTES.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.bus != self.id || cache.generation != generation {
                cache.bus = self.id;
                cache.generation = generation;
                cache.routes.clear();
                cache.last = None;
            }
            if cache.last.as_ref().is_none_or(|r| &*r.topic != topic) {
                let route = match cache.routes.get(topic) {
                    Some(route) => route.clone(),
                    None => {
                        let route = self.resolve(topic)?;
                        if cache.routes.len() >= ROUTE_CACHE_LIMIT {
                            cache.routes.clear();
                        }
                        cache.routes.insert(topic.into(), route.clone());
                        route
                    }
                };
                cache.last = Some(route);
            }
            Ok(f(cache.last.as_ref().expect("set just above")))
        })
    }

    /// Match `topic` against every subscription, once per topic per thread.
    fn resolve(&self, topic: &str) -> Result<Route, TopicError> {
        validate_topic(topic)?;
        let targets: Vec<Arc<Slot>> = self
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|slot| slot.subscribes_to(topic))
            .cloned()
            .collect();
        // A topic nobody hears is not worth a place among the interned names.
        let topic = match targets.is_empty() {
            true => Name::Counted(Arc::from(topic)),
            false => Name::intern(topic),
        };
        Ok(Route {
            reserved: is_reserved(&topic),
            topic,
            targets: targets.into(),
        })
    }

    /// Publish for `by` (an entry point or a plugin) as `source`, refusing
    /// (and counting) an oversized payload, one that is not what its content
    /// type says, or a reserved or invalid topic. `origin` is the publishing
    /// instance and thread, if any.
    pub(crate) fn publish_from(
        &self,
        by: Publisher,
        origin: Origin<'_>,
        source: Name,
        topic: &str,
        payload: (Box<[u8]>, ContentType),
    ) -> Result<u64, PublishError> {
        let limit = self.max_event_bytes.load(Ordering::Relaxed);
        if payload.0.len() > limit {
            let error = PublishError::TooLarge {
                bytes: payload.0.len(),
                limit,
            };
            return Err(self.refusals.count(by, error));
        }
        if let Err(error) = payload.1.check(&payload.0) {
            return Err(self.refusals.count(by, PublishError::Content(error)));
        }
        self.publish_as(Some(by), origin, source, topic, payload)
            .map_err(|error| self.refusals.count(by, error))
    }

    /// Publish as `source`, for `by` (`None`: the host itself, which alone
    /// may use a reserved topic), from `origin` (see [`Origin`]).
    fn publish_as(
        &self,
        by: Option<Publisher>,
        origin: Origin<'_>,
        source: Name,
        topic: &str,
        payload: (Box<[u8]>, ContentType),
    ) -> Result<u64, PublishError> {
        let metrics = self.metrics.is_some();
        let published = self.with_route(topic, |route| {
            if route.reserved && by.is_some() {
                return None;
            }
            let id = self.next_event_id.fetch_add(1, Ordering::Relaxed);
            let event = Event::new(id, now_ms(), route.topic.clone(), source, payload);
            Some(match &route.targets[..] {
                [] if !metrics => (id, None),
                [only] if !metrics => {
                    self.deliver(origin, only, 1, std::iter::once(event));
                    (id, None)
                }
                targets => {
                    let event = event.into_shared();
                    self.share(origin, targets, std::slice::from_ref(&event));
                    (id, Some(event))
                }
            })
        })?;
        let Some((id, fired)) = published else {
            let topic = topic.to_owned();
            return Err(PublishError::Reserved { topic });
        };
        if let Some(event) = fired.filter(|_| metrics) {
            self.metrics_event("event_fired", origin.waiter, None, &event, None);
        }
        Ok(id)
    }

    /// Publish many payloads on one topic for `entry`: the route, the clock
    /// and the ids are taken once, and each subscriber gets the events in
    /// order. Returns the first id (the others follow it). Refused whole
    /// (each event counted) when one payload is too large or the topic is
    /// reserved or invalid.
    pub(crate) fn publish_batch(
        &self,
        entry: crate::intake::Entry,
        topic: &str,
        payloads: Vec<Box<[u8]>>,
    ) -> Result<u64, PublishError> {
        let by = Publisher::Entry(entry);
        let count = payloads.len();
        let refuse = |error| self.refusals.count_many(by, error, count as u64);
        let limit = self.max_event_bytes.load(Ordering::Relaxed);
        if let Some(bytes) = payloads.iter().map(|p| p.len()).find(|&len| len > limit) {
            return Err(refuse(PublishError::TooLarge { bytes, limit }));
        }
        let source = Name::Interned(entry.source());
        let metrics = self.metrics.is_some();
        let published = self.with_route(topic, |route| {
            if route.reserved {
                return None;
            }
            let first = self
                .next_event_id
                .fetch_add(payloads.len() as u64, Ordering::Relaxed);
            let timestamp_ms = now_ms();
            let events = payloads.into_iter().zip(first..).map(|(payload, id)| {
                let source = source.clone();
                let payload = (payload, ContentType::Bytes);
                Event::new(id, timestamp_ms, route.topic.clone(), source, payload)
            });
            Some(match &route.targets[..] {
                [] if !metrics => (first, Vec::new()),
                [only] if !metrics => {
                    self.deliver(Origin::default(), only, count, events);
                    (first, Vec::new())
                }
                targets => {
                    let events: Vec<Event> = events.map(Event::into_shared).collect();
                    self.share(Origin::default(), targets, &events);
                    (first, events)
                }
            })
        });
        let (first, fired) = match published {
            Ok(Some(published)) => published,
            Ok(None) => {
                let topic = topic.to_owned();
                return Err(refuse(PublishError::Reserved { topic }));
            }
            Err(error) => return Err(refuse(PublishError::Topic(error))),
        };
        if metrics {
            for event in &fired {
                self.metrics_event("event_fired", None, None, event, None);
            }
        }
        Ok(first)
    }

    /// Deliver shared `events`, in order, to each of `targets` (one
    /// allocation per event, not per subscriber). Each subscriber gets the
    /// whole run before the next one, so a woken instance finds more than
    /// one event waiting.
    fn share(&self, origin: Origin<'_>, targets: &[Arc<Slot>], events: &[Event]) {
        for target in targets {
            self.deliver(origin, target, events.len(), events.iter().cloned());
        }
    }

    /// Publish a lifecycle event about `subject` as the host, to every
    /// subscriber but `subject` itself: an instance is not sent the news of
    /// its own stop, which it could never take.
    pub(crate) fn publish_host_except(
        &self,
        subject: &Slot,
        topic: &str,
        payload: serde_json::Value,
    ) {
        let bytes = serde_json::to_vec(&payload)
            .unwrap_or_default()
            .into_boxed_slice();
        let routed = self.with_route(topic, |route| {
            let id = self.next_event_id.fetch_add(1, Ordering::Relaxed);
            let source = self.host_source.clone();
            let payload = (bytes, ContentType::Json);
            let event = Event::new(id, now_ms(), route.topic.clone(), source, payload);
            let event = event.into_shared();
            let targets: Vec<Arc<Slot>> = route
                .targets
                .iter()
                .filter(|target| !std::ptr::eq(&***target, subject))
                .cloned()
                .collect();
            self.share(Origin::default(), &targets, std::slice::from_ref(&event));
            event
        });
        match routed {
            Ok(event) => self.metrics_event("event_fired", None, None, &event, None),
            Err(e) => tracing::error!("cannot publish {topic}: {e}"),
        }
    }

    /// Whether `[metrics]` events are on (the workers then time each event).
    pub(crate) fn metrics_enabled(&self) -> bool {
        self.metrics.is_some()
    }

    /// Publish a JSON value as the host (lifecycle and state events).
    pub(crate) fn publish_host(&self, topic: &str, payload: serde_json::Value) {
        self.publish_host_on(None, topic, payload);
    }

    /// Publish a JSON value as the host from the thread of instance `waiter`.
    pub(crate) fn publish_host_on(
        &self,
        waiter: Option<&Slot>,
        topic: &str,
        payload: serde_json::Value,
    ) {
        let bytes = serde_json::to_vec(&payload)
            .unwrap_or_default()
            .into_boxed_slice();
        let origin = Origin {
            instance: None,
            waiter,
        };
        let payload = (bytes, ContentType::Json);
        if let Err(e) = self.publish_as(None, origin, self.host_source.clone(), topic, payload) {
            tracing::error!(
                "cannot publish {}: {}",
                Escaped(topic),
                Escaped(&e.to_string())
            );
        }
    }

    /// Publish Lightbus's `internal.metrics.<kind>` about `event`, when
    /// `[metrics]` is enabled, never about metrics events themselves.
    /// `listener` is the instance handling it (received / processed).
    pub(crate) fn metrics_event(
        &self,
        kind: &str,
        waiter: Option<&Slot>,
        listener: Option<&Slot>,
        event: &Event,
        took: Option<Duration>,
    ) {
        let Some(process_name) = &self.metrics else {
            return;
        };
        if event.topic().starts_with("internal.metrics.") {
            return;
        }
        let listener = listener.map(|slot| &*slot.name);
        let payload = metrics::payload(process_name, event, listener, took);
        self.publish_host_on(waiter, &format!("internal.metrics.{kind}"), payload);
    }

    /// Put `count` events into `target`'s mailbox, in order, applying its
    /// overflow policy to each one that finds it full. They are counted as
    /// received in one go. Nothing, and nothing counted, when `target` is
    /// the publishing instance without `echo = true`.
    fn deliver(
        &self,
        origin: Origin<'_>,
        target: &Slot,
        count: usize,
        events: impl Iterator<Item = Event>,
    ) {
        if origin.echoes_to(target) {
            return;
        }
        let from = origin.waiter;
        let stats = &target.stats.producer;
        stats.offered.fetch_add(count as u64, Ordering::Relaxed);
        if !target.accepts_events() {
            // Listed and subscribed, but not taking events (failed, flapping,
            // stopped): it misses them, counted as received and dropped here,
            // without waking its thread.
            stats.rejected.fetch_add(count as u64, Ordering::Relaxed);
            return;
        }
        for event in events {
            match target.tx.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => self.overflow(from, target, event),
                Err(TrySendError::Disconnected(_)) => {
                    unreachable!("a slot owns its own receiver")
                }
            }
        }
    }

    /// `event` found `target`'s mailbox full.
    fn overflow(&self, from: Option<&Slot>, target: &Slot, event: Event) {
        let stats = &target.stats.producer;
        match target.overflow() {
            Overflow::DropNewest => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
            }
            Overflow::DropOldest => {
                let mut event = event;
                loop {
                    if target.rx.try_recv().is_ok() {
                        stats.evicted.fetch_add(1, Ordering::Relaxed);
                    }
                    match target.tx.try_send(event) {
                        Ok(()) => return,
                        Err(TrySendError::Full(back)) => event = back,
                        Err(TrySendError::Disconnected(_)) => {
                            unreachable!("a slot owns its own receiver")
                        }
                    }
                }
            }
            Overflow::Block => self.wait_for_room(from, target, event),
        }
    }

    /// Sum of events offered to mailboxes and events finished (handled or
    /// dropped), over every slot. Equal and unchanged across two reads means
    /// no event is queued or being handled anywhere.
    ///
    /// Each instance name counts once: a slot retired by a reload shares its
    /// counters with its successor, or has finished (a removed instance).
    pub(crate) fn balance(&self) -> (u64, u64) {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .filter(|slot| !slot.retired.load(Ordering::Acquire))
            .fold((0, 0), |(offered, finished), slot| {
                slot.sweep();
                let (o, f) = slot.stats.balance();
                (offered + o, finished + f)
            })
    }
}

/// Property test of the bus and the instance thread together: publishers on
/// several threads, instances with random overflow policies and capacities
/// whose handler takes, fails, is slow or panics (and is restarted) at
/// random. Every event routed to an instance is counted once: received =
/// processed + failed + dropped, exactly; what an instance took of each
/// publisher's events is in that publisher's order; nothing is lost under
/// `block`.
#[cfg(test)]
mod properties {
    use super::*;
    use crate::config::{Config, PluginConfig};
    use crate::event::EventView;
    use crate::instance::{CallFailure, Instance};
    use crate::intake::Entry;
    use crate::mailbox::State;
    use crate::supervisor::policy::Supervision;
    use crate::worker::{Control, Factory, Init, Worker, incarnate};
    use plughost_api::{Health, JobReport, Readiness};
    use proptest::prelude::*;
    use std::sync::Mutex;

    /// What the handler does with each event it is given, in turn.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Act {
        Take,
        Fail,
        Slow,
        Panic,
    }

    /// A handler that records what it was given (publisher, number) and
    /// acts as its script says. Its incarnations share the record and the
    /// script.
    struct Consumer {
        seen: Arc<Mutex<Vec<(u8, u32)>>>,
        script: Arc<Vec<Act>>,
        panicked: Arc<AtomicBool>,
    }

    impl Instance for Consumer {
        fn on_event(&mut self, event: &EventView<'_>) -> Result<(), CallFailure> {
            let payload = event.payload;
            let number = u32::from_le_bytes(payload[1..5].try_into().expect("5 bytes"));
            let mut seen = self.seen.lock().unwrap();
            seen.push((payload[0], number));
            match self.script[seen.len() % self.script.len()] {
                Act::Take => Ok(()),
                Act::Fail => Err(CallFailure::Error("no".into())),
                Act::Slow => {
                    drop(seen);
                    std::thread::sleep(Duration::from_micros(300));
                    Ok(())
                }
                // Once: each restart waits out a longer backoff.
                Act::Panic if !self.panicked.swap(true, Ordering::Relaxed) => {
                    Err(CallFailure::Panic("panicked".into()))
                }
                Act::Panic => Ok(()),
            }
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

    /// An instance as the supervisor starts one, on a real thread.
    struct Running {
        slot: Arc<Slot>,
        seen: Arc<Mutex<Vec<(u8, u32)>>>,
        control: crossbeam_channel::Sender<Control>,
        done: crossbeam_channel::Receiver<()>,
    }

    fn start(bus: &Arc<Bus>, index: usize, config: &PluginConfig, script: Vec<Act>) -> Running {
        let slot = Arc::new(Slot::new(index, config, "x".into(), "rust", None));
        bus.attach(slot.clone());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (record, script) = (seen.clone(), Arc::new(script));
        let panicked = Arc::new(AtomicBool::new(false));
        let factory: Factory = Arc::new(move || {
            let consumer = Consumer {
                seen: record.clone(),
                script: script.clone(),
                panicked: panicked.clone(),
            };
            Ok(Box::new(consumer) as Box<dyn Instance>)
        });
        let (control, control_rx) = crossbeam_channel::unbounded();
        let (done_tx, done) = crossbeam_channel::bounded(0);
        let supervision = Supervision::new(config);
        let worker = Worker::new(
            slot.clone(),
            bus.clone(),
            factory.clone(),
            supervision,
            control_rx,
            done_tx,
        );
        match incarnate(&slot, &factory, Duration::from_secs(10), None) {
            Init::Ready { worker: to, .. } => {
                slot.set_state(State::Running);
                to.send(worker).expect("its thread waits for it");
            }
            _ => panic!("the consumer's init cannot fail"),
        }
        Running {
            slot,
            seen,
            control,
            done,
        }
    }

    fn act() -> impl Strategy<Value = Act> {
        prop_oneof![12 => Just(Act::Take), 3 => Just(Act::Fail), 3 => Just(Act::Slow), 1 => Just(Act::Panic)]
    }

    fn overflow() -> impl Strategy<Value = Overflow> {
        prop_oneof![
            Just(Overflow::Block),
            Just(Overflow::DropOldest),
            Just(Overflow::DropNewest)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn every_event_is_counted_once_and_each_publishers_order_is_kept(
            instances in proptest::collection::vec((overflow(), 1usize..16, proptest::collection::vec(act(), 1..40)), 1..4),
            publishers in proptest::collection::vec((1u32..300, any::<bool>()), 1..5),
        ) {
            let bus = Arc::new(Bus::new(None, 1 << 20));
            let running: Vec<Running> = instances
                .iter()
                .enumerate()
                .map(|(index, (overflow, capacity, script))| {
                    let text = format!(
                        "[[plugin]]\nname = \"i{index}\"\nlibrary = \"x\"\nsubscribe = [\"t.>\"]\n\
                         queue_capacity = {capacity}\noverflow = \"{}\"\nmax_restarts = 100\n",
                        overflow.as_str()
                    );
                    let config = Config::parse(std::path::Path::new("/p.toml"), &text).unwrap();
                    start(&bus, index, &config.plugins[0], script.clone())
                })
                .collect();
            let threads: Vec<_> = publishers
                .iter()
                .enumerate()
                .map(|(p, &(count, batched))| {
                    let bus = bus.clone();
                    std::thread::spawn(move || {
                        let payload = |n: u32| {
                            let mut bytes = vec![p as u8];
                            bytes.extend(n.to_le_bytes());
                            bytes.into_boxed_slice()
                        };
                        let by = Publisher::Entry(Entry::Embedder);
                        let mut n = 0;
                        while n < count {
                            if batched {
                                let run: Vec<_> = (n..count.min(n + 7)).map(payload).collect();
                                n += run.len() as u32;
                                bus.publish_batch(Entry::Embedder, "t.e", run).unwrap();
                            } else {
                                bus.publish_from(by, Origin::default(), Name::intern("host"), "t.e", (payload(n), ContentType::Bytes)).unwrap();
                                n += 1;
                            }
                        }
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            let sent: u64 = publishers.iter().map(|&(count, _)| u64::from(count)).sum();
            for (instance, (overflow, capacity, _)) in running.iter().zip(&instances) {
                // Stop once every event is finished, the restart of a panic
                // included: a stop ordered while the instance waits out its
                // restart backoff ends it without a restart, and what is
                // queued is dropped (counted), which is another promise.
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while std::time::Instant::now() < deadline {
                    let counts = instance.slot.counts();
                    let finished = counts.processed + counts.failed + counts.dropped;
                    if finished == counts.received && instance.slot.state() != State::Restarting {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                instance.control.send(Control::Stop { drain: true }).unwrap();
                // The worker's end drops its `done` sender.
                prop_assert!(instance.done.recv_timeout(Duration::from_secs(60)).is_err());
                let counts = instance.slot.counts();
                let seen = instance.seen.lock().unwrap().clone();
                let context = format!("{overflow:?} x{capacity}: {counts:?}, {} seen", seen.len());
                prop_assert_eq!(counts.received, sent, "{}", context);
                prop_assert_eq!(counts.processed + counts.failed + counts.dropped, counts.received, "{}", context);
                prop_assert_eq!(counts.processed + counts.failed, seen.len() as u64, "{}", context);
                for (p, &(count, _)) in publishers.iter().enumerate() {
                    let taken: Vec<u32> = seen.iter().filter(|(q, _)| *q as usize == p).map(|(_, n)| *n).collect();
                    prop_assert!(taken.windows(2).all(|w| w[0] < w[1]), "publisher {}'s order: {:?} ({})", p, taken, context);
                    if *overflow == Overflow::Block {
                        prop_assert_eq!(taken, (0..count).collect::<Vec<_>>(), "{}", context);
                    }
                }
                if *overflow == Overflow::Block {
                    prop_assert_eq!(counts.dropped, 0, "{}", context);
                }
                // Failed when it panicked while draining (it is not restarted then).
                prop_assert!(matches!(instance.slot.state(), State::Stopped | State::Failed), "{}", context);
            }
        }
    }
}
