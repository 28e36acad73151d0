//! Topics (`orders.created`) and subscription patterns with NATS wildcards:
//! `*` matches exactly one token, `>` one or more trailing tokens. Patterns are
//! parsed once, when the config is read; matching never re-parses them.

use std::fmt;

/// The longest topic (and subscription pattern), in bytes, anywhere: on
/// every entry point and in both isolation modes.
///
/// Far above any real topic (Kafka caps topic names at 249 bytes, NATS
/// advises short subjects), yet small enough that the per-topic costs stay
/// small: every distinct topic is interned and cached by each publishing
/// thread, every event carries its topic, and a process plugin's events carry
/// it in a 16-bit length field.
pub const MAX_TOPIC_BYTES: usize = 4096;

/// How much of a refused topic an error message quotes.
const QUOTED_BYTES: usize = 100;

/// Why a topic or a pattern is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicError {
    what: &'static str,
    /// The text, or its beginning when it is long.
    text: String,
    /// The whole text's length, when `text` holds only its beginning.
    len: Option<usize>,
    reason: &'static str,
}

impl TopicError {
    fn new(what: &'static str, text: &str, reason: &'static str) -> TopicError {
        let (text, len) = match text.len() > QUOTED_BYTES {
            true => (
                text[..text.floor_char_boundary(QUOTED_BYTES)].to_owned(),
                Some(text.len()),
            ),
            false => (text.to_owned(), None),
        };
        TopicError {
            what,
            text,
            len,
            reason,
        }
    }
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.len {
            None => write!(f, "invalid {} `{}`: {}", self.what, self.text, self.reason),
            Some(len) => write!(
                f,
                "invalid {} `{}...` ({len} bytes): {}",
                self.what, self.text, self.reason
            ),
        }
    }
}

fn check_length(what: &'static str, text: &str) -> Result<(), TopicError> {
    match text.len() > MAX_TOPIC_BYTES {
        true => Err(TopicError::new(
            what,
            text,
            "longer than 4096 bytes (MAX_TOPIC_BYTES)",
        )),
        false => Ok(()),
    }
}

impl std::error::Error for TopicError {}

fn check_token(what: &'static str, text: &str, token: &str) -> Result<(), TopicError> {
    let error = |reason| Err(TopicError::new(what, text, reason));
    if token.is_empty() {
        return error("empty token (topics are dot-separated words, such as `orders.created`)");
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return error("whitespace is not allowed");
    }
    Ok(())
}

/// Check that `topic` is a concrete topic one can publish on (no wildcards).
/// A topic is at most [`MAX_TOPIC_BYTES`] long.
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    check_length("topic", topic)?;
    for token in topic.split('.') {
        check_token("topic", topic, token)?;
        if token.contains(['*', '>']) {
            return Err(TopicError::new(
                "topic",
                topic,
                "wildcards `*` and `>` belong in subscriptions, not in published topics",
            ));
        }
    }
    Ok(())
}

/// The topics the host itself publishes on, as subscription patterns:
/// lifecycle events (`plughost.plugin.failed`, ...) and the `[state]` and
/// `[metrics]` events. They are reserved whether or not those sections are
/// on: nobody else (an input line, `plughost ctl publish`, `POST /events`,
/// a plugin) may publish on them, so a subscriber can trust what it hears
/// there.
pub const RESERVED: [&str; 3] = ["plughost.>", "internal.state.>", "internal.metrics.>"];

