//! The host's lifecycle events (`plughost.plugin.*`, README "Delivery"):
//! one builder for their payloads (each names the instance and its library,
//! plus the fields of its kind), and the log line and state change that go
//! with each. Published as the host; an instance is never sent the news of
//! its own stop, which it could not take.

use crate::bus::Bus;
use crate::mailbox::{Slot, State};
use crate::text::Escaped;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One lifecycle event about an instance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lifecycle {
    /// Its `init` returned.
    Started,
    /// Its `stop` ran.
    Stopped,
    /// It panicked, crashed, or failed a call it must not fail.
    Failed { reason: String },
    /// It runs again after a restart; its total so far.
    Restarted { restarts: u64 },
    /// It failed once more after `max_restarts` restarts inside the window.
    Flapping { restarts: u64, reason: String },
    /// A handler ran past its `handler_timeout`.
    Stuck {
        running: Duration,
        handler_timeout: Duration,
    },
}

impl Lifecycle {
    /// Its topic.
    pub(crate) fn topic(&self) -> &'static str {
        match self {
            Lifecycle::Started => "plughost.plugin.started",
            Lifecycle::Stopped => "plughost.plugin.stopped",
            Lifecycle::Failed { .. } => "plughost.plugin.failed",
            Lifecycle::Restarted { .. } => "plughost.plugin.restarted",
            Lifecycle::Flapping { .. } => "plughost.plugin.flapping",
            Lifecycle::Stuck { .. } => "plughost.plugin.stuck",
        }
    }

    /// Its payload, about the instance in `slot`.
    pub(crate) fn payload(&self, slot: &Slot) -> serde_json::Value {
        let mut payload = serde_json::json!({"name": &*slot.name, "library": slot.library()});
        let extra = match self {
            Lifecycle::Started | Lifecycle::Stopped => return payload,
            Lifecycle::Failed { reason } => serde_json::json!({"reason": reason}),
            Lifecycle::Restarted { restarts } => serde_json::json!({"restarts": restarts}),
            Lifecycle::Flapping { restarts, reason } => {
                serde_json::json!({"restarts": restarts, "reason": reason})
            }
            Lifecycle::Stuck {
                running,
                handler_timeout,
            } => serde_json::json!({
                "running_ms": running.as_millis() as u64,
                "handler_timeout_ms": handler_timeout.as_millis() as u64,
            }),
        };
        if let (Some(payload), serde_json::Value::Object(extra)) = (payload.as_object_mut(), extra)
        {
            payload.extend(extra);
        }
        payload
    }
}

/// Publish `event` about the instance in `slot`, as the host, from a thread
/// that is not the instance's.
pub(crate) fn publish(bus: &Bus, slot: &Slot, event: Lifecycle) {
    let payload = event.payload(slot);
    match event {
        // Not sent to the instance itself: it could not take it.
        Lifecycle::Stopped => bus.publish_host_except(slot, event.topic(), payload),
        _ => bus.publish_host(event.topic(), payload),
    }
}

/// Publish `event` about the instance in `slot`, as the host, from the
/// instance's own thread (it is the one that waits on full mailboxes).
pub(crate) fn publish_from_instance(bus: &Bus, slot: &Slot, event: Lifecycle) {
    let payload = event.payload(slot);
    bus.publish_host_on(Some(slot), event.topic(), payload);
}

/// The instance failed: log it, record the reason, move it to `next`
/// (`Failed`, or `Restarting` when the policy restarts it: its mailbox then
/// keeps taking events), and tell everyone. On the instance's thread.
pub(crate) fn failed(bus: &Bus, slot: &Slot, reason: String, next: State) {
    tracing::error!(plugin = %slot.name, "plugin failed: {}", Escaped(&reason));
    slot.set_last_error(reason.clone());
    slot.set_state(next);
    publish_from_instance(bus, slot, Lifecycle::Failed { reason });
}

/// The instance started: log it and tell everyone.
pub(crate) fn started(bus: &Bus, slot: &Slot) {
    tracing::info!(plugin = %slot.name, library = %Escaped(&slot.library()), "started");
    publish(bus, slot, Lifecycle::Started);
}

/// The instance stopped cleanly: log it and tell everyone but itself.
pub(crate) fn stopped(bus: &Bus, slot: &Slot) {
    tracing::info!(plugin = %slot.name, "stopped");
    publish(bus, slot, Lifecycle::Stopped);
}

/// The instance runs again after a restart from outside its thread (an
/// operator's, a reload's): count the restart, log it, tell everyone.
pub(crate) fn restarted(bus: &Bus, slot: &Slot) {
    let restarts = slot.restarts.fetch_add(1, Ordering::AcqRel) + 1;
    tracing::info!(plugin = %slot.name, "restarted (restart {restarts})");
    publish(bus, slot, Lifecycle::Restarted { restarts });
}
