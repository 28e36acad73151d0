//! `--events`: JSON lines such as `{"topic": "orders.created", "payload": {...}}`
//! or `{"topic": ..., "payload_base64": "..."}`. A JSON payload reaches plugins
//! as its compact text, keys in the order written. A bad line is reported with
//! its number and skipped.

use crate::host::{Host, PublishError};
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
    /// Lines skipped because they were malformed.
    pub skipped: u64,
    /// True when intake closed before the end of input.
    pub interrupted: bool,
}

/// What a line must look like, appended to every parse error so the reader
/// knows how to fix the line, not only what is wrong with it.
const EXPECTED: &str = r#"write each event as one JSON object on its own line, such as {"topic": "orders.created", "payload": {"id": 1}} or {"topic": "raw.bytes", "payload_base64": "AAEC"}"#;

/// Parse one input line into (topic, payload bytes).
pub fn parse_line(text: &str) -> Result<(String, Vec<u8>), String> {
    let line: Line<'_> = serde_json::from_str(text).map_err(|e| format!("{e}; {EXPECTED}"))?;
    let payload = match (line.payload, line.payload_base64) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "give `payload` or `payload_base64`, not both; {EXPECTED}"
            ));
        }
        (Some(json), None) => compact_json(json.get()),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("invalid payload_base64: {e}; give the payload's bytes in standard base64 (A-Z, a-z, 0-9, +, /, = padding)"))?,
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

/// Publish every line of `reader` into `host`; `name` labels warnings.
pub fn feed(host: &Host, reader: impl BufRead, name: &str) -> std::io::Result<InputSummary> {
    let mut summary = InputSummary::default();
    for (number, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let number = number + 1;
        let outcome =
            parse_line(&line).and_then(|(topic, payload)| match host.publish(&topic, payload) {
                Ok(_) => Ok(()),
                Err(PublishError::ShuttingDown) => Err(String::new()),
                Err(e) => Err(e.to_string()),
            });
        match outcome {
            Ok(()) => summary.published += 1,
            Err(reason) if reason.is_empty() => {
                summary.interrupted = true;
                break;
            }
            Err(reason) => {
                summary.skipped += 1;
                tracing::warn!("{name}:{number}: skipped: {reason}");
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
        let error = parse_line("oops").unwrap_err();
        assert_eq!(
            error,
            format!("expected value at line 1 column 1; {EXPECTED}")
        );
        assert!(parse_line("{").unwrap_err().ends_with(EXPECTED));
        assert!(
            parse_line(r#"{"payload": 1}"#)
                .unwrap_err()
                .contains("topic")
        );
        assert!(parse_line(r#"{"topic": "a", "payload": 1, "payload_base64": "AA=="}"#).is_err());
        assert!(
            parse_line(r#"{"topic": "a", "extra": 1}"#)
                .unwrap_err()
                .contains("extra")
        );
        assert!(
            parse_line(r#"{"topic": "a", "payload_base64": "!!"}"#)
                .unwrap_err()
                .contains("base64")
        );
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
