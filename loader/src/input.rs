//! `--events`: JSON lines such as `{"topic": "orders.created", "payload": {...}}`
//! or `{"topic": ..., "payload_base64": "..."}`. A JSON payload reaches plugins
//! as its compact text, keys in the order written. A bad line (malformed, not
//! UTF-8, too long, or refused by the host) is reported with its number and
//! skipped, and reading goes on; only an input that cannot be read ends it
//! early, with an error.

use crate::host::Host;
use crate::intake::{Entry, PublishError};
use crate::text::Escaped;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::io::BufRead;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    topic: String,
    // `null` is a payload too (the text `null`), not an absent one.
    #[serde(borrow, default, deserialize_with = "present")]
    payload: Option<&'a RawValue>,
    #[serde(default)]
    payload_base64: Option<String>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// What reading an input stream did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InputSummary {
    /// Events published.
    pub published: u64,
    /// Lines skipped because they were malformed or refused.
    pub skipped: u64,
    /// True when intake closed before the end of input.
    pub interrupted: bool,
}

/// What a line must look like, appended to every parse error so the reader
/// knows how to fix the line, not only what is wrong with it.
const EXPECTED: &str = r#"write each event as one JSON object on its own line, such as {"topic": "orders.created", "payload": {"id": 1}} or {"topic": "raw.bytes", "payload_base64": "AAEC"}"#;

/// Why an input line is skipped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// The line is not a JSON object of the expected shape.
    #[error("{0}; {EXPECTED}")]
    Json(serde_json::Error),
    /// Both `payload` and `payload_base64` were given.
    #[error("give `payload` or `payload_base64`, not both; {EXPECTED}")]
    BothPayloads,
    /// `payload_base64` is not standard base64.
    #[error(
        "invalid payload_base64: {0}; give the payload's bytes in standard base64 (A-Z, a-z, 0-9, +, /, = padding)"
    )]
    Base64(base64::DecodeError),
    /// The line is not UTF-8 text.
    #[error("not valid UTF-8 (invalid byte at offset {offset}); give raw bytes as payload_base64")]
    NotUtf8 {
        /// Where the first invalid byte is.
        offset: usize,
    },
    /// The line is longer than any event the host would take.
    #[error(
        "longer than {limit} bytes, more than an event of max_event_bytes ({max_event_bytes}) needs; not read"
    )]
    TooLong {
        /// The longest line read.
        limit: usize,
        /// `[host] max_event_bytes`.
        max_event_bytes: usize,
    },
    /// The host refused the event (a reserved or invalid topic, a payload
    /// larger than `max_event_bytes`).
    #[error(transparent)]
    Refused(PublishError),
}

/// Parse one input line into (topic, payload bytes).
pub fn parse_line(text: &str) -> Result<(String, Vec<u8>), LineError> {
    let line: Line<'_> = serde_json::from_str(text).map_err(LineError::Json)?;
    let payload = match (line.payload, line.payload_base64) {
        (Some(_), Some(_)) => return Err(LineError::BothPayloads),
        (Some(json), None) => compact_json(json.get()),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(LineError::Base64)?,
        (None, None) => Vec::new(),
    };
    Ok((line.topic, payload))
}

/// Remove the whitespace outside strings from valid JSON text.
fn compact_json(text: &str) -> Vec<u8> {
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

/// The longest input line read for events of at most `max_event_bytes`:
/// room for the payload in base64 (4/3 of it) or as JSON text with some
/// whitespace, plus the rest of the line.
fn line_limit(max_event_bytes: usize) -> usize {
    max_event_bytes.saturating_mul(2).saturating_add(64 * 1024)
}

/// What reading one line gave.
enum Read {
    /// A line (without its newline) is in the buffer.
    Line,
    /// A line longer than the limit was skipped, up to its newline.
    TooLong,
    /// End of input.
    End,
}

/// Read one line of at most `max` bytes into `line`, holding no more than
/// that however long the line is.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> std::io::Result<Read> {
    line.clear();
    let (mut started, mut too_long) = (false, false);
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(match (started, too_long) {
                (false, _) => Read::End,
                (true, false) => Read::Line,
                (true, true) => Read::TooLong,
            });
        }
        started = true;
        let newline = chunk.iter().position(|&b| b == b'\n');
        let take = newline.unwrap_or(chunk.len());
        if !too_long && line.len() + take > max {
            too_long = true;
            line.clear();
        }
        if !too_long {
            line.extend_from_slice(&chunk[..take]);
        }
        reader.consume(newline.map_or(take, |at| at + 1));
        if newline.is_some() {
            return Ok(if too_long { Read::TooLong } else { Read::Line });
        }
    }
}

