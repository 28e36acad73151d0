//! The `[plugin.config]` table. Every rule is checked while deserializing,
//! so `plughost check` (which only deserializes) refuses what `init` would.

use plughost_api::HumanDuration;
use plughost_api::topic::{Pattern, validate_topic};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    url: String,
    #[serde(default)]
    export: Vec<String>,
    #[serde(default)]
    import: Vec<String>,
    prefix: Option<String>,
    queue_group: Option<String>,
    jetstream: Option<String>,
    consumer: Option<String>,
    #[serde(default = "default_buffer")]
    buffer: usize,
    #[serde(default = "default_import_buffer")]
    import_buffer: usize,
    #[serde(default = "default_flush_timeout")]
    flush_timeout: HumanDuration,
    #[serde(default = "default_ack_wait")]
    ack_wait: HumanDuration,
}

fn default_buffer() -> usize {
    10_000
}

fn default_import_buffer() -> usize {
    1_024
}

/// Below the host's default `shutdown_timeout` (5 s).
fn default_flush_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}

fn default_ack_wait() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// A checked config.
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawConfig")]
pub(crate) struct Config {
    /// The NATS server, such as `nats://127.0.0.1:4222`.
    pub url: String,
    /// Local topic patterns forwarded to NATS.
    pub export: Vec<Pattern>,
    /// NATS subject patterns (under `prefix`) published locally.
    pub import: Vec<Pattern>,
    /// Subject namespace on the NATS side, without the trailing dot.
    pub prefix: Option<String>,
    /// Import as a member of this queue group (work sharing).
    pub queue_group: Option<String>,
    /// Stream name: export and import through JetStream.
    pub jetstream: Option<String>,
    /// Durable consumer name base for JetStream imports.
    pub consumer: Option<String>,
    /// Exported events held while the server is away.
    pub buffer: usize,
    /// Imported messages waiting for the plugin's thread.
    pub import_buffer: usize,
    /// How long `stop` waits for held exports to reach the server.
    pub flush_timeout: Duration,
    /// JetStream: how long an unacknowledged message waits for redelivery.
    pub ack_wait: Duration,
}

impl Config {
    /// The NATS subject for a local topic.
    pub(crate) fn subject(&self, topic: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}.{topic}"),
            None => topic.to_owned(),
        }
    }

    /// The local topic for a NATS subject (the prefix removed).
    pub(crate) fn topic<'s>(&self, subject: &'s str) -> &'s str {
        match &self.prefix {
            Some(prefix) => subject
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .unwrap_or(subject),
            None => subject,
        }
    }
}

/// JetStream names (streams, consumers) are single tokens.
fn check_name(key: &str, name: &str) -> Result<(), String> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || ".*>/\\".contains(c))
    {
        return Err(format!(
            "`{key}` must be a non-empty name without spaces, `.`, `*`, `>`, `/` or `\\`, got {name:?}"
        ));
    }
    Ok(())
}

fn patterns(key: &str, texts: Vec<String>) -> Result<Vec<Pattern>, String> {
    texts
        .iter()
        .map(|text| Pattern::parse(text).map_err(|e| format!("`{key}`: {e}")))
        .collect()
}

