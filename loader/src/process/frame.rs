//! The wire format between the host and a plugin's own process: a stream of
//! frames, each `u32` length (little-endian, of what follows) + `u8` kind +
//! body. Strings are length-prefixed UTF-8; events travel in batches packed
//! by size ([`encode_batch`]). Both ends bound every frame by the same
//! [`Limits`], derived from `[host] max_event_bytes`: a frame is never read
//! into memory before its length is checked, and the decoder borrows from
//! the buffer and never panics on any input.

use crate::event::EventView;
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
    8 + 8 + 2 + event.topic.len() + 2 + event.source.len() + 4 + event.payload.len()
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
        ) == (
            other.id,
            other.timestamp_ms,
            other.topic,
            other.source,
            other.payload,
        )
    }
}

const INIT: u8 = 1;
const BATCH: u8 = 2;
const STOP: u8 = 3;
const PROBE: u8 = 4;
const TICK: u8 = 5;
const HTTP: u8 = 6;
const CALL_ANSWER: u8 = 7;
const EXIT: u8 = 8;
const INIT_DONE: u8 = 10;
const PUBLISH: u8 = 11;
const LOG: u8 = 12;
const BATCH_DONE: u8 = 13;
const PANIC: u8 = 14;
const STOP_DONE: u8 = 15;
const PROBE_ANSWER: u8 = 16;
const ROUTES: u8 = 17;
const TICK_DONE: u8 = 18;
const HTTP_DONE: u8 = 19;
const CALL: u8 = 20;
const REFUSED: u8 = 21;

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameError(pub &'static str);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed frame: {}", self.0)
    }
}

/// Appends frames to a buffer; the caller writes the buffer out.
pub(crate) struct Encoder<'b> {
    out: &'b mut Vec<u8>,
    start: usize,
}

impl<'b> Encoder<'b> {
    fn begin(out: &'b mut Vec<u8>, kind: u8) -> Encoder<'b> {
        let start = out.len();
        out.extend_from_slice(&[0, 0, 0, 0, kind]);
        Encoder { out, start }
    }

    fn u8(self, v: u8) -> Self {
        self.out.push(v);
        self
    }

    fn u16(self, v: u16) -> Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u32(self, v: u32) -> Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u64(self, v: u64) -> Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A string or byte string with a u32 length.
    fn bytes(self, v: &[u8]) -> Self {
        let this = self.u32(v.len() as u32);
        this.out.extend_from_slice(v);
        this
    }

    /// A short string with a u16 length: a topic (at most
    /// [`MAX_TOPIC_BYTES`], checked where topics enter) or an instance name
    /// (at most 256 bytes, checked by the config).
    fn short(self, v: &str) -> Self {
        debug_assert!(
            v.len() <= u16::MAX as usize,
            "a short string of {} bytes",
            v.len()
        );
        let v = &v.as_bytes()[..v.len().min(u16::MAX as usize)];
        let this = self.u16(v.len() as u16);
        this.out.extend_from_slice(v);
        this
    }

    fn end(self) {
        let len = (self.out.len() - self.start - 4) as u32;
        self.out[self.start..self.start + 4].copy_from_slice(&len.to_le_bytes());
    }
}

fn outcome<'a>(e: Encoder<'a>, processed: u32, errors: &[(u32, &str)]) -> Encoder<'a> {
    let mut e = e.u32(processed).u32(errors.len() as u32);
    for (index, message) in errors {
        e = e.u32(*index).bytes(message.as_bytes());
    }
    e
}

fn headers<'a>(e: Encoder<'a>, headers: &[(&str, &str)]) -> Encoder<'a> {
    let mut e = e.u32(headers.len() as u32);
    for (name, value) in headers {
        e = e.bytes(name.as_bytes()).bytes(value.as_bytes());
    }
    e
}

fn callback_outcome<'a>(e: Encoder<'a>, outcome: &Outcome<'_>) -> Encoder<'a> {
    match outcome {
        Outcome::Ok => e.u8(0),
        Outcome::Error(message) => e.u8(1).bytes(message.as_bytes()),
        Outcome::Panic(message) => e.u8(2).bytes(message.as_bytes()),
    }
}

fn optional_error<'a>(e: Encoder<'a>, error: Option<&str>) -> Encoder<'a> {
    match error {
        None => e.u8(0),
        Some(message) => e.u8(1).bytes(message.as_bytes()),
    }
}

