//! Lightbus's metrics events (`internal.metrics.event_*`, `[metrics]`): the
//! one builder of their payloads. The bus publishes them as it routes (it
//! knows when an event fires, is received and is processed); what they say
//! is decided here.

use crate::event::{Event, now_ms};
use serde_json::{Value, json};
use std::time::Duration;

/// The payload of a metrics event about `event`, for the process
/// `process_name`: `listener` is the instance handling it (received,
/// processed), `took` how long its handler ran (processed).
pub(crate) fn payload(
    process_name: &str,
    event: &Event,
    listener: Option<&str>,
    took: Option<Duration>,
) -> Value {
    let (api_name, event_name) = event
        .topic()
        .rsplit_once('.')
        .unwrap_or(("", event.topic()));
    let kwargs = serde_json::from_slice::<Value>(event.payload()).unwrap_or_else(|_| {
        use base64::Engine as _;
        json!({ "payload_base64": base64::engine::general_purpose::STANDARD.encode(event.payload()) })
    });
    let mut payload = json!({
        "process_name": process_name,
        "event_id": event.id(),
        "api_name": api_name,
        "event_name": event_name,
        "kwargs": kwargs,
        "timestamp": now_ms() as f64 / 1000.0,
        "source": event.source(),
    });
    if let Some(listener) = listener {
        payload["listener"] = Value::from(listener);
    }
    if let Some(took) = took {
        payload["duration_ms"] = Value::from(took.as_secs_f64() * 1000.0);
    }
    payload
}
