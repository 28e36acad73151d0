//! The read-only view of an event handed to `Plugin::on_event`.

use crate::abi::EventRef;
use serde::de::DeserializeOwned;

/// One event, borrowed for the duration of the call.
#[derive(Clone, Copy)]
pub struct Event<'a> {
    raw: EventRef<'a>,
}

impl<'a> Event<'a> {
    #[doc(hidden)]
    pub fn from_raw(raw: EventRef<'a>) -> Self {
        Event { raw }
    }

    /// Host-assigned id, increasing in publication order.
    pub fn id(&self) -> u64 {
        self.raw.id
    }

    /// The dot-separated topic, such as `orders.created`.
    pub fn topic(&self) -> &'a str {
        self.raw.topic.as_str()
    }

    /// The payload bytes (for JSON input, the compact JSON text).
    pub fn payload(&self) -> &'a [u8] {
        self.raw.payload.as_slice()
    }

    /// Milliseconds since the Unix epoch at which the host accepted the event.
    pub fn timestamp_ms(&self) -> u64 {
        self.raw.timestamp_ms
    }

    /// The instance that published the event, or `host`.
    pub fn source(&self) -> &'a str {
        self.raw.source.as_str()
    }

    /// Decode the payload as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.payload())
    }
}

impl std::fmt::Debug for Event<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id())
            .field("topic", &self.topic())
            .field("source", &self.source())
            .field("timestamp_ms", &self.timestamp_ms())
            .field("payload_len", &self.payload().len())
            .finish()
    }
}