/// Append `frame` to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, frame: &Frame<'_>) {
    match frame {
        Frame::Init { config_json } => Encoder::begin(out, INIT)
            .bytes(config_json.as_bytes())
            .end(),
        Frame::Batch { events } => {
            encode_batch(out, events.iter().copied(), usize::MAX);
        }
        Frame::Stop => Encoder::begin(out, STOP).end(),
        Frame::Exit => Encoder::begin(out, EXIT).end(),
        Frame::Probe { kind } => Encoder::begin(out, PROBE).u8(*kind).end(),
        Frame::Tick => Encoder::begin(out, TICK).end(),
        Frame::Http { request } => headers(
            Encoder::begin(out, HTTP)
                .bytes(request.method.as_bytes())
                .bytes(request.path.as_bytes())
                .bytes(request.query.as_bytes()),
            &request.headers,
        )
        .bytes(request.body)
        .end(),
        Frame::CallAnswer { ok, text } => Encoder::begin(out, CALL_ANSWER)
            .u8(u8::from(*ok))
            .bytes(text.as_bytes())
            .end(),
        Frame::InitDone { error } => optional_error(Encoder::begin(out, INIT_DONE), *error).end(),
        Frame::Publish { topic, payload } => Encoder::begin(out, PUBLISH)
            .short(topic)
            .bytes(payload)
            .end(),
        Frame::Log { level, message } => Encoder::begin(out, LOG)
            .u8(*level)
            .bytes(message.as_bytes())
            .end(),
        Frame::BatchDone { processed, errors } => {
            outcome(Encoder::begin(out, BATCH_DONE), *processed, errors).end()
        }
        Frame::Panic {
            processed,
            errors,
            message,
        } => outcome(Encoder::begin(out, PANIC), *processed, errors)
            .bytes(message.as_bytes())
            .end(),
        Frame::StopDone { error } => optional_error(Encoder::begin(out, STOP_DONE), *error).end(),
        Frame::ProbeAnswer { json } => Encoder::begin(out, PROBE_ANSWER)
            .bytes(json.as_bytes())
            .end(),
        Frame::Routes { routes } => {
            let mut e = Encoder::begin(out, ROUTES).u32(routes.len() as u32);
            for route in routes {
                e = e.bytes(route.as_bytes());
            }
            e.end()
        }
        Frame::TickDone { outcome } => {
            callback_outcome(Encoder::begin(out, TICK_DONE), outcome).end()
        }
        Frame::HttpDone { response } => {
            let e = Encoder::begin(out, HTTP_DONE);
            match response {
                Ok(None) => e.u8(0).end(),
                Ok(Some(response)) => headers(e.u8(1).u16(response.status), &response.headers)
                    .bytes(response.body)
                    .end(),
                Err(outcome) => callback_outcome(e.u8(2), outcome).end(),
            }
        }
        Frame::Call { cast, request } => Encoder::begin(out, CALL)
            .u8(u8::from(*cast))
            .bytes(request.as_bytes())
            .end(),
        Frame::Refused { reason, message } => Encoder::begin(out, REFUSED)
            .u8(*reason)
            .bytes(message.as_bytes())
            .end(),
    }
}

/// Append a batch frame to `out` with the first of `events` and as many of
/// the next as keep the frame's events within `budget` bytes (see
/// [`event_bytes`]); returns how many it took (at least one, unless there
/// are none). The hot path: one pass, no intermediate Vec.
pub(crate) fn encode_batch<'e>(
    out: &mut Vec<u8>,
    events: impl Iterator<Item = EventView<'e>>,
    budget: usize,
) -> usize {
    let mut e = Encoder::begin(out, BATCH).u32(0);
    let count_at = e.start + 5;
    let (mut taken, mut bytes) = (0usize, 0usize);
    for event in events {
        bytes = bytes.saturating_add(event_bytes(&event));
        if taken > 0 && bytes > budget {
            break;
        }
        taken += 1;
        e = e
            .u64(event.id)
            .u64(event.timestamp_ms)
            .short(event.topic)
            .short(event.source)
            .bytes(event.payload);
    }
    e.out[count_at..count_at + 4].copy_from_slice(&(taken as u32).to_le_bytes());
    e.end();
    taken
}

/// Per-event errors of a batch: (index in the batch, message).
type Errors<'a> = Vec<(u32, &'a str)>;

/// Reads fields off a frame body.
struct Decoder<'a> {
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.rest.len() < n {
            return Err(FrameError("truncated"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<&'a [u8], FrameError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn text(&mut self) -> Result<&'a str, FrameError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| FrameError("invalid UTF-8"))
    }

    fn short(&mut self) -> Result<&'a str, FrameError> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| FrameError("invalid UTF-8"))
    }

    fn optional_error(&mut self) -> Result<Option<&'a str>, FrameError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.text()?)),
            _ => Err(FrameError("bad flag")),
        }
    }

    fn flag(&mut self) -> Result<bool, FrameError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(FrameError("bad flag")),
        }
    }

    fn headers(&mut self) -> Result<Vec<(&'a str, &'a str)>, FrameError> {
        let n = self.u32()? as usize;
        // Each header takes at least 8 bytes: a bound before allocating.
        if n > self.rest.len() / 8 {
            return Err(FrameError("header count larger than the frame"));
        }
        (0..n).map(|_| Ok((self.text()?, self.text()?))).collect()
    }

    fn callback_outcome(&mut self) -> Result<Outcome<'a>, FrameError> {
        match self.u8()? {
            0 => Ok(Outcome::Ok),
            1 => Ok(Outcome::Error(self.text()?)),
            2 => Ok(Outcome::Panic(self.text()?)),
            _ => Err(FrameError("bad outcome")),
        }
    }

    fn outcome(&mut self) -> Result<(u32, Errors<'a>), FrameError> {
        let processed = self.u32()?;
        let n = self.u32()? as usize;
        // Each error takes at least 8 bytes: a bound before allocating.
        if n > self.rest.len() / 8 {
            return Err(FrameError("error count larger than the frame"));
        }
        let mut errors = Vec::with_capacity(n);
        for _ in 0..n {
            errors.push((self.u32()?, self.text()?));
        }
        Ok((processed, errors))
    }
}

