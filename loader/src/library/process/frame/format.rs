//! What a frame is: its kinds and fields, and the limits both ends hold
//! every frame to.

use crate::event::EventView;
use plughost_api::ContentType;
use plughost_api::topic::MAX_TOPIC_BYTES;

/// A batch frame holds events up to about this many bytes; one larger
/// event travels in a frame of its own. Small events keep their batches of
/// up to 256 (an instance's run); big ones never make a frame of several.
pub(crate) const BATCH_BYTES: usize = 1 << 20;

/// What a frame may hold besides one event's payload: its topic, its source
/// (an instance name, a 16-bit length) and the fixed fields, with room to spare.
const EVENT_OVERHEAD: usize = MAX_TOPIC_BYTES + u16::MAX as usize + 1024;

/// The smallest content limit a frame has, whatever `max_event_bytes` says:
/// room for the frames that carry no event (a config, the per-event error
/// messages of a batch, at most 256 x [`crate::text::MAX_MESSAGE_BYTES`]).
const CONTENT_FLOOR: usize = 32 << 20;

/// The limits both ends of a plugin's socket agree on. The host hands
/// `max_event_bytes` to the child on its command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// `[host] max_event_bytes`: the largest payload of an event, a publish,
    /// an HTTP answer or a host command.
    pub max_event_bytes: usize,
}

impl Limits {
    /// The largest frame either end writes or reads (length prefix excluded).
    pub(crate) fn max_frame(&self) -> usize {
        self.max_event_bytes.max(CONTENT_FLOOR) + EVENT_OVERHEAD
    }
}

/// Bytes `event` takes in a batch frame.
pub(crate) fn event_bytes(event: &EventView<'_>) -> usize {
    8 + 8 + 2 + event.topic.len() + 2 + event.source.len() + 1 + 4 + event.payload.len()
}

/// One frame, borrowing its strings and payloads from the read buffer.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame<'a> {
    // Host to child.
    Init {
        config_json: &'a str,
    },
    Batch {
        events: Vec<EventView<'a>>,
    },
    /// Run the plugin's `stop` (answered by `StopDone`), and go on serving
    /// batches: at the host's shutdown, other instances' stops may publish
    /// to it afterwards.
    Stop,
    /// Drop the instance (a C plugin's `destroy` runs) and exit, unanswered;
    /// what the drop logs or publishes still comes first. The socket
    /// closing means the same.
    Exit,
    Probe {
        kind: u8,
    },
    /// Background work: call the plugin's `tick`.
    Tick,
    /// A request to one of the plugin's routes.
    Http {
        request: HttpRequestView<'a>,
    },
    /// The host's answer to the child's `Call`.
    CallAnswer {
        ok: bool,
        text: &'a str,
    },
    // Child to host.
    InitDone {
        error: Option<&'a str>,
    },
    Publish {
        topic: &'a str,
        payload: &'a [u8],
        content: ContentType,
    },
    Log {
        level: u8,
        message: &'a str,
    },
    BatchDone {
        processed: u32,
        errors: Vec<(u32, &'a str)>,
    },
    Panic {
        processed: u32,
        errors: Vec<(u32, &'a str)>,
        message: &'a str,
    },
    StopDone {
        error: Option<&'a str>,
    },
    ProbeAnswer {
        json: &'a str,
    },
    /// The routes the instance serves, sent before `InitDone`.
    Routes {
        routes: Vec<&'a str>,
    },
    /// How a tick went.
    TickDone {
        outcome: Outcome<'a>,
    },
    /// How an HTTP request went: `None` answers 404.
    HttpDone {
        response: Result<Option<HttpResponseView<'a>>, Outcome<'a>>,
    },
    /// A host command from the plugin (`call`, or fire-and-forget `cast`).
    Call {
        cast: bool,
        request: &'a str,
    },
    /// A publish the child refused at the plugin's call, for the host to
    /// count (`reason`) and log (`message`); the payload stays behind.
    Refused {
        reason: u8,
        message: &'a str,
    },
}

/// How a callback without a value of its own ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome<'a> {
    Ok,
    /// It returned an error; the instance goes on.
    Error(&'a str),
    /// It panicked; the child exits after saying so.
    Panic(&'a str),
}

/// An HTTP request, borrowed from a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpRequestView<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

/// An HTTP response, borrowed from a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpResponseView<'a> {
    pub status: u16,
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

impl PartialEq for EventView<'_> {
    fn eq(&self, other: &Self) -> bool {
        (
            self.id,
            self.timestamp_ms,
            self.topic,
            self.source,
            self.payload,
            self.content,
        ) == (
            other.id,
            other.timestamp_ms,
            other.topic,
            other.source,
            other.payload,
            other.content,
        )
    }
}

pub(super) const INIT: u8 = 1;
pub(super) const BATCH: u8 = 2;
pub(super) const STOP: u8 = 3;
pub(super) const PROBE: u8 = 4;
pub(super) const TICK: u8 = 5;
pub(super) const HTTP: u8 = 6;
pub(super) const CALL_ANSWER: u8 = 7;
pub(super) const EXIT: u8 = 8;
pub(super) const INIT_DONE: u8 = 10;
pub(super) const PUBLISH: u8 = 11;
pub(super) const LOG: u8 = 12;
pub(super) const BATCH_DONE: u8 = 13;
pub(super) const PANIC: u8 = 14;
pub(super) const STOP_DONE: u8 = 15;
pub(super) const PROBE_ANSWER: u8 = 16;
pub(super) const ROUTES: u8 = 17;
pub(super) const TICK_DONE: u8 = 18;
pub(super) const HTTP_DONE: u8 = 19;
pub(super) const CALL: u8 = 20;
pub(super) const REFUSED: u8 = 21;

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameError(pub &'static str);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed frame: {}", self.0)
    }
}