/// Publish every line of `reader` into `host` as coming in through `entry`
/// (its events carry the entry's source); `name` labels warnings. Returns an
/// error only when the input cannot be read (a bad line is skipped).
pub fn feed(
    host: &Host,
    mut reader: impl BufRead,
    entry: Entry,
    name: &str,
) -> std::io::Result<InputSummary> {
    let mut summary = InputSummary::default();
    let mut buffer = Vec::new();
    for number in 1.. {
        let max_event_bytes = host.config().host.max_event_bytes;
        let limit = line_limit(max_event_bytes);
        let outcome = match read_line(&mut reader, &mut buffer, limit)? {
            Read::End => break,
            Read::TooLong => Err(LineError::TooLong {
                limit,
                max_event_bytes,
            }),
            Read::Line => {
                let bytes = buffer.strip_suffix(b"\r").unwrap_or(&buffer);
                match std::str::from_utf8(bytes) {
                    Ok(text) if text.trim().is_empty() => continue,
                    Ok(text) => parse_line(text).and_then(|(topic, payload)| {
                        host.publish_from(entry, &topic, payload)
                            .map_err(LineError::Refused)
                    }),
                    Err(e) => Err(LineError::NotUtf8 {
                        offset: e.valid_up_to(),
                    }),
                }
            }
        };
        match outcome {
            Ok(_) => summary.published += 1,
            Err(LineError::Refused(PublishError::ShuttingDown)) => {
                summary.interrupted = true;
                break;
            }
            Err(reason) => {
                summary.skipped += 1;
                let reason = reason.to_string();
                tracing::warn!("{}:{number}: skipped: {}", Escaped(name), Escaped(&reason));
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_payloads_become_their_compact_text_in_written_order() {
        let (topic, payload) =
            parse_line(r#"{"topic": "a.b", "payload": { "z": 1, "a": [1, 2], "s": "x y \" }" }}"#)
                .unwrap();
        assert_eq!(topic, "a.b");
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            r#"{"z":1,"a":[1,2],"s":"x y \" }"}"#
        );
    }

    #[test]
    fn a_null_payload_is_the_text_null_and_a_missing_one_is_empty() {
        assert_eq!(
            parse_line(r#"{"topic": "a", "payload": null}"#).unwrap().1,
            b"null"
        );
        assert_eq!(parse_line(r#"{"topic": "a"}"#).unwrap().1, b"");
    }

    #[test]
    fn base64_payloads_are_raw_bytes() {
        let (_, payload) = parse_line(r#"{"topic": "a", "payload_base64": "AAH/"}"#).unwrap();
        assert_eq!(payload, vec![0, 1, 255]);
    }

    #[test]
    fn bad_lines_say_why_and_what_a_line_should_look_like() {
        let error = |line: &str| parse_line(line).unwrap_err().to_string();
        assert_eq!(
            error("oops"),
            format!("expected value at line 1 column 1; {EXPECTED}")
        );
        assert!(error("{").ends_with(EXPECTED));
        assert!(matches!(parse_line("{"), Err(LineError::Json(_))));
        assert!(error(r#"{"payload": 1}"#).contains("topic"));
        assert!(matches!(
            parse_line(r#"{"topic": "a", "payload": 1, "payload_base64": "AA=="}"#),
            Err(LineError::BothPayloads)
        ));
        assert!(error(r#"{"topic": "a", "extra": 1}"#).contains("extra"));
        assert!(matches!(
            parse_line(r#"{"topic": "a", "payload_base64": "!!"}"#),
            Err(LineError::Base64(_))
        ));
        assert!(error(r#"{"topic": "a", "payload_base64": "!!"}"#).contains("base64"));
    }
}

/// Lines are read whole up to a limit; a longer one is skipped to its
/// newline without being held, and the next line is read as usual.
#[cfg(test)]
mod reading {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut reader = std::io::BufReader::with_capacity(4, input);
        let mut line = Vec::new();
        let mut seen = Vec::new();
        loop {
            match read_line(&mut reader, &mut line, max).unwrap() {
                Read::End => return seen,
                Read::TooLong => seen.push("<too long>".to_owned()),
                Read::Line => seen.push(String::from_utf8_lossy(&line).into_owned()),
            }
        }
    }

    #[test]
    fn long_lines_are_skipped_and_the_next_one_is_read() {
        assert_eq!(
            lines(b"ab\nabcdefghij\ncd\n\nabcdefghij", 5),
            ["ab", "<too long>", "cd", "", "<too long>"]
        );
        assert_eq!(lines(b"abcde\nabcdef\nx", 5), ["abcde", "<too long>", "x"]);
        assert_eq!(lines(b"", 5), Vec::<String>::new());
        assert_eq!(lines(b"\xff\xfe\n", 5), ["\u{fffd}\u{fffd}"]);
    }
}

/// Property tests: no input line makes the parser panic, and valid lines
/// keep their topic and payload.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn any_line_is_parsed_or_refused_without_panicking(line in "\\PC{0,120}") {
            let _ = parse_line(&line);
        }

        #[test]
        fn json_payloads_survive_compaction(topic in "[a-z]{1,5}(\\.[a-z]{1,5}){0,3}", payload in "[ -~]{0,30}", n in any::<i64>()) {
            let value = serde_json::json!({"s": payload, "n": n, "list": [n, payload]});
            let line = serde_json::json!({"topic": topic, "payload": value}).to_string();
            let pretty = serde_json::to_string_pretty(&serde_json::json!({"topic": topic, "payload": value})).unwrap();
            for text in [line, pretty.replace('\n', " ")] {
                let (t, bytes) = parse_line(&text).unwrap();
                prop_assert_eq!(&t, &topic);
                let back: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                prop_assert_eq!(&back, &value);
                prop_assert_eq!(bytes, serde_json::to_vec(&value).unwrap());
            }
        }
    }
}