/// Decode one frame body: `kind` + fields (without the length prefix).
pub(crate) fn decode(body: &[u8]) -> Result<Frame<'_>, FrameError> {
    let (&kind, rest) = body.split_first().ok_or(FrameError("empty"))?;
    let mut d = Decoder { rest };
    let frame = match kind {
        INIT => Frame::Init {
            config_json: d.text()?,
        },
        BATCH => {
            let n = d.u32()? as usize;
            // Each event takes at least 24 bytes: a bound before allocating.
            if n > d.rest.len() / 24 {
                return Err(FrameError("event count larger than the frame"));
            }
            let mut events = Vec::with_capacity(n);
            for _ in 0..n {
                let (id, timestamp_ms) = (d.u64()?, d.u64()?);
                let (topic, source) = (d.short()?, d.short()?);
                events.push(EventView {
                    id,
                    timestamp_ms,
                    topic,
                    source,
                    payload: d.bytes()?,
                });
            }
            Frame::Batch { events }
        }
        STOP => Frame::Stop,
        EXIT => Frame::Exit,
        PROBE => Frame::Probe { kind: d.u8()? },
        TICK => Frame::Tick,
        HTTP => Frame::Http {
            request: HttpRequestView {
                method: d.text()?,
                path: d.text()?,
                query: d.text()?,
                headers: d.headers()?,
                body: d.bytes()?,
            },
        },
        CALL_ANSWER => Frame::CallAnswer {
            ok: d.flag()?,
            text: d.text()?,
        },
        INIT_DONE => Frame::InitDone {
            error: d.optional_error()?,
        },
        PUBLISH => Frame::Publish {
            topic: d.short()?,
            payload: d.bytes()?,
        },
        LOG => Frame::Log {
            level: d.u8()?,
            message: d.text()?,
        },
        BATCH_DONE => {
            let (processed, errors) = d.outcome()?;
            Frame::BatchDone { processed, errors }
        }
        PANIC => {
            let (processed, errors) = d.outcome()?;
            Frame::Panic {
                processed,
                errors,
                message: d.text()?,
            }
        }
        STOP_DONE => Frame::StopDone {
            error: d.optional_error()?,
        },
        PROBE_ANSWER => Frame::ProbeAnswer { json: d.text()? },
        ROUTES => {
            let n = d.u32()? as usize;
            // Each route takes at least 4 bytes: a bound before allocating.
            if n > d.rest.len() / 4 {
                return Err(FrameError("route count larger than the frame"));
            }
            Frame::Routes {
                routes: (0..n).map(|_| d.text()).collect::<Result<_, _>>()?,
            }
        }
        TICK_DONE => Frame::TickDone {
            outcome: d.callback_outcome()?,
        },
        HTTP_DONE => Frame::HttpDone {
            response: match d.u8()? {
                0 => Ok(None),
                1 => Ok(Some(HttpResponseView {
                    status: d.u16()?,
                    headers: d.headers()?,
                    body: d.bytes()?,
                })),
                2 => Err(d.callback_outcome()?),
                _ => return Err(FrameError("bad flag")),
            },
        },
        CALL => Frame::Call {
            cast: d.flag()?,
            request: d.text()?,
        },
        REFUSED => Frame::Refused {
            reason: d.u8()?,
            message: d.text()?,
        },
        _ => return Err(FrameError("unknown kind")),
    };
    if !d.rest.is_empty() {
        return Err(FrameError("trailing bytes"));
    }
    Ok(frame)
}

/// Why no frame could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The stream failed or ended inside a frame.
    Io(std::io::Error),
    /// The length prefix announced a frame over the limit: refused before
    /// anything is allocated for it.
    TooLarge { len: usize, limit: usize },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::TooLarge { len, limit } => {
                write!(f, "a frame of {len} bytes, over the limit of {limit} bytes")
            }
        }
    }
}

/// Read one frame's body into `buffer` (replacing its contents), refusing a
/// frame longer than `limit` before reading it. `Ok(false)` at a clean end
/// of stream. A buffer a big frame made grow is given back afterwards.
pub(crate) fn read_frame(
    reader: &mut impl std::io::Read,
    buffer: &mut Vec<u8>,
    limit: usize,
) -> Result<bool, ReadError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match reader.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                let cut = "the stream ended inside a frame's length";
                let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, cut);
                return Err(ReadError::Io(eof));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > limit {
        return Err(ReadError::TooLarge { len, limit });
    }
    shrink(buffer, len);
    buffer.clear();
    buffer.resize(len, 0);
    reader.read_exact(buffer).map_err(ReadError::Io)?;
    Ok(true)
}