/// Whether `topic` is one of the host's own (see [`RESERVED`]): only the host
/// publishes there.
pub fn is_reserved(topic: &str) -> bool {
    RESERVED.iter().any(|pattern| {
        let prefix = &pattern[..pattern.len() - 1];
        topic.len() > prefix.len() && topic.starts_with(prefix)
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(Box<str>),
    /// `*`: exactly one token.
    One,
    /// `>`: one or more trailing tokens.
    Rest,
}

/// A compiled subscription pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    text: Box<str>,
    tokens: Box<[Token]>,
}

impl Pattern {
    /// Parse a pattern such as `orders.>` or `plughost.plugin.*`, at most
    /// [`MAX_TOPIC_BYTES`] long.
    pub fn parse(text: &str) -> Result<Pattern, TopicError> {
        check_length("pattern", text)?;
        let mut tokens = Vec::new();
        let parts: Vec<&str> = text.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            check_token("pattern", text, part)?;
            let token = match *part {
                "*" => Token::One,
                ">" if i + 1 == parts.len() => Token::Rest,
                ">" => {
                    return Err(TopicError::new(
                        "pattern",
                        text,
                        "`>` may only be the last token",
                    ));
                }
                p if p.contains(['*', '>']) => {
                    return Err(TopicError::new(
                        "pattern",
                        text,
                        "`*` and `>` must stand alone as a whole token",
                    ));
                }
                p => Token::Literal(p.into()),
            };
            tokens.push(token);
        }
        Ok(Pattern {
            text: text.into(),
            tokens: tokens.into(),
        })
    }

    /// Whether the concrete `topic` matches this pattern.
    pub fn matches(&self, topic: &str) -> bool {
        let mut parts = topic.split('.');
        for token in self.tokens.iter() {
            match (token, parts.next()) {
                (Token::Rest, Some(_)) => return true,
                (Token::One, Some(_)) => {}
                (Token::Literal(want), Some(part)) if **want == *part => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({})", self.text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, topic: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(topic)
    }

    #[test]
    fn literal_patterns_match_only_themselves() {
        assert!(m("orders.created", "orders.created"));
        assert!(!m("orders.created", "orders.created.eu"));
        assert!(!m("orders.created", "orders"));
        assert!(!m("orders.created", "orders.deleted"));
    }

    #[test]
    fn star_matches_exactly_one_token() {
        assert!(m("orders.*", "orders.created"));
        assert!(!m("orders.*", "orders"));
        assert!(!m("orders.*", "orders.created.eu"));
        assert!(m("*.created", "orders.created"));
        assert!(m("a.*.c", "a.b.c"));
        assert!(!m("a.*.c", "a.b.d"));
    }

    #[test]
    fn rest_matches_one_or_more_trailing_tokens() {
        assert!(m("orders.>", "orders.created"));
        assert!(m("orders.>", "orders.created.eu"));
        assert!(!m("orders.>", "orders"));
        assert!(m(">", "anything"));
        assert!(m(">", "any.thing.at.all"));
        assert!(m("*.>", "a.b"));
        assert!(!m("*.>", "a"));
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for bad in ["", "a..b", ".a", "a.", "a.>.b", "a*", "or>ders", "a b"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let err = Pattern::parse("a.>.b").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid pattern `a.>.b`: `>` may only be the last token"
        );
    }

    #[test]
    fn the_hosts_own_topics_are_reserved() {
        for topic in [
            "plughost.plugin.failed",
            "plughost.x",
            "internal.state.worker_ping",
            "internal.metrics.event_fired",
            "internal.metrics.a.b",
        ] {
            assert!(is_reserved(topic), "{topic}");
            assert!(
                RESERVED
                    .iter()
                    .any(|p| Pattern::parse(p).unwrap().matches(topic))
            );
        }
        for topic in [
            "plughost",
            "plughostx.a",
            "internal.state",
            "internal.other.x",
            "orders.plughost.x",
            "internal.metricsx.a",
        ] {
            assert!(!is_reserved(topic), "{topic}");
            assert!(
                !RESERVED
                    .iter()
                    .any(|p| Pattern::parse(p).unwrap().matches(topic))
            );
        }
    }

    #[test]
    fn published_topics_may_not_hold_wildcards() {
        assert!(validate_topic("orders.created").is_ok());
        assert!(validate_topic("orders.*").is_err());
        assert!(validate_topic("orders.>").is_err());
        assert!(validate_topic("").is_err());
        assert!(validate_topic("a..b").is_err());
    }

    #[test]
    fn topics_and_patterns_are_at_most_max_topic_bytes_long() {
        let longest = "a".repeat(MAX_TOPIC_BYTES);
        assert!(validate_topic(&longest).is_ok());
        assert!(Pattern::parse(&longest).is_ok());
        let over = format!("{longest}b");
        let err = validate_topic(&over).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "invalid topic `{}...` (4097 bytes): longer than 4096 bytes (MAX_TOPIC_BYTES)",
                "a".repeat(100)
            )
        );
        assert!(Pattern::parse(&over).is_err());
        // A long text is quoted by its beginning, cut on a character boundary.
        let err = validate_topic(&"é".repeat(3000)).unwrap_err().to_string();
        assert!(err.starts_with(&format!(
            "invalid topic `{}...` (6000 bytes)",
            "é".repeat(50)
        )));
    }
}

/// Property tests: no input makes parsing or matching panic, and a pattern
/// matches every topic built to fit it.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn parsing_any_text_never_panics(text in "\\PC{0,40}") {
            let _ = Pattern::parse(&text);
            let _ = validate_topic(&text);
        }

        #[test]
        fn matching_never_panics(pattern in "[a-c*>.]{0,12}", topic in "[a-c.*>]{0,12}") {
            if let Ok(pattern) = Pattern::parse(&pattern) {
                let _ = pattern.matches(&topic);
            }
        }

        #[test]
        fn a_pattern_matches_the_topics_built_to_fit_it(
            tokens in proptest::collection::vec(("[a-z0-9_-]{1,6}", any::<bool>()), 1..6),
            rest in proptest::collection::vec("[a-z]{1,4}", 0..3),
        ) {
            let topic_tokens: Vec<&str> = tokens.iter().map(|(t, _)| t.as_str()).collect();
            let mut pattern: Vec<&str> = tokens.iter().map(|(t, wild)| if *wild { "*" } else { t.as_str() }).collect();
            let mut topic = topic_tokens.clone();
            if !rest.is_empty() {
                pattern.push(">");
                topic.extend(rest.iter().map(String::as_str));
            }
            let pattern = Pattern::parse(&pattern.join(".")).unwrap();
            prop_assert!(pattern.matches(&topic.join(".")));
            // One token more (without `>`) or one fewer never matches.
            if rest.is_empty() {
                let longer = format!("{}.extra", topic.join("."));
                prop_assert!(!pattern.matches(&longer));
            }
            if topic.len() > 1 {
                prop_assert!(!pattern.matches(&topic[..topic.len() - 1].join(".")) || rest.len() > 1);
            }
        }
    }
}
