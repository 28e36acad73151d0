//! Writing frames: each one appended whole to a buffer that its caller
//! writes out; events packed into batch frames by size.

use super::format::*;
use crate::event::EventView;

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
        Frame::Publish {
            topic,
            payload,
            content,
        } => Encoder::begin(out, PUBLISH)
            .short(topic)
            .u8(content.to_abi())
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
            .u8(event.content.to_abi())
            .bytes(event.payload);
    }
    e.out[count_at..count_at + 4].copy_from_slice(&(taken as u32).to_le_bytes());
    e.end();
    taken
}
