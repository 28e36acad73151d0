use super::format::*;
use super::*;
use crate::event::EventView;
use plughost_api::ContentType;
use proptest::prelude::*;

/// The content type numbered `n` modulo the three there are.
fn content(n: u64) -> ContentType {
    ContentType::from_abi((n % 3) as u8)
}

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
        content: content(n[(i + 2) % POOL]),
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
            content: content(n[1]),
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
        (any::<u64>(), any::<u64>(), "[a-z.]{0,20}", "[a-z]{0,8}", proptest::collection::vec(any::<u8>(), 0..64), 0u64..3),
        0..20,
    )) {
        let views: Vec<EventView<'_>> = events
            .iter()
            .map(|(id, ts, topic, source, payload, n)| EventView { id: *id, timestamp_ms: *ts, topic, source, payload, content: content(*n) })
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
            .map(|(i, p)| EventView { id: i as u64, timestamp_ms: 0, topic: "a.b", source: "host", payload: p, content: ContentType::Bytes })
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
        let views = vec![EventView { id: 1, timestamp_ms: 2, topic: "a.b", source: "host", payload: b"0123456789", content: ContentType::Json }; events];
        let mut out = Vec::new();
        encode_batch(&mut out, views.iter().copied(), usize::MAX);
        let end = out.len().saturating_sub(cut).max(4);
        prop_assert!(decode(&out[4..end]).is_err());
    }
}
