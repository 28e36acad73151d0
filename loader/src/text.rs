//! Foreign text made safe to print. Topics, instance and plugin names,
//! versions and every message a plugin hands the host come from outside: a
//! newline in one could forge a log line (or an `ok:` line of `plughost
//! check`), an escape sequence could rewrite the operator's terminal.
//! [`Escaped`] prints such text with every control character (and the
//! Unicode controls that reorder text) written as a visible escape, so one
//! foreign string is always one run of printable characters.

use std::fmt;

/// `text`, printed with its control characters escaped (`\n`, `\u{1b}`, ...).
/// Printable text, including non-ASCII, is printed as it is.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

/// Whether `c` must not reach a log line or a terminal as it is.
fn needs_escape(c: char) -> bool {
    c.is_control()
        // Bidirectional overrides and isolates reorder what follows them.
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        // Line and paragraph separators end a line in some viewers.
        || matches!(c, '\u{2028}' | '\u{2029}')
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(needs_escape) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().expect("found at `at`");
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                other => write!(f, "\\u{{{:x}}}", u32::from(other))?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        Escaped(text).to_string()
    }

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(escaped("a\nb"), "a\\nb");
        assert_eq!(escaped("x\r\n\tok: forged"), "x\\r\\n\\tok: forged");
        assert_eq!(escaped("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(
            escaped("nul\0del\u{7f}c1\u{85}"),
            "nul\\u{0}del\\u{7f}c1\\u{85}"
        );
        assert_eq!(escaped("rtl\u{202e}txt"), "rtl\\u{202e}txt");
        assert_eq!(escaped("line\u{2028}sep"), "line\\u{2028}sep");
    }

    #[test]
    fn printable_text_is_left_alone() {
        for text in [
            "",
            "orders.created",
            "café ☕ 注文",
            "back\\slash \"quoted\"",
        ] {
            assert_eq!(escaped(text), text);
        }
    }

    proptest::proptest! {
        #[test]
        fn escaped_text_is_one_line_without_controls(text in "\\PC*|[\\x00-\\x1f\\x7f-\\u{9f}a ]{0,40}") {
            let out = escaped(&text);
            proptest::prop_assert!(!out.chars().any(needs_escape), "{:?}", out);
        }
    }
}
