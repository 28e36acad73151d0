//! The read-only view of an event handed to `Plugin::on_event`.

use crate::ContentType;
use crate::abi::EventRef;
use serde::de::{DeserializeOwned, IntoDeserializer};

/// One event, borrowed for the duration of the call.
#[derive(Clone, Copy)]
pub struct Event<'a> {
    raw: EventRef<'a>,
    content: ContentType,
}

impl<'a> Event<'a> {
    /// An event whose content type is unknown: `bytes`.
    #[doc(hidden)]
    pub fn from_raw(raw: EventRef<'a>) -> Self {
        Event::from_raw_typed(raw, ContentType::Bytes)
    }

    #[doc(hidden)]
    pub fn from_raw_typed(raw: EventRef<'a>, content: ContentType) -> Self {
        Event { raw, content }
    }

    /// Host-assigned id, increasing in publication order.
    pub fn id(&self) -> u64 {
        self.raw.id
    }

    /// The dot-separated topic, such as `orders.created`.
    pub fn topic(&self) -> &'a str {
        self.raw.topic.as_str()
    }

    /// What the payload is: `json`, `text` or `bytes`, as it was set where
    /// the event entered the host (see the README's table of content types).
    pub fn content_type(&self) -> ContentType {
        self.content
    }

    /// The payload bytes, whatever its content type (for `json`, the JSON
    /// text; for `text`, the UTF-8 text).
    pub fn bytes(&self) -> &'a [u8] {
        self.raw.payload.as_slice()
    }

    /// The payload bytes, as [`Event::bytes`].
    pub fn payload(&self) -> &'a [u8] {
        self.bytes()
    }

    /// The payload as text: a `text` payload, or a `json` payload's JSON
    /// text. `None` for `bytes` (whatever the bytes are).
    pub fn text(&self) -> Option<&'a str> {
        match self.content {
            ContentType::Text | ContentType::Json => std::str::from_utf8(self.bytes()).ok(),
            _ => None,
        }
    }

    /// Milliseconds since the Unix epoch at which the host accepted the event.
    pub fn timestamp_ms(&self) -> u64 {
        self.raw.timestamp_ms
    }

    /// The instance that published the event, or `host`.
    pub fn source(&self) -> &'a str {
        self.raw.source.as_str()
    }

    /// The payload as `T`: a `json` payload decoded; a `text` payload as the
    /// JSON string it would be (so `json::<String>()` is the text, and a
    /// text that looks like JSON stays a string); `bytes` parsed as JSON
    /// text, as far as they are.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match (self.content, self.text()) {
            (ContentType::Text, Some(text)) => T::deserialize(
                IntoDeserializer::<serde_json::Error>::into_deserializer(text),
            ),
            _ => serde_json::from_slice(self.bytes()),
        }
    }
}

impl std::fmt::Debug for Event<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id())
            .field("topic", &self.topic())
            .field("source", &self.source())
            .field("content_type", &self.content)
            .field("timestamp_ms", &self.timestamp_ms())
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::{RSlice, RStr};

    fn event(payload: &'static [u8], content: ContentType) -> Event<'static> {
        let raw = EventRef {
            id: 1,
            timestamp_ms: 2,
            topic: RStr::from_str("a.b"),
            payload: RSlice::from_slice(payload),
            source: RStr::from_str("ctl"),
        };
        Event::from_raw_typed(raw, content)
    }

    #[test]
    fn a_text_payload_is_a_json_string_and_json_is_decoded() {
        let text = event(b"{\"id\": 1}", ContentType::Text);
        assert_eq!(text.text(), Some("{\"id\": 1}"));
        assert_eq!(text.json::<String>().unwrap(), "{\"id\": 1}");
        assert_eq!(
            text.json::<serde_json::Value>().unwrap(),
            serde_json::json!("{\"id\": 1}")
        );
        let json = event(b"{\"id\":1}", ContentType::Json);
        assert_eq!(json.text(), Some("{\"id\":1}"));
        assert_eq!(
            json.json::<serde_json::Value>().unwrap(),
            serde_json::json!({"id": 1})
        );
        let bytes = event(b"\"hi\"", ContentType::Bytes);
        assert_eq!(bytes.text(), None);
        assert_eq!(bytes.json::<String>().unwrap(), "hi");
        assert_eq!(bytes.bytes(), b"\"hi\"");
        assert!(event(b"\xff", ContentType::Bytes).json::<String>().is_err());
    }
}