/// Give back the memory of a buffer grown for a big frame once it holds
/// (or is about to hold) a small one: a process plugin's RSS after one big
/// event is not its RSS for good.
pub(crate) fn shrink(buffer: &mut Vec<u8>, needed: usize) {
    if buffer.capacity() > 4 * BATCH_BYTES && needed <= BATCH_BYTES {
        buffer.clear();
        buffer.shrink_to(BATCH_BYTES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame<'_>) {
        let mut out = Vec::new();
        encode(&mut out, &frame);
        let len = u32::from_le_bytes(out[..4].try_into().unwrap()) as usize;
        assert_eq!(len, out.len() - 4);
        assert_eq!(decode(&out[4..]).unwrap(), frame);
    }

    #[test]
    fn every_frame_round_trips() {
        let event = |id, topic, payload| EventView {
            id,
            timestamp_ms: 7,
            topic,
            source: "host",
            payload,
        };
        round_trip(Frame::Init {
            config_json: "{\"a\":1}",
        });
        round_trip(Frame::Batch {
            events: vec![event(1, "a.b", b"x"), event(2, "c", b"")],
        });
        round_trip(Frame::Batch { events: vec![] });
        round_trip(Frame::Stop);
        round_trip(Frame::Exit);
        round_trip(Frame::Probe { kind: 2 });
        round_trip(Frame::InitDone { error: None });
        round_trip(Frame::InitDone { error: Some("bad") });
        round_trip(Frame::Publish {
            topic: "t",
            payload: &[0, 255],
        });
        round_trip(Frame::Log {
            level: 3,
            message: "hi",
        });
        round_trip(Frame::BatchDone {
            processed: 3,
            errors: vec![(1, "oops")],
        });
        round_trip(Frame::Panic {
            processed: 1,
            errors: vec![],
            message: "boom",
        });
        round_trip(Frame::StopDone { error: Some("x") });
        round_trip(Frame::ProbeAnswer { json: "null" });
        round_trip(Frame::Tick);
        round_trip(Frame::Http {
            request: HttpRequestView {
                method: "POST",
                path: "/a",
                query: "x=1",
                headers: vec![("content-type", "text/plain")],
                body: b"hi",
            },
        });
        round_trip(Frame::CallAnswer {
            ok: true,
            text: "{}",
        });
        round_trip(Frame::Routes {
            routes: vec!["/teapot", "/x/*"],
        });
        round_trip(Frame::TickDone {
            outcome: Outcome::Ok,
        });
        round_trip(Frame::TickDone {
            outcome: Outcome::Panic("boom"),
        });
        round_trip(Frame::HttpDone { response: Ok(None) });
        round_trip(Frame::HttpDone {
            response: Ok(Some(HttpResponseView {
                status: 418,
                headers: vec![("a", "b")],
                body: b"tea",
            })),
        });
        round_trip(Frame::HttpDone {
            response: Err(Outcome::Error("no")),
        });
        round_trip(Frame::Call {
            cast: false,
            request: "{\"cmd\":\"list\"}",
        });
        round_trip(Frame::Refused {
            reason: 1,
            message: "the event is 9 bytes, more than max_event_bytes (8)",
        });
    }

    fn event_of(payload: &[u8]) -> EventView<'_> {
        EventView {
            id: 1,
            timestamp_ms: 2,
            topic: "work.item",
            source: "host",
            payload,
        }
    }

    /// Encode `payloads` as a process instance does: returns the events per frame.
    fn frames_of(payloads: &[Vec<u8>]) -> Vec<usize> {
        let views: Vec<EventView<'_>> = payloads.iter().map(|p| event_of(p)).collect();
        let (mut start, mut frames) = (0, Vec::new());
        while start < views.len() {
            let mut out = Vec::new();
            let taken = encode_batch(&mut out, views[start..].iter().copied(), BATCH_BYTES);
            frames.push(taken);
            start += taken;
        }
        frames
    }

    #[test]
    fn small_events_share_a_frame_and_big_ones_travel_alone() {
        assert_eq!(frames_of(&vec![vec![0u8; 64]; 256]), [256]);
        // One small, three of 30 MiB, five small: the repro.
        let mut payloads = vec![vec![1u8; 10]];
        payloads.extend(std::iter::repeat_n(vec![2u8; 30 << 20], 3));
        payloads.extend(std::iter::repeat_n(vec![3u8; 10], 5));
        assert_eq!(frames_of(&payloads), [1, 1, 1, 1, 5]);
        assert_eq!(frames_of(&vec![vec![0u8; 400 << 10]; 5]), [2, 2, 1]);
    }

    #[test]
    fn the_frame_limit_holds_the_largest_event_the_host_accepts() {
        let limits = |max_event_bytes| Limits { max_event_bytes };
        for max_event_bytes in [1, 1000, 64 << 20] {
            let payload = vec![0u8; max_event_bytes];
            let topic = "t".repeat(MAX_TOPIC_BYTES);
            let source = "s".repeat(256);
            let event = EventView {
                topic: &topic,
                source: &source,
                ..event_of(&payload)
            };
            let mut out = Vec::new();
            encode_batch(&mut out, std::iter::once(event), BATCH_BYTES);
            assert!(out.len() - 4 <= limits(max_event_bytes).max_frame());
        }
        // The largest `max_event_bytes` (1 GiB) still has a u32 length.
        assert!(limits(1 << 30).max_frame() < u32::MAX as usize);
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_before_it_is_read() {
        // The length says 1 GiB; nothing follows: refused without waiting or allocating.
        let stream = (1u32 << 30).to_le_bytes();
        let mut buffer = Vec::new();
        let err = read_frame(&mut stream.as_slice(), &mut buffer, 1 << 20).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a frame of 1073741824 bytes, over the limit of 1048576 bytes"
        );
        assert_eq!(buffer.capacity(), 0);
        // A clean end between frames is the end of the stream, not an error.
        assert!(!read_frame(&mut [].as_slice(), &mut buffer, 10).unwrap());
        // Inside a frame it is an error, inside its length too.
        assert!(matches!(
            read_frame(&mut [5u8, 0].as_slice(), &mut buffer, 10),
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof
        ));
        let cut = [5u8, 0, 0, 0, STOP];
        assert!(matches!(
            read_frame(&mut cut.as_slice(), &mut buffer, 10),
            Err(ReadError::Io(_))
        ));
    }

    #[test]
    fn a_buffer_grown_for_a_big_frame_is_given_back() {
        let mut big = (8u32 << 20).to_le_bytes().to_vec();
        big.resize(4 + (8 << 20), 0);
        big.extend(1u32.to_le_bytes());
        big.push(STOP);
        let mut reader = big.as_slice();
        let mut buffer = Vec::new();
        assert!(read_frame(&mut reader, &mut buffer, 16 << 20).unwrap());
        assert!(buffer.capacity() >= 8 << 20);
        assert!(read_frame(&mut reader, &mut buffer, 16 << 20).unwrap());
        assert_eq!(decode(&buffer), Ok(Frame::Stop));
        assert!(buffer.capacity() <= BATCH_BYTES, "{}", buffer.capacity());
    }

    #[test]
    fn events_are_equal_only_when_every_field_is() {
        let base = event_of(b"x");
        assert_eq!(base, event_of(b"x"));
        for other in [
            EventView { id: 9, ..base },
            EventView {
                timestamp_ms: 9,
                ..base
            },
            EventView {
                topic: "other",
                ..base
            },
            EventView {
                source: "other",
                ..base
            },
            EventView {
                payload: b"y",
                ..base
            },
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn the_frame_limit_is_the_larger_of_the_event_limit_and_32_mib_plus_room_for_its_strings() {
        let overhead = MAX_TOPIC_BYTES + u16::MAX as usize + 1024;
        let limits = |max_event_bytes| Limits { max_event_bytes };
        assert_eq!(limits(1).max_frame(), (32 << 20) + overhead);
        assert_eq!(limits(32 << 20).max_frame(), (32 << 20) + overhead);
        assert_eq!(limits(1 << 30).max_frame(), (1 << 30) + overhead);
        // The largest event of all: the longest topic, source and payload.
        let (topic, source) = ("t".repeat(MAX_TOPIC_BYTES), "s".repeat(u16::MAX as usize));
        let payload = vec![0u8; 32 << 20];
        let event = EventView {
            topic: &topic,
            source: &source,
            ..event_of(&payload)
        };
        let mut out = Vec::new();
        encode_batch(&mut out, std::iter::once(event), BATCH_BYTES);
        assert!(out.len() - 4 <= limits(1).max_frame());
    }

    #[test]
    fn a_count_larger_than_the_frame_is_refused_before_anything_is_allocated() {
        let count = |n: u32| n.to_le_bytes().to_vec();
        // A batch of 1 event in 23 bytes (an event takes at least 24).
        let mut batch = vec![BATCH];
        batch.extend(count(1));
        batch.extend([0u8; 23]);
        assert_eq!(
            decode(&batch),
            Err(FrameError("event count larger than the frame"))
        );
        // 2 routes in 7 bytes (a route takes at least 4).
        let mut routes = vec![ROUTES];
        routes.extend(count(2));
        routes.extend([0u8; 7]);
        assert_eq!(
            decode(&routes),
            Err(FrameError("route count larger than the frame"))
        );
        // 2 errors in 15 bytes (an error takes at least 8).
        let mut done = vec![BATCH_DONE];
        done.extend(count(0));
        done.extend(count(2));
        done.extend([0u8; 15]);
        assert_eq!(
            decode(&done),
            Err(FrameError("error count larger than the frame"))
        );
        // 2 headers in 15 bytes (a header takes at least 8).
        let mut http = vec![HTTP];
        for _ in 0..3 {
            http.extend(count(0));
        }
        http.extend(count(2));
        http.extend([0u8; 15]);
        assert_eq!(
            decode(&http),
            Err(FrameError("header count larger than the frame"))
        );
    }

    #[test]
    fn a_malformed_frame_says_so() {
        assert_eq!(
            decode(&[]).unwrap_err().to_string(),
            "malformed frame: empty"
        );
    }

    #[test]
    fn a_frame_of_exactly_the_limit_is_read() {
        let mut stream = 3u32.to_le_bytes().to_vec();
        stream.extend([STOP, 1, 2]);
        let mut buffer = Vec::new();
        assert!(read_frame(&mut stream.as_slice(), &mut buffer, 3).unwrap());
        assert_eq!(buffer, [STOP, 1, 2]);
    }

    #[test]
    fn a_read_interrupted_by_a_signal_is_retried() {
        /// One byte per read, each after an `Interrupted`.
        struct Interrupted<'a>(&'a [u8], bool);
        impl std::io::Read for Interrupted<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.1 = !self.1;
                if self.1 {
                    return Err(std::io::ErrorKind::Interrupted.into());
                }
                let n = buf.len().min(1).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut stream = 1u32.to_le_bytes().to_vec();
        stream.push(STOP);
        let mut buffer = Vec::new();
        let mut reader = Interrupted(&stream, false);
        assert!(read_frame(&mut reader, &mut buffer, 10).unwrap());
        assert_eq!(decode(&buffer), Ok(Frame::Stop));
        assert!(!read_frame(&mut reader, &mut buffer, 10).unwrap());
        // Any other error ends the read.
        struct Broken;
        impl std::io::Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::ConnectionReset.into())
            }
        }
        assert!(matches!(
            read_frame(&mut Broken, &mut buffer, 10),
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset
        ));
    }

    /// A frame of `len` bytes (a STOP followed by zeros) on a stream.
    fn frame_of(len: usize) -> Vec<u8> {
        let mut frame = (len as u32).to_le_bytes().to_vec();
        frame.push(STOP);
        frame.resize(4 + len, 0);
        frame
    }

    #[test]
    fn a_buffer_is_given_back_only_when_big_and_about_to_hold_a_small_frame() {
        let mut buffer = Vec::new();
        let read = |len: usize, buffer: &mut Vec<u8>| {
            assert!(read_frame(&mut frame_of(len).as_slice(), buffer, usize::MAX).unwrap());
        };
        // Exactly 4 batches' worth: kept (only more than that is given back).
        read(4 * BATCH_BYTES, &mut buffer);
        let at_the_bound = buffer.capacity();
        assert!(at_the_bound >= 4 * BATCH_BYTES);
        read(1, &mut buffer);
        assert_eq!(buffer.capacity(), at_the_bound);
        // Bigger, then another big frame: kept for it.
        read(8 << 20, &mut buffer);
        let big = buffer.capacity();
        read(2 << 20, &mut buffer);
        assert_eq!(buffer.capacity(), big);
        // Then a small one: given back.
        read(1, &mut buffer);
        assert!(buffer.capacity() <= BATCH_BYTES);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[99]).is_err());
        assert!(decode(&[BATCH, 255, 255, 255, 255]).is_err());
        assert!(decode(&[PUBLISH, 5, 0, b'a']).is_err());
        assert!(decode(&[STOP, 0]).is_err(), "trailing bytes");
        assert!(
            decode(&[LOG, 1, 2, 0, 0, 0, 0xff, 0xfe]).is_err(),
            "invalid UTF-8"
        );
    }
}

