//! `--events`: JSON lines such as `{"topic": "orders.created", "payload": {...}}`
//! (content type `json`), `{"topic": ..., "payload_text": "..."}` (`text`) or
//! `{"topic": ..., "payload_base64": "..."}` (`bytes`): exactly one of the
//! three. A JSON payload reaches plugins as its compact text, keys in the
//! order written. The fields a `logger` line adds (`id`, `source`,
//! `timestamp`) are read and ignored, so a logger's file is valid input. A
//! bad line (malformed, not UTF-8, too long, or refused by the host) is
//! reported with its number and skipped, and reading goes on; only an input
//! that cannot be read ends it early, with an error.

use crate::event::compact_json;
use crate::host::Host;
use crate::intake::{Entry, PublishError};
use crate::text::Escaped;
use base64::Engine as _;
use plughost_api::ContentType;
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
    payload_text: Option<String>,
    #[serde(default)]
    payload_base64: Option<String>,
    // What a logger line carries besides: the host assigns its own.
    #[serde(default, rename = "id")]
    _id: serde::de::IgnoredAny,
    #[serde(default, rename = "source")]
    _source: serde::de::IgnoredAny,
    #[serde(default, rename = "timestamp")]
    _timestamp: serde::de::IgnoredAny,
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
const EXPECTED: &str = r#"write each event as one JSON object on its own line, such as {"topic": "orders.created", "payload": {"id": 1}}, {"topic": "note", "payload_text": "hello"} or {"topic": "raw.bytes", "payload_base64": "AAEC"}"#;

/// Why an input line is skipped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// The line is not a JSON object of the expected shape.
    #[error("{0}; {EXPECTED}")]
    Json(serde_json::Error),
    /// More than one of `payload`, `payload_text` and `payload_base64`, or
    /// none of them.
    #[error("give exactly one of `payload`, `payload_text` and `payload_base64`; {EXPECTED}")]
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

