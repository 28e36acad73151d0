//! Routing: who gets an event, and how it enters their mailboxes.
//!
//! A topic's subscribers are computed once and cached per publishing thread
//! (keyed by the bus's generation, bumped whenever the set of instances
//! changes), so the hot path takes no lock and matches no pattern. Delivery
//! applies each mailbox's overflow policy. A plugin blocked on a full mailbox
//! never deadlocks the host: when the wait closes a cycle of plugins all
//! blocked on each other, the publisher with the lowest slot in the cycle drops
//! its one event (counted as dropped for the receiver) and the cycle unwinds.

use crate::config::Overflow;
use crate::event::Event;
use crate::instance::Slot;
use crossbeam_channel::{SendTimeoutError, TrySendError};
use plughost_api::topic::{TopicError, validate_topic};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Cached routes per thread; cleared when it grows past this many topics.
const ROUTE_CACHE_LIMIT: usize = 4096;
/// How long a blocked plugin waits before it looks for a wait cycle again.
const CYCLE_CHECK: Duration = Duration::from_millis(10);

static NEXT_BUS_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct Bus {
    id: u64,
    generation: AtomicU64,
    slots: RwLock<Vec<Arc<Slot>>>,
    next_event_id: AtomicU64,
    host_source: Arc<str>,
    closed: AtomicBool,
    /// Process name for Lightbus-style metrics events; `None` when disabled.
    metrics: Option<Arc<str>>,
}

#[derive(Clone)]
struct Route {
    topic: Arc<str>,
    targets: Arc<[Arc<Slot>]>,
}

struct RouteCache {
    bus: u64,
    generation: u64,
    routes: HashMap<Box<str>, Route>,
}

thread_local! {
    static ROUTES: RefCell<RouteCache> = RefCell::new(RouteCache { bus: 0, generation: 0, routes: HashMap::new() });
}

