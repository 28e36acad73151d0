//! The host's event: shared, immutable, cheap to clone. One allocation holds
//! the header; the payload is the publisher's buffer, shared by every
//! subscriber (a clone is one reference-count increment).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// One published event.
#[derive(Clone)]
pub struct Event(Arc<EventData>);

struct EventData {
    id: u64,
    timestamp_ms: u64,
    topic: Arc<str>,
    source: Arc<str>,
    payload: Box<[u8]>,
}

impl Event {
    pub(crate) fn new(id: u64, topic: Arc<str>, source: Arc<str>, payload: Box<[u8]>) -> Event {
        Event(Arc::new(EventData {
            id,
            timestamp_ms: now_ms(),
            topic,
            source,
            payload,
        }))
    }

    /// Host-assigned id, increasing in publication order.
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// Milliseconds since the Unix epoch when the host accepted it.
    pub fn timestamp_ms(&self) -> u64 {
        self.0.timestamp_ms
    }

    /// The topic it was published on.
    pub fn topic(&self) -> &str {
        &self.0.topic
    }

    /// The publishing instance, or `host`.
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.0.payload
    }
}

impl Event {
    /// The borrowed fields, as handed to plugins.
    pub(crate) fn view(&self) -> EventView<'_> {
        EventView {
            id: self.id(),
            timestamp_ms: self.timestamp_ms(),
            topic: self.topic(),
            source: self.source(),
            payload: self.payload(),
        }
    }
}

/// An event's fields, borrowed: what a plugin call needs. Decoded straight
/// from a frame in a plugin's own process, without copies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventView<'a> {
    pub id: u64,
    pub timestamp_ms: u64,
    pub topic: &'a str,
    pub source: &'a str,
    pub payload: &'a [u8],
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id())
            .field("topic", &self.topic())
            .field("source", &self.source())
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