impl TryFrom<RawConfig> for Config {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Config, String> {
        raw.url
            .parse::<async_nats::ServerAddr>()
            .map_err(|e| format!("`url` {:?}: {e}", raw.url))?;
        if raw.export.is_empty() && raw.import.is_empty() {
            return Err("nothing to bridge: set `export` (local topic patterns sent to NATS), `import` (NATS subject patterns published here), or both".to_owned());
        }
        let export = patterns("export", raw.export)?;
        let import = patterns("import", raw.import)?;
        if let Some(prefix) = &raw.prefix {
            validate_topic(prefix).map_err(|e| format!("`prefix`: {e}"))?;
        }
        if let Some(group) = &raw.queue_group {
            check_name("queue_group", group)?;
        }
        if let Some(stream) = &raw.jetstream {
            check_name("jetstream", stream)?;
        }
        if let Some(consumer) = &raw.consumer {
            check_name("consumer", consumer)?;
            if raw.jetstream.is_none() {
                return Err("`consumer` names a JetStream consumer: set `jetstream` too".to_owned());
            }
        }
        let consumer = match (&raw.jetstream, &raw.consumer, &raw.queue_group) {
            (Some(_), Some(consumer), _) => Some(consumer.clone()),
            // The group shares one durable consumer, which splits the work.
            (Some(_), None, Some(group)) => Some(group.clone()),
            (Some(_), None, None) if !import.is_empty() => {
                return Err("`jetstream` imports need `consumer`: a durable consumer name unique to this host (or `queue_group` to share one between hosts)".to_owned());
            }
            _ => None,
        };
        if raw.buffer == 0 || raw.import_buffer == 0 {
            return Err("`buffer` and `import_buffer` must be at least 1".to_owned());
        }
        if raw.ack_wait.0 < Duration::from_millis(1) {
            return Err("`ack_wait` must be at least 1ms".to_owned());
        }
        Ok(Config {
            url: raw.url,
            export,
            import,
            prefix: raw.prefix,
            queue_group: raw.queue_group,
            jetstream: raw.jetstream,
            consumer,
            buffer: raw.buffer,
            import_buffer: raw.import_buffer,
            flush_timeout: raw.flush_timeout.0,
            ack_wait: raw.ack_wait.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<Config, String> {
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    #[test]
    fn a_minimal_config_takes_defaults() {
        let config =
            parse(json!({"url": "nats://127.0.0.1:4222", "export": ["orders.>"]})).unwrap();
        assert_eq!(config.buffer, 10_000);
        assert_eq!(config.subject("orders.created"), "orders.created");
        assert!(config.consumer.is_none());
    }

    #[test]
    fn the_prefix_applies_both_ways() {
        let config =
            parse(json!({"url": "n:4222", "import": ["orders.>"], "prefix": "fleet"})).unwrap();
        assert_eq!(config.subject("orders.created"), "fleet.orders.created");
        assert_eq!(config.topic("fleet.orders.created"), "orders.created");
        assert_eq!(config.topic("fleetx.orders"), "fleetx.orders");
    }

    #[test]
    fn mistakes_are_refused_with_the_key_named() {
        let cases = [
            (
                json!({"url": "nats://h:1", "export": ["a.>"], "bogus": 1}),
                "unknown field `bogus`",
            ),
            (json!({"url": "nats://h:1"}), "nothing to bridge"),
            (
                json!({"url": "http://h:1", "export": ["a"]}),
                "`url` \"http://h:1\"",
            ),
            (
                json!({"url": "nats://h:1", "export": ["a.>.b"]}),
                "`export`: invalid pattern `a.>.b`",
            ),
            (
                json!({"url": "nats://h:1", "export": ["a"], "prefix": "x.*"}),
                "`prefix`",
            ),
            (
                json!({"url": "nats://h:1", "import": ["a"], "jetstream": "S"}),
                "need `consumer`",
            ),
            (
                json!({"url": "nats://h:1", "import": ["a"], "jetstream": "S.x", "consumer": "c"}),
                "`jetstream` must be",
            ),
            (
                json!({"url": "nats://h:1", "import": ["a"], "consumer": "c"}),
                "set `jetstream` too",
            ),
            (
                json!({"url": "nats://h:1", "export": ["a"], "buffer": 0}),
                "at least 1",
            ),
        ];
        for (config, expected) in cases {
            let error = parse(config.clone()).map(|_| ()).unwrap_err();
            assert!(error.contains(expected), "{config}: {error}");
        }
    }

    #[test]
    fn a_queue_group_names_the_shared_jetstream_consumer() {
        let config = parse(json!({"url": "nats://h:1", "import": ["a.>"], "jetstream": "S", "queue_group": "workers"})).unwrap();
        assert_eq!(config.consumer.as_deref(), Some("workers"));
    }
}
