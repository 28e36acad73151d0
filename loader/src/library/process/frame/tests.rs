use super::format::*;
use super::*;
use crate::event::EventView;
use plughost_api::ContentType;
use plughost_api::topic::MAX_TOPIC_BYTES;

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
        content: ContentType::Text,
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
    for content in [ContentType::Bytes, ContentType::Text, ContentType::Json] {
        round_trip(Frame::Publish {
            topic: "t",
            payload: &[0, 255],
            content,
        });
    }
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
        content: ContentType::Json,
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
        EventView {
            content: ContentType::Bytes,
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
    // A content type the format does not know is not read as another.
    let mut publish = Vec::new();
    encode(
        &mut publish,
        &Frame::Publish {
            topic: "t",
            payload: b"1",
            content: ContentType::Json,
        },
    );
    assert!(decode(&publish[4..]).is_ok());
    let at = publish.len() - 1 - 4 - 1;
    assert_eq!(publish[at], 2, "the content type's byte");
    publish[at] = 3;
    assert!(decode(&publish[4..]).is_err(), "content type 3");
    assert!(decode(&[STOP, 0]).is_err(), "trailing bytes");
    assert!(
        decode(&[LOG, 1, 2, 0, 0, 0, 0xff, 0xfe]).is_err(),
        "invalid UTF-8"
    );
}