/// Parse one input line into (topic, payload bytes, content type).
pub fn parse_line(text: &str) -> Result<(String, Vec<u8>, ContentType), LineError> {
    // serde reads a struct from an array too (`["a.b", 1]`): not a line.
    if text.trim_start().starts_with('[') {
        let unexpected = serde::de::Unexpected::Seq;
        let error = serde::de::Error::invalid_type(unexpected, &"a JSON object");
        return Err(LineError::Json(error));
    }
    let line: Line<'_> = serde_json::from_str(text).map_err(LineError::Json)?;
    let (payload, content) = match (line.payload, line.payload_text, line.payload_base64) {
        (Some(json), None, None) => (compact_json(json.get()), ContentType::Json),
        (None, Some(text), None) => (text.into_bytes(), ContentType::Text),
        (None, None, Some(b64)) => (
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(LineError::Base64)?,
            ContentType::Bytes,
        ),
        _ => return Err(LineError::BothPayloads),
    };
    Ok((line.topic, payload, content))
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
                    Ok(text) => parse_line(text).and_then(|(topic, payload, content)| {
                        host.publish_typed(entry, &topic, payload, content)
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
        let (topic, payload, content) =
            parse_line(r#"{"topic": "a.b", "payload": { "z": 1, "a": [1, 2], "s": "x y \" }" }}"#)
                .unwrap();
        assert_eq!((topic.as_str(), content), ("a.b", ContentType::Json));
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            r#"{"z":1,"a":[1,2],"s":"x y \" }"}"#
        );
    }

    #[test]
    fn a_null_payload_is_the_json_null_and_a_missing_one_is_refused() {
        assert_eq!(
            parse_line(r#"{"topic": "a", "payload": null}"#).unwrap(),
            ("a".into(), b"null".to_vec(), ContentType::Json)
        );
        assert!(matches!(
            parse_line(r#"{"topic": "a"}"#),
            Err(LineError::BothPayloads)
        ));
    }

    #[test]
    fn base64_payloads_are_raw_bytes_and_payload_text_is_text() {
        let (_, payload, content) =
            parse_line(r#"{"topic": "a", "payload_base64": "AAH/"}"#).unwrap();
        assert_eq!((payload, content), (vec![0, 1, 255], ContentType::Bytes));
        // Text that looks like JSON stays the text as written.
        let (_, payload, content) =
            parse_line(r#"{"topic": "a", "payload_text": " {\"id\": 1} é"}"#).unwrap();
        assert_eq!(
            (payload, content),
            (" {\"id\": 1} é".as_bytes().to_vec(), ContentType::Text)
        );
        for two in [
            r#"{"topic": "a", "payload_text": "x", "payload": 1}"#,
            r#"{"topic": "a", "payload_text": "x", "payload_base64": ""}"#,
        ] {
            assert!(
                matches!(parse_line(two), Err(LineError::BothPayloads)),
                "{two}"
            );
        }
    }

    #[test]
    fn a_logger_line_is_an_input_line_whose_extra_fields_are_ignored() {
        let line = r#"{"id":7,"topic":"a.b","source":"ctl","timestamp":1700000000000,"payload_text":"hi"}"#;
        assert_eq!(
            parse_line(line).unwrap(),
            ("a.b".into(), b"hi".to_vec(), ContentType::Text)
        );
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
        // An array is not an object, even one serde could read as the fields.
        assert_eq!(
            error(r#" ["a.b", {"id": 1}]"#),
            format!("invalid type: sequence, expected a JSON object; {EXPECTED}")
        );
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
    use crate::config::limits;

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

    /// Hands out `data` at most `chunk` bytes at a time, failing with
    /// `Interrupted` before each chunk (a signal), and with `error` at the end.
    struct Flaky<'a> {
        data: &'a [u8],
        chunk: usize,
        interrupt: bool,
        error: Option<std::io::ErrorKind>,
    }

    impl std::io::Read for Flaky<'_> {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            unreachable!("read through BufRead")
        }
    }

    impl BufRead for Flaky<'_> {
        fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            if self.data.is_empty()
                && let Some(kind) = self.error
            {
                return Err(kind.into());
            }
            Ok(&self.data[..self.chunk.min(self.data.len())])
        }

        fn consume(&mut self, n: usize) {
            self.data = &self.data[n..];
        }
    }

    #[test]
    fn a_read_interrupted_by_a_signal_is_retried_and_other_errors_end_it() {
        let mut line = Vec::new();
        let mut reader = Flaky {
            data: b"ab
cd",
            chunk: 2,
            interrupt: false,
            error: Some(std::io::ErrorKind::BrokenPipe),
        };
        assert!(matches!(
            read_line(&mut reader, &mut line, 10),
            Ok(Read::Line)
        ));
        assert_eq!(line, b"ab");
        let err = read_line(&mut reader, &mut line, 10)
            .err()
            .expect("the pipe broke");
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn a_line_has_room_for_the_largest_event_in_base64_or_spaced_json() {
        assert_eq!(line_limit(1000), 2000 + 64 * 1024);
        assert_eq!(line_limit(usize::MAX), usize::MAX);
        let most = limits::MAX_EVENT_BYTES.max as usize;
        assert!(line_limit(most) >= most.div_ceil(3) * 4 + 64 * 1024);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// Lines of any length, read through buffers of any size: each is
        /// read whole or reported too long, as a plain split says.
        #[test]
        fn lines_are_read_as_a_split_at_newlines_says(
            lines in proptest::collection::vec("[a-z]{0,12}", 0..8),
            end in proptest::bool::ANY,
            max in 0usize..10,
            chunk in 1usize..6,
        ) {
            let mut input = lines.join("\n");
            if end && !lines.is_empty() {
                input.push('\n');
            }
            let mut expected: Vec<String> = input.split('\n').map(|l| match l.len() > max {
                true => "<too long>".to_owned(),
                false => l.to_owned(),
            }).collect();
            // The last piece is a line only when something follows the last newline.
            if input.is_empty() || input.ends_with('\n') {
                expected.pop();
            }
            let mut reader = Flaky { data: input.as_bytes(), chunk, interrupt: false, error: None };
            let (mut line, mut seen) = (Vec::new(), Vec::new());
            loop {
                match read_line(&mut reader, &mut line, max).unwrap() {
                    Read::End => break,
                    Read::TooLong => seen.push("<too long>".to_owned()),
                    Read::Line => seen.push(String::from_utf8(line.clone()).unwrap()),
                }
            }
            proptest::prop_assert_eq!(seen, expected);
        }
    }

    /// Fed to a host with no instances: every line is published or
    /// skipped, blank lines are neither.
    #[test]
    fn feeding_counts_what_it_published_and_what_it_skipped() {
        let config = crate::config::Config::parse(
            std::path::Path::new("/p.toml"),
            "[host]\nmax_event_bytes = 4\n",
        )
        .unwrap();
        let host = Host::start(config).unwrap();
        let input =
            b"\n  \r\n{\"topic\": \"a\", \"payload\": 1}\noops\n{\"topic\": \"plughost.x\", \"payload_text\": \"\"}\n\
                     {\"topic\": \"a\", \"payload\": 12345}\n\xff\n{\"topic\": \"b\", \"payload_base64\": \"\"}";
        let summary = feed(&host, &input[..], Entry::Stdin, "-").unwrap();
        assert_eq!(
            summary,
            InputSummary {
                published: 2,
                skipped: 4,
                interrupted: false
            }
        );
        host.shutdown();
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

/// Property tests: no input line makes the parser panic, and what
/// `parse_line` returns is exactly what the line says: generated JSON
/// values (nested, non-ASCII, escapes written many ways, numbers at the
/// edges) arrive as their compact text, written whitespace removed and
/// nothing else changed; base64 payloads as their bytes; the topic as the
/// string it is.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// A JSON value as written: strings remember how each character is
    /// written, numbers their text.
    #[derive(Debug, Clone)]
    enum Json {
        Null,
        Bool(bool),
        Number(String),
        Text(Written),
        Array(Vec<Json>),
        Object(Vec<(Written, Json)>),
    }

    /// A string, and for each of its characters whether it is written
    /// escaped (`\uXXXX`, or `\n`-style where JSON has one).
    #[derive(Debug, Clone)]
    struct Written {
        text: String,
        escapes: Vec<bool>,
    }

    impl Written {
        fn write(&self, out: &mut String) {
            out.push('"');
            for (c, &escape) in self.text.chars().zip(self.escapes.iter().cycle()) {
                let short = match c {
                    '"' => Some("\\\""),
                    '\\' => Some("\\\\"),
                    '\n' => Some("\\n"),
                    '\t' => Some("\\t"),
                    '\r' => Some("\\r"),
                    '\u{8}' => Some("\\b"),
                    '\u{c}' => Some("\\f"),
                    '/' if escape => Some("\\/"),
                    _ => None,
                };
                match short {
                    Some(s) if escape || c != '/' => out.push_str(s),
                    _ if escape || (c as u32) < 0x20 => {
                        let mut units = [0u16; 2];
                        for unit in c.encode_utf16(&mut units) {
                            out.push_str(&format!("\\u{unit:04x}"));
                        }
                    }
                    _ => out.push(c),
                }
            }
            out.push('"');
        }
    }

    impl Json {
        /// The text, with `gap` between tokens (JSON whitespace or nothing).
        fn write(&self, out: &mut String, gap: &mut impl FnMut() -> &'static str) {
            match self {
                Json::Null => out.push_str("null"),
                Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Json::Number(n) => out.push_str(n),
                Json::Text(s) => s.write(out),
                Json::Array(items) => {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        out.push_str(gap());
                        if i > 0 {
                            out.push(',');
                            out.push_str(gap());
                        }
                        item.write(out, gap);
                    }
                    out.push_str(gap());
                    out.push(']');
                }
                Json::Object(members) => {
                    out.push('{');
                    for (i, (key, value)) in members.iter().enumerate() {
                        out.push_str(gap());
                        if i > 0 {
                            out.push(',');
                            out.push_str(gap());
                        }
                        key.write(out);
                        out.push_str(gap());
                        out.push(':');
                        out.push_str(gap());
                        value.write(out, gap);
                    }
                    out.push_str(gap());
                    out.push('}');
                }
            }
        }

        /// What the text means, computed without parsing it.
        fn value(&self) -> Value {
            match self {
                Json::Null => Value::Null,
                Json::Bool(b) => Value::Bool(*b),
                Json::Number(n) => Value::Number(n.parse().expect("a JSON number")),
                Json::Text(s) => Value::String(s.text.clone()),
                Json::Array(items) => Value::Array(items.iter().map(Json::value).collect()),
                Json::Object(members) => Value::Object(
                    members
                        .iter()
                        .map(|(k, v)| (k.text.clone(), v.value()))
                        .collect(),
                ),
            }
        }
    }

    fn written(text: impl Strategy<Value = String>) -> impl Strategy<Value = Written> {
        (text, proptest::collection::vec(any::<bool>(), 1..8))
            .prop_map(|(text, escapes)| Written { text, escapes })
    }

    /// Any characters: ASCII, controls, quotes and backslashes, non-ASCII,
    /// outside the BMP (a surrogate pair when escaped).
    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ -~]{0,12}",
            "[\"\\\\/\u{0}-\u{1f}\u{7f}]{0,6}",
            "\\PC{0,8}",
            "[é€😀\u{2028}\u{fffd}]{1,4}",
        ]
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| serde_json::Number::from_f64(f).expect("finite").to_string()),
            prop_oneof![
                Just("0"),
                Just("-0"),
                Just("-0.0"),
                Just("9223372036854775807"),
                Just("-9223372036854775808"),
                Just("18446744073709551615"),
                Just("18446744073709551616"),
                Just("1e308"),
                Just("-1.7976931348623157e308"),
                Just("5e-324"),
                Just("1E+2"),
                Just("2.5e-3"),
                Just("1.0"),
            ]
            .prop_map(str::to_owned),
        ]
    }

    fn json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            number().prop_map(Json::Number),
            written(any_text()).prop_map(Json::Text),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
                // Keys unique, so the value has every member as written.
                proptest::collection::btree_map(any_text(), inner, 0..6).prop_flat_map(|members| {
                    let keys: Vec<_> = members.keys().cloned().collect();
                    let values: Vec<_> = members.into_values().collect();
                    (
                        proptest::collection::vec(
                            proptest::collection::vec(any::<bool>(), 1..4),
                            keys.len(),
                        ),
                        Just(keys),
                        Just(values),
                    )
                        .prop_map(|(escapes, keys, values)| {
                            Json::Object(
                                keys.into_iter()
                                    .zip(escapes)
                                    .map(|(text, escapes)| Written { text, escapes })
                                    .zip(values)
                                    .collect(),
                            )
                        })
                }),
            ]
        })
    }

    /// Whitespace between tokens, picked from `picks` in turn.
    fn gaps(picks: Vec<u8>) -> impl FnMut() -> &'static str {
        let mut i = 0;
        move || {
            i += 1;
            match picks.get(i % picks.len().max(1)).copied().unwrap_or(0) % 6 {
                0 | 1 => "",
                2 => " ",
                3 => "\t",
                4 => " \r\n  ",
                _ => "\n",
            }
        }
    }

    /// A line: `{"topic": T, "payload": P}` with the members in `order`.
    fn line(
        topic: &Written,
        payload: &str,
        topic_first: bool,
        gap: &mut impl FnMut() -> &'static str,
    ) -> String {
        let mut topic_member = String::from("\"topic\"");
        topic_member.push_str(gap());
        topic_member.push(':');
        topic_member.push_str(gap());
        topic.write(&mut topic_member);
        let payload_member = format!("\"payload\"{}:{}{payload}", gap(), gap());
        let (first, second) = match topic_first {
            true => (topic_member, payload_member),
            false => (payload_member, topic_member),
        };
        format!(
            "{}{{{}{first}{},{}{second}{}}}{}",
            gap(),
            gap(),
            gap(),
            gap(),
            gap(),
            gap()
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn any_line_is_parsed_or_refused_without_panicking(line in "\\PC{0,120}") {
            let _ = parse_line(&line);
        }

        #[test]
        fn a_json_payload_arrives_as_its_compact_text_as_written(
            payload in json(),
            topic in written(any_text()),
            spacing in proptest::collection::vec(any::<u8>(), 1..16),
            topic_first in any::<bool>(),
        ) {
            let mut compact = String::new();
            payload.write(&mut compact, &mut || "");
            let mut spaced = String::new();
            let mut gap = gaps(spacing);
            payload.write(&mut spaced, &mut gap);
            let text = line(&topic, &spaced, topic_first, &mut gap);
            let (got_topic, bytes, _) = parse_line(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(&got_topic, &topic.text);
            prop_assert_eq!(String::from_utf8(bytes.clone()).unwrap(), compact, "from {}", text);
            let back: Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(back, payload.value());
        }

        #[test]
        fn a_base64_payload_arrives_as_its_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            topic in written(any_text()),
            pad in prop_oneof![Just(""), Just(" "), Just("\\n")],
        ) {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let mut quoted = String::new();
            topic.write(&mut quoted);
            let text = format!(r#"{{"payload_base64": "{pad}{encoded}{pad}", "topic": {quoted}}}"#);
            prop_assert_eq!(parse_line(&text).unwrap(), (topic.text.clone(), bytes.clone(), ContentType::Bytes));
            // Without its padding (when it has some) it is not standard base64.
            if let Some(unpadded) = encoded.strip_suffix('=') {
                let text = format!(r#"{{"topic": "t", "payload_base64": "{unpadded}"}}"#);
                prop_assert!(matches!(parse_line(&text), Err(LineError::Base64(_))), "{}", text);
            }
            // With a JSON payload too, it is refused whatever the order.
            for text in [
                format!(r#"{{"topic": "t", "payload_base64": "{encoded}", "payload": 1}}"#),
                format!(r#"{{"payload": null, "topic": "t", "payload_base64": "{encoded}"}}"#),
            ] {
                prop_assert!(matches!(parse_line(&text), Err(LineError::BothPayloads)), "{}", text);
            }
        }

        /// Without a payload a line is refused; a member the format does
        /// not know, a missing or non-string topic, or a line that is not
        /// one JSON object, is refused as JSON and says what a line is.
        #[test]
        fn other_shapes_are_refused(topic in written(any_text()), extra in "[a-z_]{1,12}", payload in json()) {
            let mut quoted = String::new();
            topic.write(&mut quoted);
            let bare = format!("{{\"topic\":{quoted}}}");
            prop_assert!(matches!(parse_line(&bare), Err(LineError::BothPayloads)), "{}", bare);
            let mut value = String::new();
            payload.write(&mut value, &mut || "");
            let refused = [
                (!["topic", "payload", "payload_text", "payload_base64", "id", "source", "timestamp"].contains(&extra.as_str()))
                    .then(|| format!("{{\"topic\":{quoted},\"{extra}\":1}}")),
                Some(format!("{{\"payload\":{value}}}")),
                Some(format!("{{\"topic\":{value},\"payload\":1}}")).filter(|_| !matches!(payload, Json::Text(_))),
                Some(format!("[{quoted},{value}]")),
                Some(format!("{{\"topic\":{quoted},\"payload\":{value}}} x")),
                Some(format!("{{\"topic\":{quoted},\"payload\":{value}")),
            ];
            for text in refused.into_iter().flatten() {
                match parse_line(&text) {
                    Err(e @ LineError::Json(_)) => prop_assert!(e.to_string().ends_with(EXPECTED)),
                    other => prop_assert!(false, "{:?} for {}", other, text),
                }
            }
        }
    }
}
