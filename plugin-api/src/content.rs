//! What an event's payload is: `json`, `text` or `bytes`. Set where the
//! event enters the host (an input line's key, `ctl publish`'s flags, an HTTP
//! `Content-Type`, the publish function a plugin calls) and kept on every
//! path: thread and process isolation, the NATS bridge.

/// What an event's payload is. The host checks it where the event enters: a
/// `json` payload is one valid JSON value (UTF-8 text), a `text` payload is
/// valid UTF-8, a `bytes` payload is anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ContentType {
    /// Raw bytes, meaning unknown to the host. What a plugin built before
    /// content types (plugin ABI 1.0, C ABI 1.2) publishes and sees.
    #[default]
    Bytes,
    /// UTF-8 text.
    Text,
    /// One JSON value, as its UTF-8 text.
    Json,
}

impl ContentType {
    /// `bytes`, `text` or `json`: the name the README, `ctl` and the logs use.
    pub const fn as_str(self) -> &'static str {
        match self {
            ContentType::Bytes => "bytes",
            ContentType::Text => "text",
            ContentType::Json => "json",
        }
    }

    /// The type named `bytes`, `text` or `json`.
    pub fn from_name(name: &str) -> Option<ContentType> {
        match name {
            "bytes" => Some(ContentType::Bytes),
            "text" => Some(ContentType::Text),
            "json" => Some(ContentType::Json),
            _ => None,
        }
    }

    /// Its MIME type, as an HTTP or NATS `Content-Type` header carries it.
    pub const fn mime(self) -> &'static str {
        match self {
            ContentType::Bytes => "application/octet-stream",
            ContentType::Text => "text/plain; charset=utf-8",
            ContentType::Json => "application/json",
        }
    }

    /// The type a `Content-Type` header names: `application/json` (and
    /// `application/*+json`) is `json`, `text/*` is `text`, anything else
    /// (or nothing) `bytes`. A charset other than UTF-8 (or its subset
    /// US-ASCII) on `json` or `text` is an error naming it: the host does
    /// not convert text.
    pub fn from_mime(header: Option<&str>) -> Result<ContentType, ContentError> {
        let Some(header) = header else {
            return Ok(ContentType::Bytes);
        };
        let mut parts = header.split(';');
        let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let content = if essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"))
        {
            ContentType::Json
        } else if essence.starts_with("text/") {
            ContentType::Text
        } else {
            return Ok(ContentType::Bytes);
        };
        for parameter in parts {
            let Some((name, value)) = parameter.split_once('=') else {
                continue;
            };
            if !name.trim().eq_ignore_ascii_case("charset") {
                continue;
            }
            let charset = value.trim().trim_matches('"').to_ascii_lowercase();
            if !matches!(charset.as_str(), "utf-8" | "utf8" | "us-ascii") {
                return Err(ContentError::Charset {
                    content,
                    charset: value.trim().to_owned(),
                });
            }
        }
        Ok(content)
    }

    /// Check that `payload` is what this type says.
    pub fn check(self, payload: &[u8]) -> Result<(), ContentError> {
        match self {
            ContentType::Bytes => Ok(()),
            ContentType::Text => {
                std::str::from_utf8(payload)
                    .map(|_| ())
                    .map_err(|e| ContentError::NotUtf8 {
                        offset: e.valid_up_to(),
                    })
            }
            ContentType::Json => serde_json::from_slice::<serde::de::IgnoredAny>(payload)
                .map(|_| ())
                .map_err(|e| ContentError::NotJson(e.to_string())),
        }
    }

    /// Its number across the plugin ABIs (`PLUGHOST_CONTENT_*` in C): 0
    /// bytes, 1 text, 2 json. A number this version does not know reads as
    /// bytes.
    #[doc(hidden)]
    pub const fn to_abi(self) -> u8 {
        match self {
            ContentType::Bytes => 0,
            ContentType::Text => 1,
            ContentType::Json => 2,
        }
    }

    /// The type numbered `n` across the ABIs, if `n` is one this version
    /// knows (see [`ContentType::to_abi`]).
    #[doc(hidden)]
    pub fn from_known(n: u8) -> Option<ContentType> {
        Some(ContentType::from_abi(n)).filter(|content| content.to_abi() == n)
    }

    /// The type numbered `n` across the ABIs (see [`ContentType::to_abi`]).
    #[doc(hidden)]
    pub const fn from_abi(n: u8) -> ContentType {
        match n {
            1 => ContentType::Text,
            2 => ContentType::Json,
            _ => ContentType::Bytes,
        }
    }
}

