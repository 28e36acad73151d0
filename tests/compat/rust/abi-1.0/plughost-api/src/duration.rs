//! Durations as `plugins.toml` writes them, for the host's keys and for
//! plugins' own: one grammar everywhere.

use serde::de::{Deserialize, Deserializer, Error as _};
use std::time::Duration;

/// A duration written as a whole number and a unit: `"250ms"`, `"5s"`,
/// `"1m"` or `"2h"`. Deserializes from such a string, so a plugin's config
/// can take durations the way `plugins.toml` writes the host's:
///
/// ```
/// use plughost_api::HumanDuration;
/// use std::time::Duration;
///
/// #[derive(serde::Deserialize)]
/// struct Config {
///     flush_interval: HumanDuration,
/// }
///
/// let config: Config = serde_json::from_str(r#"{"flush_interval": "250ms"}"#).unwrap();
/// assert_eq!(config.flush_interval.0, Duration::from_millis(250));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Parse `"250ms"`, `"5s"`, `"1m"`, `"2h"`; the error says how to write one.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let bad = || {
            format!(
                "invalid duration `{text}`: write a whole number and a unit, such as \"250ms\", \"5s\", \"1m\" or \"2h\""
            )
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        let seconds = |per: u64| n.checked_mul(per).map(Duration::from_secs).ok_or_else(bad);
        match unit {
            "ms" => Ok(Duration::from_millis(n)),
            "s" => Ok(Duration::from_secs(n)),
            "m" => seconds(60),
            "h" => seconds(3600),
            _ => Err(bad()),
        }
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HumanDuration::parse(&text)
            .map(HumanDuration)
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            HumanDuration::parse("250ms"),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(HumanDuration::parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(HumanDuration::parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(HumanDuration::parse("2h"), Ok(Duration::from_secs(7200)));
        let huge = format!("{}h", u64::MAX);
        for bad in ["", "5", "s", "1.5s", "-1s", "5 s", "5sec", &huge] {
            assert!(HumanDuration::parse(bad).is_err(), "{bad:?}");
        }
    }
}
