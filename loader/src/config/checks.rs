//! Reading values against their bounds, and the positions and JSON that
//! errors and plugin configs are given in.

use super::limits;
use plughost_api::HumanDuration;
use std::num::NonZeroUsize;
use std::time::Duration;
use toml::Spanned;

/// What a zero duration means for a key.
#[derive(Clone, Copy)]
pub(super) enum Zero {
    /// A real value (`shutdown_timeout = "0s"`: do not wait).
    Allowed,
    /// The feature is off (`handler_timeout`, `tick_interval`).
    Off,
    /// Meaningless: refused.
    Refused,
}

/// Reads values against their bounds, collecting every problem found as
/// (offset in the text, message) rather than stopping at the first.
#[derive(Default)]
pub(super) struct Checks {
    pub(super) problems: Vec<(usize, String)>,
}

impl Checks {
    pub(super) fn problem(&mut self, offset: usize, message: String) {
        self.problems.push((offset, message));
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        value: &Option<Spanned<String>>,
        default: Duration,
        zero: Zero,
    ) -> Duration {
        let Some(value) = value else { return default };
        let at = value.span().start;
        match HumanDuration::parse(value.get_ref()) {
            Err(message) => self.problem(at, message),
            Ok(d) if d > limits::MAX_DURATION => self.problem(
                at,
                format!("`{key}` must be at most 24h (it is {})", value.get_ref()),
            ),
            Ok(d) if d.is_zero() && matches!(zero, Zero::Refused) => {
                self.problem(at, format!("`{key}` must be more than zero"))
            }
            Ok(d) => return d,
        }
        default
    }

    pub(super) fn size(&mut self, limit: &limits::Limit, value: &Option<Spanned<u64>>) -> usize {
        let Some(value) = value else {
            return limit.default as usize;
        };
        let n = *value.get_ref();
        if (limit.min..=limit.max).contains(&n) {
            return n as usize;
        }
        self.problem(
            value.span().start,
            format!(
                "`{}` must be between {} and {} (it is {n})",
                limit.key, limit.min, limit.max
            ),
        );
        limit.default as usize
    }
}

/// A checked capacity (at least [`limits::QUEUE_CAPACITY`]'s minimum, 1).
pub(super) fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

pub(super) fn toml_to_json(value: toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        toml::Value::String(s) => J::String(s),
        toml::Value::Integer(i) => J::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => J::Object(
            table
                .into_iter()
                .map(|(k, v)| (k, toml_to_json(v)))
                .collect(),
        ),
    }
}