/// Property tests for the decoder a child's (possibly corrupt) output goes
/// through: no bytes make it panic, every frame decodes back to itself and
/// nothing else does, and a stream cut anywhere is read up to the cut.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// How many kinds of frame [`sample`] makes.
    const KINDS: usize = 26;
    /// How many strings, byte strings and numbers [`sample`] draws from.
    const POOL: usize = 6;

    /// A frame's body (kind and fields) as `encode` writes it.
    fn encoded(frame: &Frame<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, frame);
        out.split_off(4)
    }

    /// Frame number `kind` (every variant, and every shape of its fields),
    /// its contents taken from the pools.
    fn sample<'a>(kind: usize, s: &'a [String], b: &'a [Vec<u8>], n: &[u64]) -> Frame<'a> {
        let event = |i: usize| EventView {
            id: n[i % POOL],
            timestamp_ms: n[(i + 1) % POOL],
            topic: &s[i % POOL],
            source: &s[(i + 1) % POOL],
            payload: &b[i % POOL],
        };
        let headers = |count: u64| -> Vec<(&'a str, &'a str)> {
            (0..count as usize % 4)
                .map(|i| (s[i].as_str(), s[(i + 2) % POOL].as_str()))
                .collect()
        };
        let errors = |count: u64| -> Vec<(u32, &'a str)> {
            (0..count as usize % 4)
                .map(|i| (n[i] as u32, s[i].as_str()))
                .collect()
        };
        let outcome = |which: u64| match which % 3 {
            0 => Outcome::Ok,
            1 => Outcome::Error(&s[1]),
            _ => Outcome::Panic(&s[2]),
        };
        match kind {
            0 => Frame::Init { config_json: &s[0] },
            1 => Frame::Batch {
                events: (0..n[0] as usize % 5).map(event).collect(),
            },
            2 => Frame::Stop,
            3 => Frame::Probe { kind: n[0] as u8 },
            4 => Frame::Tick,
            5 => Frame::Http {
                request: HttpRequestView {
                    method: &s[0],
                    path: &s[1],
                    query: &s[2],
                    headers: headers(n[0]),
                    body: &b[0],
                },
            },
            6 => Frame::CallAnswer {
                ok: n[0].is_multiple_of(2),
                text: &s[0],
            },
            7 => Frame::InitDone { error: None },
            8 => Frame::InitDone { error: Some(&s[0]) },
            9 => Frame::Publish {
                topic: &s[0],
                payload: &b[0],
            },
            10 => Frame::Log {
                level: n[0] as u8,
                message: &s[0],
            },
            11 => Frame::BatchDone {
                processed: n[0] as u32,
                errors: errors(n[1]),
            },
            12 => Frame::Panic {
                processed: n[0] as u32,
                errors: errors(n[1]),
                message: &s[3],
            },
            13 => Frame::StopDone { error: None },
            14 => Frame::StopDone { error: Some(&s[0]) },
            15 => Frame::ProbeAnswer { json: &s[0] },
            16 => Frame::Routes {
                routes: s[..n[0] as usize % 4].iter().map(String::as_str).collect(),
            },
            17 => Frame::TickDone {
                outcome: outcome(n[0]),
            },
            18 => Frame::HttpDone { response: Ok(None) },
            19 => Frame::HttpDone {
                response: Ok(Some(HttpResponseView {
                    status: n[0] as u16,
                    headers: headers(n[1]),
                    body: &b[1],
                })),
            },
            20 => Frame::HttpDone {
                response: Err(outcome(n[0])),
            },
            21 => Frame::Call {
                cast: n[0] % 2 == 1,
                request: &s[0],
            },
            22 => Frame::Refused {
                reason: n[0] as u8,
                message: &s[0],
            },
            23 => Frame::TickDone {
                outcome: Outcome::Ok,
            },
            24 => Frame::Exit,
            _ => Frame::Batch { events: vec![] },
        }
    }

    /// A reader that hands out at most `chunk` bytes per read, as a socket may.
    struct Trickle<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.chunk).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Decoding never panics, and what decodes is the one encoding of
        /// its frame: no two byte strings read as the same frame.
        #[test]
        fn any_bytes_decode_to_a_frame_that_encodes_back_to_them_or_fail(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(frame) = decode(&bytes) {
                prop_assert_eq!(encoded(&frame), bytes);
            }
        }

        #[test]
        fn frames_with_a_valid_kind_and_random_bodies_never_panic(
            kind in prop_oneof![1u8..=8, 10u8..=21],
            body in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let mut bytes = vec![kind];
            bytes.extend(body);
            if let Ok(frame) = decode(&bytes) {
                prop_assert_eq!(encoded(&frame), bytes);
            }
        }

        /// Every kind of frame, with any contents, reads back as itself;
        /// any frame cut short, or with a byte more, is an error; a byte
        /// changed gives an error or another frame that encodes to it.
        #[test]
        fn every_frame_round_trips_and_nothing_else_decodes_as_it(
            kind in 0usize..KINDS,
            strings in proptest::collection::vec("\\PC{0,6}|[a-z.]{0,4}", POOL),
            bytes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), POOL),
            numbers in proptest::collection::vec(any::<u64>(), POOL),
            flip in any::<prop::sample::Index>(),
            to in any::<u8>(),
        ) {
            let frame = sample(kind, &strings, &bytes, &numbers);
            let body = encoded(&frame);
            let mut out = Vec::new();
            encode(&mut out, &frame);
            prop_assert_eq!(u32::from_le_bytes(out[..4].try_into().unwrap()) as usize, body.len());
            prop_assert_eq!(decode(&body), Ok(frame));
            for end in 0..body.len() {
                prop_assert!(decode(&body[..end]).is_err(), "cut at {} of {}", end, body.len());
            }
            let mut longer = body.clone();
            longer.push(to);
            prop_assert_eq!(decode(&longer), Err(FrameError("trailing bytes")));
            let mut changed = body.clone();
            let at = flip.index(changed.len());
            changed[at] = to;
            if let Ok(other) = decode(&changed) {
                prop_assert_eq!(encoded(&other), changed);
            }
        }

        /// A stream of frames cut anywhere: the whole frames before the cut
        /// are read; a cut between frames is the end of the stream, a cut
        /// inside one (its length included) is an error.
        #[test]
        fn a_stream_cut_anywhere_gives_its_whole_frames_then_an_end_or_an_error(
            kinds in proptest::collection::vec(0usize..KINDS, 1..5),
            strings in proptest::collection::vec("[a-zé]{0,6}", POOL),
            cut in any::<prop::sample::Index>(),
            chunk in 1usize..7,
        ) {
            let bytes = vec![vec![1u8, 2, 3]; POOL];
            let numbers: Vec<u64> = (0..POOL as u64).collect();
            let frames: Vec<Frame<'_>> = kinds.iter().map(|&k| sample(k, &strings, &bytes, &numbers)).collect();
            let mut stream = Vec::new();
            let mut ends = vec![0];
            for frame in &frames {
                encode(&mut stream, frame);
                ends.push(stream.len());
            }
            let cut = cut.index(stream.len() + 1);
            let mut reader = Trickle { data: &stream[..cut], chunk };
            let mut buffer = Vec::new();
            let whole = ends.iter().filter(|&&end| end <= cut).count() - 1;
            for frame in &frames[..whole] {
                prop_assert!(read_frame(&mut reader, &mut buffer, 1 << 20).unwrap());
                prop_assert_eq!(&decode(&buffer).unwrap(), frame);
            }
            match read_frame(&mut reader, &mut buffer, 1 << 20) {
                Ok(false) => prop_assert!(ends.contains(&cut), "an end inside a frame at {}: {:?}", cut, ends),
                Err(ReadError::Io(_)) => prop_assert!(!ends.contains(&cut), "an error at a frame's end {}", cut),
                other => prop_assert!(false, "{:?} at {} of {:?}", other, cut, ends),
            }
        }

        #[test]
        fn batches_round_trip(events in proptest::collection::vec(
            (any::<u64>(), any::<u64>(), "[a-z.]{0,20}", "[a-z]{0,8}", proptest::collection::vec(any::<u8>(), 0..64)),
            0..20,
        )) {
            let views: Vec<EventView<'_>> = events
                .iter()
                .map(|(id, ts, topic, source, payload)| EventView { id: *id, timestamp_ms: *ts, topic, source, payload })
                .collect();
            let mut out = Vec::new();
            prop_assert_eq!(encode_batch(&mut out, views.iter().copied(), usize::MAX), views.len());
            // What `event_bytes` counts is what the events take in the frame.
            let counted: usize = views.iter().map(event_bytes).sum();
            prop_assert_eq!(out.len(), 4 + 1 + 4 + counted);
            let Ok(Frame::Batch { events: decoded }) = decode(&out[4..]) else {
                return Err(TestCaseError::fail("a batch decodes as a batch"));
            };
            // Field by field, not only through `EventView`'s `==`.
            let fields = |e: &EventView<'_>| (e.id, e.timestamp_ms, e.topic.to_owned(), e.source.to_owned(), e.payload.to_vec());
            prop_assert_eq!(decoded.iter().map(fields).collect::<Vec<_>>(), views.iter().map(fields).collect::<Vec<_>>());
        }

        /// Packing a run of events into frames by size, as a process
        /// instance does: every event once, in order; no frame over the
        /// budget unless it holds a single event.
        #[test]
        fn batches_split_by_size_cover_every_event_once_in_order(
            sizes in proptest::collection::vec(0usize..3000, 1..60),
            budget in 1usize..8000,
        ) {
            let payloads: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![7u8; n]).collect();
            let views: Vec<EventView<'_>> = payloads
                .iter()
                .enumerate()
                .map(|(i, p)| EventView { id: i as u64, timestamp_ms: 0, topic: "a.b", source: "host", payload: p })
                .collect();
            let (mut start, mut out) = (0, Vec::new());
            while start < views.len() {
                out.clear();
                let taken = encode_batch(&mut out, views[start..].iter().copied(), budget);
                prop_assert!(taken >= 1);
                let run = &views[start..start + taken];
                let bytes: usize = run.iter().map(event_bytes).sum();
                prop_assert!(taken == 1 || bytes <= budget, "{} events, {} bytes", taken, bytes);
                if let Some(next) = views.get(start + taken) {
                    prop_assert!(bytes + event_bytes(next) > budget, "a frame left room for the next event");
                }
                prop_assert_eq!(decode(&out[4..]).unwrap(), Frame::Batch { events: run.to_vec() });
                start += taken;
            }
        }

        #[test]
        fn a_frame_is_read_whole_or_refused_by_its_length(len in 0usize..5000, limit in 0usize..5000) {
            let mut stream = (len as u32).to_le_bytes().to_vec();
            stream.extend(std::iter::repeat_n(1u8, len));
            let mut buffer = Vec::new();
            match read_frame(&mut stream.as_slice(), &mut buffer, limit) {
                Ok(true) => prop_assert!(len <= limit && buffer.len() == len),
                Err(ReadError::TooLarge { len: seen, limit: l }) => {
                    prop_assert!(len > limit && seen == len && l == limit);
                    prop_assert!(buffer.capacity() < len.max(1), "nothing allocated for a refused frame");
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn a_truncated_batch_is_an_error(events in 1usize..5, cut in 1usize..40) {
            let views = vec![EventView { id: 1, timestamp_ms: 2, topic: "a.b", source: "host", payload: b"0123456789" }; events];
            let mut out = Vec::new();
            encode_batch(&mut out, views.iter().copied(), usize::MAX);
            let end = out.len().saturating_sub(cut).max(4);
            prop_assert!(decode(&out[4..end]).is_err());
        }
    }
}
