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
    fn a_reserved_prefix_alone_is_not_a_reserved_topic() {
        // Not valid topics either; `is_reserved` must not claim them.
        for text in ["plughost.", "internal.state.", "internal.metrics."] {
            assert!(!is_reserved(text), "{text}");
        }
    }

    #[test]
    fn a_pattern_shows_as_written() {
        let pattern = Pattern::parse("orders.*.eu").unwrap();
        assert_eq!(pattern.to_string(), "orders.*.eu");
        assert_eq!(format!("{pattern:?}"), "Pattern(orders.*.eu)");
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

/// Property tests: parsing and matching agree with an obviously correct
/// reference (the NATS rules written as a recursion over tokens) on
/// patterns and topics that share and differ in tokens, with wildcards at
/// every position, and at the length limit.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// The NATS rules, token by token: a literal matches itself, `*` any one
    /// token, a final `>` one or more tokens.
    fn reference_matches(pattern: &[&str], topic: &[&str]) -> bool {
        match (pattern, topic) {
            ([], []) => true,
            ([">"], [_, ..]) => true,
            (["*", pattern @ ..], [_, topic @ ..]) => reference_matches(pattern, topic),
            ([literal, pattern @ ..], [token, topic @ ..]) => {
                literal == token && reference_matches(pattern, topic)
            }
            _ => false,
        }
    }

    /// Whether a text is a valid pattern (`wildcards`) or topic, by the
    /// rules the docs state.
    fn reference_valid(text: &str, wildcards: bool) -> bool {
        let tokens: Vec<&str> = text.split('.').collect();
        text.len() <= MAX_TOPIC_BYTES
            && tokens.iter().enumerate().all(|(i, token)| {
                !token.is_empty()
                    && !token.chars().any(|c| c.is_whitespace() || c.is_control())
                    && match *token {
                        "*" => wildcards,
                        ">" => wildcards && i + 1 == tokens.len(),
                        _ => !token.contains(['*', '>']),
                    }
            })
    }

    fn check(pattern: &str, topic: &str) -> Result<(), TestCaseError> {
        let parsed = Pattern::parse(pattern);
        prop_assert_eq!(
            parsed.is_ok(),
            reference_valid(pattern, true),
            "pattern {:?}",
            pattern
        );
        if let Ok(parsed) = parsed {
            let expected = reference_matches(
                &pattern.split('.').collect::<Vec<_>>(),
                &topic.split('.').collect::<Vec<_>>(),
            );
            prop_assert_eq!(
                parsed.matches(topic),
                expected,
                "{:?} against {:?}",
                pattern,
                topic
            );
            prop_assert_eq!(parsed.as_str(), pattern);
        }
        Ok(())
    }

    /// A small alphabet, so patterns and topics often share tokens, with
    /// tokens that are prefixes of each other and non-ASCII ones.
    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("ab".to_owned()),
            Just("é".to_owned()),
            Just("a-b_9".to_owned()),
            "[a-c]{1,3}",
        ]
    }

    fn tokens(max: usize) -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(token(), 1..max)
    }

    /// A pattern token: mostly literals, some wildcards, rarely a broken one.
    fn pattern_token() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => token(),
            2 => Just("*".to_owned()),
            1 => Just(">".to_owned()),
            1 => prop_oneof![Just("a*"), Just(">b"), Just(""), Just("a b"), Just("\u{7}")].prop_map(str::to_owned),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn parsing_any_text_never_panics_and_agrees_with_the_rules(text in "\\PC{0,40}") {
            prop_assert_eq!(Pattern::parse(&text).is_ok(), reference_valid(&text, true), "{:?}", text);
            prop_assert_eq!(validate_topic(&text).is_ok(), reference_valid(&text, false), "{:?}", text);
        }

        #[test]
        fn random_patterns_match_random_topics_as_the_rules_say(
            pattern in proptest::collection::vec(pattern_token(), 1..6),
            topic in tokens(7),
        ) {
            check(&pattern.join("."), &topic.join("."))?;
        }

        /// The topic is the pattern with its wildcards filled in, then
        /// perhaps one token changed, removed or added: near misses.
        #[test]
        fn patterns_match_their_own_topics_and_not_their_near_misses(
            pattern in proptest::collection::vec(pattern_token(), 1..6),
            fill in tokens(8),
            edit in 0usize..4,
            at in any::<prop::sample::Index>(),
            other in token(),
        ) {
            let mut topic: Vec<String> = Vec::new();
            for (i, token) in pattern.iter().enumerate() {
                match token.as_str() {
                    "*" => topic.push(fill[i % fill.len()].clone()),
                    ">" => topic.extend(fill.iter().take(1 + i % fill.len()).cloned()),
                    _ => topic.push(token.clone()),
                }
            }
            match edit {
                1 => { let i = at.index(topic.len()); topic[i] = other; }
                2 if topic.len() > 1 => { topic.remove(at.index(topic.len())); }
                3 => topic.insert(at.index(topic.len() + 1), other),
                _ => {}
            }
            let pattern = pattern.join(".");
            check(&pattern, &topic.join("."))?;
            if edit == 0 && Pattern::parse(&pattern).is_ok() {
                prop_assert!(Pattern::parse(&pattern).unwrap().matches(&topic.join(".")));
            }
        }

        /// Every position of a topic made a `*`, and every suffix a `>`.
        #[test]
        fn wildcards_at_every_position(topic in tokens(7), other in token()) {
            let joined = topic.join(".");
            for i in 0..topic.len() {
                let mut star = topic.clone();
                star[i] = "*".to_owned();
                let star = star.join(".");
                prop_assert!(Pattern::parse(&star).unwrap().matches(&joined), "{} {}", star, joined);
                check(&star, &joined)?;
                // The same pattern against the topic with that token changed
                // (still matches), and with another changed (only if equal).
                let mut changed = topic.clone();
                changed[i] = other.clone();
                check(&star, &changed.join("."))?;
                changed[(i + 1) % topic.len()] = format!("{other}x");
                check(&star, &changed.join("."))?;
                let rest = format!("{}>", topic[..i].iter().map(|t| format!("{t}.")).collect::<String>());
                prop_assert!(Pattern::parse(&rest).unwrap().matches(&joined), "{} {}", rest, joined);
                check(&rest, &joined)?;
                check(&rest, &topic[..i].join("."))?;
                check(&rest, &format!("{joined}.{other}"))?;
            }
        }
    }

    /// Topics and patterns of `MAX_TOPIC_BYTES` - 2 to + 1 bytes, made of
    /// one- or two-byte characters: `x.FILLER.y`, and the same with `y` made
    /// a `*` or a `>` (the same length). Every case, not a sample.
    #[test]
    fn the_length_limit_is_exact() -> Result<(), TestCaseError> {
        for len in MAX_TOPIC_BYTES - 2..=MAX_TOPIC_BYTES + 1 {
            for unit in ["a", "é"] {
                let mut filler = unit.repeat((len - 4) / unit.len());
                while filler.len() < len - 4 {
                    filler.push('b');
                }
                let topic = format!("x.{filler}.y");
                assert_eq!(topic.len(), len);
                assert_eq!(validate_topic(&topic).is_ok(), len <= MAX_TOPIC_BYTES);
                for last in ["y", "*", ">"] {
                    let pattern = format!("x.{filler}.{last}");
                    assert_eq!(Pattern::parse(&pattern).is_ok(), len <= MAX_TOPIC_BYTES);
                    check(&pattern, &topic)?;
                    check(&pattern, &format!("x.{filler}"))?;
                    check(&pattern, &format!("x.{filler}.y.z"))?;
                }
                check("x.*.y", &topic)?;
                check("x.>", &topic)?;
            }
        }
        Ok(())
    }

    #[test]
    fn the_reference_itself_follows_the_docs() {
        let m = |p: &str, t: &str| {
            reference_matches(
                &p.split('.').collect::<Vec<_>>(),
                &t.split('.').collect::<Vec<_>>(),
            )
        };
        assert!(m("a.*", "a.b") && !m("a.*", "a") && !m("a.*", "a.b.c"));
        assert!(m("a.>", "a.b.c") && !m("a.>", "a") && m(">", "a"));
        assert!(!m("a.b", "a.c") && m("a.b", "a.b"));
        assert!(reference_valid("a.>", true) && !reference_valid("a.>.b", true));
        assert!(!reference_valid("a.*", false) && !reference_valid("a..b", true));
    }
}
