//! The host's event. An event for one subscriber owns the publisher's payload
//! outright (moved, never copied: no allocation beyond the payload itself);
//! an event for several subscribers is shared, one allocation for all of them,
//! and handing it to one more is a reference-count increment.

use plughost_api::ContentType;
use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};

/// How many bytes of names the host interns before it falls back to
/// reference counting (see [`Name`]).
const INTERN_LIMIT: usize = 1 << 20;

/// A topic or a source, as events carry them. The names the host sees again
/// and again (the topic of each route, each instance's name) are interned:
/// copied once into memory kept for the life of the process, so handing one
/// to a subscriber copies a pointer rather than bumping a reference count
/// that the publisher's and the subscriber's threads would fight over on
/// every event. Interning stops after [`INTERN_LIMIT`] bytes, so a publisher
/// that invents a topic per event cannot grow the host without bound; past
/// it, names are reference-counted.
#[derive(Clone)]
pub(crate) enum Name {
    Interned(&'static str),
    Counted(Arc<str>),
}

impl Name {
    /// `name`, interned while the limit allows.
    pub(crate) fn intern(name: &str) -> Name {
        static INTERNED: LazyLock<Mutex<(HashSet<&'static str>, usize)>> =
            LazyLock::new(Default::default);
        let mut interned = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
        let (names, bytes) = &mut *interned;
        if let Some(name) = names.get(name) {
            return Name::Interned(name);
        }
        if *bytes + name.len() > INTERN_LIMIT {
            return Name::Counted(Arc::from(name));
        }
        *bytes += name.len();
        let name: &'static str = Box::leak(name.into());
        names.insert(name);
        Name::Interned(name)
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl std::ops::Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Name::Interned(name) => name,
            Name::Counted(name) => name,
        }
    }
}

/// One published event.
pub struct Event(Repr);

enum Repr {
    Owned(EventData),
    Shared(Arc<EventData>),
}

struct EventData {
    id: u64,
    timestamp_ms: u64,
    topic: Name,
    source: Name,
    payload: Box<[u8]>,
    content: ContentType,
}

impl Event {
    pub(crate) fn new(
        id: u64,
        timestamp_ms: u64,
        topic: Name,
        source: Name,
        (payload, content): (Box<[u8]>, ContentType),
    ) -> Event {
        Event(Repr::Owned(EventData {
            id,
            timestamp_ms,
            topic,
            source,
            payload,
            content,
        }))
    }

    /// The same event, made cheap to clone (the bus does this before fanning
    /// out to several subscribers).
    pub(crate) fn into_shared(self) -> Event {
        match self.0 {
            Repr::Owned(data) => Event(Repr::Shared(Arc::new(data))),
            shared @ Repr::Shared(_) => Event(shared),
        }
    }

    fn data(&self) -> &EventData {
        match &self.0 {
            Repr::Owned(data) => data,
            Repr::Shared(data) => data,
        }
    }

    /// Host-assigned id, increasing in publication order.
    pub fn id(&self) -> u64 {
        self.data().id
    }

    /// Milliseconds since the Unix epoch when the host accepted it (to the
    /// kernel's clock tick, a few milliseconds).
    pub fn timestamp_ms(&self) -> u64 {
        self.data().timestamp_ms
    }

    /// The topic it was published on.
    pub fn topic(&self) -> &str {
        &self.data().topic
    }

    /// The publishing instance, or `host`.
    pub fn source(&self) -> &str {
        &self.data().source
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.data().payload
    }

    /// What the payload is (`json`, `text`, `bytes`), as it entered the host.
    pub fn content_type(&self) -> ContentType {
        self.data().content
    }

    /// The borrowed fields, as handed to plugins.
    pub(crate) fn view(&self) -> EventView<'_> {
        let data = self.data();
        EventView {
            id: data.id,
            timestamp_ms: data.timestamp_ms,
            topic: &data.topic,
            source: &data.source,
            payload: &data.payload,
            content: data.content,
        }
    }
}

/// A shared event clones with one reference-count increment; an owned one
/// (the bus never clones those on the event path) copies its payload.
impl Clone for Event {
    fn clone(&self) -> Event {
        match &self.0 {
            Repr::Shared(data) => Event(Repr::Shared(data.clone())),
            Repr::Owned(data) => Event::new(
                data.id,
                data.timestamp_ms,
                data.topic.clone(),
                data.source.clone(),
                (data.payload.clone(), data.content),
            ),
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
    pub content: ContentType,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id())
            .field("topic", &self.topic())
            .field("source", &self.source())
            .field("content_type", &self.content_type())
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

/// Remove the whitespace outside strings from valid JSON text.
pub(crate) fn compact_json(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in text.as_bytes() {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            in_string = b == b'"';
            out.push(b);
        }
    }
    out
}

/// A payload as it enters the host: a `json` payload that is valid JSON
/// becomes its compact text (so the same value sent with other spacing is
/// the same event); anything else is left as it is, for the bus to check
/// against its content type, refuse and count.
pub(crate) fn entering(payload: Vec<u8>, content: ContentType) -> Vec<u8> {
    match content {
        ContentType::Json if content.check(&payload).is_ok() => match std::str::from_utf8(&payload)
        {
            Ok(text) => compact_json(text),
            Err(_) => payload,
        },
        _ => payload,
    }
}

/// Milliseconds since the Unix epoch from the kernel's coarse clock: read
/// from the vDSO in a few nanoseconds, where a precise read costs tens, and
/// every event is stamped.
pub(crate) fn now_ms() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000
}

/// Nanoseconds on the kernel's coarse monotonic clock (to the clock tick),
/// never 0: when a handler started, for the watchdog, on every event.
pub(crate) fn coarse_nanos() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: Box<[u8]>) -> Event {
        let payload = (payload, ContentType::Text);
        Event::new(7, 1, Name::intern("a.b"), Name::Interned("host"), payload)
    }

    #[test]
    fn an_event_keeps_the_publishers_payload_buffer() {
        let payload: Box<[u8]> = vec![1, 2, 3].into();
        let buffer = payload.as_ptr();
        let owned = event(payload);
        assert_eq!(owned.payload().as_ptr(), buffer, "moved, not copied");
        let shared = owned.into_shared();
        assert_eq!(shared.payload().as_ptr(), buffer, "sharing copies nothing");
        let clone = shared.clone();
        assert_eq!(
            clone.payload().as_ptr(),
            buffer,
            "subscribers share one payload"
        );
        assert_eq!(
            (clone.id(), clone.topic(), clone.source()),
            (7, "a.b", "host")
        );
    }

    #[test]
    fn cloning_an_owned_event_copies_it_whole() {
        let owned = event(vec![9; 4].into());
        let copy = owned.clone();
        assert_ne!(copy.payload().as_ptr(), owned.payload().as_ptr());
        assert_eq!(copy.payload(), owned.payload());
        assert_eq!((copy.id(), copy.timestamp_ms()), (7, 1));
        assert_eq!(copy.content_type(), ContentType::Text);
    }

    #[test]
    fn the_clocks_move_forward_and_stamp_real_time() {
        let precise = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        // Read between two precise reads, so a preempted thread cannot widen
        // the bound: the coarse clock lags the precise one by at most a tick
        // (1 to 10 ms, CONFIG_HZ), never leads it.
        let (before, wall, after) = (precise(), now_ms(), precise());
        assert!(
            before <= wall + 10 && wall <= after,
            "{before} <= {wall} (+ a tick) <= {after}"
        );
        let mono = coarse_nanos();
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(coarse_nanos() > mono && mono > 0);
    }
}
