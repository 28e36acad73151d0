//! Reading frames: one frame's body read from a stream once its length is
//! checked, and decoded into borrowed fields without ever panicking.

use super::format::*;
use crate::event::EventView;
use plughost_api::ContentType;

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

    /// A content type: a number the format knows, nothing else.
    fn content(&mut self) -> Result<ContentType, FrameError> {
        let n = self.u8()?;
        let content = ContentType::from_abi(n);
        match content.to_abi() == n {
            true => Ok(content),
            false => Err(FrameError("unknown content type")),
        }
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
            // Each event takes at least 25 bytes: a bound before allocating.
            if n > d.rest.len() / 25 {
                return Err(FrameError("event count larger than the frame"));
            }
            let mut events = Vec::with_capacity(n);
            for _ in 0..n {
                let (id, timestamp_ms) = (d.u64()?, d.u64()?);
                let (topic, source) = (d.short()?, d.short()?);
                let content = d.content()?;
                events.push(EventView {
                    id,
                    timestamp_ms,
                    topic,
                    source,
                    payload: d.bytes()?,
                    content,
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
            content: d.content()?,
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