impl std::fmt::Display for ContentType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a payload is not what its content type says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContentError {
    /// A `text` payload that is not UTF-8.
    NotUtf8 {
        /// Where the first invalid byte is.
        offset: usize,
    },
    /// A `json` payload that is not one JSON value (serde_json's reason).
    NotJson(String),
    /// A `Content-Type` of `text` or `json` in a charset other than UTF-8.
    Charset {
        /// What the header's type names.
        content: ContentType,
        /// The charset it gives.
        charset: String,
    },
}

impl std::fmt::Display for ContentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContentError::NotUtf8 { offset } => write!(
                f,
                "the text payload is not valid UTF-8 (invalid byte at offset {offset}); send it as bytes"
            ),
            ContentError::NotJson(reason) => write!(
                f,
                "the json payload is not valid JSON ({reason}); send it as text or bytes"
            ),
            ContentError::Charset { content, charset } => write!(
                f,
                "{content} payloads are UTF-8, not charset={charset}: convert it to UTF-8, or send it as application/octet-stream"
            ),
        }
    }
}

impl std::error::Error for ContentError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_headers_name_json_text_or_bytes() {
        let of = |h| ContentType::from_mime(h);
        assert_eq!(of(None), Ok(ContentType::Bytes));
        assert_eq!(of(Some("application/json")), Ok(ContentType::Json));
        assert_eq!(
            of(Some("Application/JSON; charset=UTF-8")),
            Ok(ContentType::Json)
        );
        assert_eq!(
            of(Some("application/cloudevents+json")),
            Ok(ContentType::Json)
        );
        assert_eq!(of(Some("text/plain")), Ok(ContentType::Text));
        assert_eq!(
            of(Some("text/csv; charset=\"utf-8\"")),
            Ok(ContentType::Text)
        );
        assert_eq!(of(Some("application/octet-stream")), Ok(ContentType::Bytes));
        assert_eq!(of(Some("image/png")), Ok(ContentType::Bytes));
        assert_eq!(of(Some("")), Ok(ContentType::Bytes));
        assert_eq!(
            of(Some("text/plain; charset=latin1")),
            Err(ContentError::Charset {
                content: ContentType::Text,
                charset: "latin1".into()
            })
        );
        // A charset on bytes means nothing to the host.
        assert_eq!(
            of(Some("application/octet-stream; charset=latin1")),
            Ok(ContentType::Bytes)
        );
    }

    #[test]
    fn payloads_are_checked_against_their_type() {
        assert!(ContentType::Bytes.check(b"\xff").is_ok());
        assert!(ContentType::Text.check("héllo".as_bytes()).is_ok());
        assert!(ContentType::Text.check(b"").is_ok());
        assert_eq!(
            ContentType::Text.check(b"ab\xff"),
            Err(ContentError::NotUtf8 { offset: 2 })
        );
        assert!(ContentType::Json.check(br#" {"a": [1, "x"]} "#).is_ok());
        assert!(ContentType::Json.check(b"").is_err());
        assert!(ContentType::Json.check(b"{} {}").is_err());
        assert!(ContentType::Json.check(b"hello").is_err());
    }

    #[test]
    fn abi_numbers_round_trip_and_unknown_ones_read_as_bytes() {
        for content in [ContentType::Bytes, ContentType::Text, ContentType::Json] {
            assert_eq!(ContentType::from_abi(content.to_abi()), content);
            assert_eq!(ContentType::from_name(content.as_str()), Some(content));
        }
        assert_eq!(ContentType::from_abi(200), ContentType::Bytes);
        assert_eq!(ContentType::from_known(2), Some(ContentType::Json));
        assert_eq!(ContentType::from_known(3), None);
    }
}