impl Bus {
    /// A bus; `metrics_process` is the process name when `[metrics]` is enabled.
    pub(crate) fn new(metrics_process: Option<String>) -> Bus {
        Bus {
            id: NEXT_BUS_ID.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(1),
            slots: RwLock::new(Vec::new()),
            next_event_id: AtomicU64::new(1),
            host_source: Arc::from("host"),
            closed: AtomicBool::new(false),
            metrics: metrics_process.map(Arc::from),
        }
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

    fn route(&self, topic: &str) -> Result<Route, TopicError> {
        let generation = self.generation.load(Ordering::Acquire);
        ROUTES.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.bus != self.id || cache.generation != generation {
                cache.bus = self.id;
                cache.generation = generation;
                cache.routes.clear();
            }
            if let Some(route) = cache.routes.get(topic) {
                return Ok(route.clone());
            }
            validate_topic(topic)?;
            let targets: Vec<Arc<Slot>> = self
                .slots
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|slot| slot.subscribes_to(topic))
                .cloned()
                .collect();
            let route = Route {
                topic: Arc::from(topic),
                targets: targets.into(),
            };
            if cache.routes.len() >= ROUTE_CACHE_LIMIT {
                cache.routes.clear();
            }
            cache.routes.insert(topic.into(), route.clone());
            Ok(route)
        })
    }

    /// Publish from `from` (a plugin's slot) or from the host (`None`).
    /// Publish from `from` (a plugin's slot) or from the host (`None`).
    pub(crate) fn publish(
        &self,
        from: Option<&Slot>,
        topic: &str,
        payload: Box<[u8]>,
    ) -> Result<u64, TopicError> {
        let source = from.map_or_else(|| self.host_source.clone(), |slot| slot.name.clone());
        self.publish_as(from, source, topic, payload)
    }

    /// Publish as `source`. `waiter` is the instance whose thread publishes,
    /// if any: it is the one that waits on full mailboxes (see module docs).
    fn publish_as(
        &self,
        waiter: Option<&Slot>,
        source: Arc<str>,
        topic: &str,
        payload: Box<[u8]>,
    ) -> Result<u64, TopicError> {
        let route = self.route(topic)?;
        let id = self.next_event_id.fetch_add(1, Ordering::Relaxed);
        let event = Event::new(id, route.topic, source, payload);
        for target in route.targets.iter() {
            self.deliver(waiter, target, event.clone());
        }
        if self.metrics.is_some() {
            self.metrics_event("event_fired", waiter, None, &event, None);
        }
        Ok(id)
    }

    /// Publish many payloads on one topic as the host: the route and the ids
    /// are taken once, and each subscriber gets the events in order. Returns
    /// the first id (the others follow it).
    pub(crate) fn publish_batch(
        &self,
        topic: &str,
        payloads: Vec<Box<[u8]>>,
    ) -> Result<u64, TopicError> {
        let route = self.route(topic)?;
        let first = self
            .next_event_id
            .fetch_add(payloads.len() as u64, Ordering::Relaxed);
        let events: Vec<Event> = payloads
            .into_iter()
            .zip(first..)
            .map(|(payload, id)| {
                Event::new(id, route.topic.clone(), self.host_source.clone(), payload)
            })
            .collect();
        for target in route.targets.iter() {
            for event in &events {
                self.deliver(None, target, event.clone());
            }
        }
        if self.metrics.is_some() {
            for event in &events {
                self.metrics_event("event_fired", None, None, event, None);
            }
        }
        Ok(first)
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
        if let Err(e) = self.publish_as(waiter, self.host_source.clone(), topic, bytes) {
            tracing::error!("cannot publish {topic}: {e}");
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
        let (api_name, event_name) = event
            .topic()
            .rsplit_once('.')
            .unwrap_or(("", event.topic()));
        let kwargs = serde_json::from_slice::<serde_json::Value>(event.payload()).unwrap_or_else(|_| {
            use base64::Engine as _;
            serde_json::json!({ "payload_base64": base64::engine::general_purpose::STANDARD.encode(event.payload()) })
        });
        let mut payload = serde_json::json!({
            "process_name": &**process_name,
            "event_id": event.id(),
            "api_name": api_name,
            "event_name": event_name,
            "kwargs": kwargs,
            "timestamp": crate::event::now_ms() as f64 / 1000.0,
            "source": event.source(),
        });
        if let Some(listener) = listener {
            payload["listener"] = serde_json::Value::from(&*listener.name);
        }
        if let Some(took) = took {
            payload["duration_ms"] = serde_json::Value::from(took.as_secs_f64() * 1000.0);
        }
        self.publish_host_on(waiter, &format!("internal.metrics.{kind}"), payload);
    }

    fn deliver(&self, from: Option<&Slot>, target: &Slot, event: Event) {
        if !target.accepts_events() {
            return;
        }
        let stats = &target.stats.producer;
        stats.offered.fetch_add(1, Ordering::Relaxed);
        let event = match target.tx.try_send(event) {
            Ok(()) => return,
            Err(TrySendError::Full(event)) => event,
            Err(TrySendError::Disconnected(_)) => unreachable!("a slot owns its own receiver"),
        };
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

    fn wait_for_room(&self, from: Option<&Slot>, target: &Slot, mut event: Event) {
        if let Some(me) = from {
            me.waiting_on.store(target.index + 1, Ordering::Release);
        }
        loop {
            match target.tx.send_timeout(event, CYCLE_CHECK) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(back)) => event = back,
                Err(SendTimeoutError::Disconnected(_)) => {
                    unreachable!("a slot owns its own receiver")
                }
            }
            let give_up = if !target.accepts_events() || self.closed.load(Ordering::Acquire) {
                Some("the receiver stopped taking events")
            } else if from.is_some_and(|me| self.breaks_cycle(me, target)) {
                Some("publishers blocked on each other in a cycle (see docs: delivery)")
            } else {
                None
            };
            if let Some(reason) = give_up {
                target
                    .stats
                    .producer
                    .abandoned
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin = %target.name, "dropped event {} on {}: {reason}", event.id(), event.topic());
                break;
            }
        }
        if let Some(me) = from {
            me.waiting_on.store(0, Ordering::Release);
        }
    }

    /// True when `me`, blocked on `target`, closes a cycle of instances each
    /// blocked on the next, and `me` has the lowest slot index in it: that one
    /// publisher gives up, so exactly one event is dropped per cycle.
    fn breaks_cycle(&self, me: &Slot, target: &Slot) -> bool {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        let mut lowest = me.index;
        let mut current = target.index;
        for _ in 0..=slots.len() {
            if current == me.index {
                return lowest == me.index;
            }
            lowest = lowest.min(current);
            match slots[current].waiting_on.load(Ordering::Acquire) {
                0 => return false,
                next => current = next - 1,
            }
        }
        false
    }

    /// Sum of events offered to mailboxes and events finished (handled or
    /// dropped), over every slot. Equal and unchanged across two reads means
    /// no event is queued or being handled anywhere.
    pub(crate) fn balance(&self) -> (u64, u64) {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots.iter().fold((0, 0), |(offered, finished), slot| {
            let (o, f) = slot.stats.balance();
            (offered + o, finished + f)
        })
    }
}
