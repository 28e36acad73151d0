//! The wire format between the host and a plugin's own process: a stream of
//! frames, each `u32` length (little-endian, of what follows) + `u8` kind +
//! body. Strings are length-prefixed UTF-8; events travel in batches. The
//! decoder borrows from the buffer and never panics on any input.

use crate::event::EventView;

/// Frames larger than this are refused (a corrupt length, not a real batch).
pub(crate) const MAX_FRAME: usize = 64 << 20;

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
    Stop,
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

    /// A short string with a u16 length (topics, names), cut at 64 KiB.
    fn short(self, v: &str) -> Self {
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
        e = e.short(name).bytes(value.as_bytes());
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
        Frame::Batch { events } => encode_batch(out, events.iter().copied()),
        Frame::Stop => Encoder::begin(out, STOP).end(),
        Frame::Probe { kind } => Encoder::begin(out, PROBE).u8(*kind).end(),
        Frame::Tick => Encoder::begin(out, TICK).end(),
        Frame::Http { request } => headers(
            Encoder::begin(out, HTTP)
                .short(request.method)
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
    }
}

/// Append a batch frame of `events` to `out` (the hot path: no intermediate Vec).
pub(crate) fn encode_batch<'e>(
    out: &mut Vec<u8>,
    events: impl ExactSizeIterator<Item = EventView<'e>>,
) {
    let mut e = Encoder::begin(out, BATCH).u32(events.len() as u32);
    for event in events {
        e = e
            .u64(event.id)
            .u64(event.timestamp_ms)
            .short(event.topic)
            .short(event.source)
            .bytes(event.payload);
    }
    e.end();
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
        // Each header takes at least 6 bytes: a bound before allocating.
        if n > self.rest.len() / 6 {
            return Err(FrameError("header count larger than the frame"));
        }
        (0..n).map(|_| Ok((self.short()?, self.text()?))).collect()
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
        PROBE => Frame::Probe { kind: d.u8()? },
        TICK => Frame::Tick,
        HTTP => Frame::Http {
            request: HttpRequestView {
                method: d.short()?,
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
        _ => return Err(FrameError("unknown kind")),
    };
    if !d.rest.is_empty() {
        return Err(FrameError("trailing bytes"));
    }
    Ok(frame)
}

/// Read one frame's body into `buffer` (replacing its contents). `Ok(false)` at a clean end of stream.
pub(crate) fn read_frame(
    reader: &mut impl std::io::Read,
    buffer: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    buffer.clear();
    buffer.resize(len, 0);
    reader.read_exact(buffer)?;
    Ok(true)
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
/// through: no bytes make it panic, and every encoded batch decodes back.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn frames_with_a_valid_kind_and_random_bodies_never_panic(
            kind in prop_oneof![1u8..=7, 10u8..=20],
            body in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let mut bytes = vec![kind];
            bytes.extend(body);
            let _ = decode(&bytes);
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
            encode_batch(&mut out, views.iter().copied());
            prop_assert_eq!(decode(&out[4..]).unwrap(), Frame::Batch { events: views });
        }

        #[test]
        fn a_truncated_batch_is_an_error(events in 1usize..5, cut in 1usize..40) {
            let views = vec![EventView { id: 1, timestamp_ms: 2, topic: "a.b", source: "host", payload: b"0123456789" }; events];
            let mut out = Vec::new();
            encode_batch(&mut out, views.iter().copied());
            let end = out.len().saturating_sub(cut).max(4);
            prop_assert!(decode(&out[4..end]).is_err());
        }
    }
}
