//! `plugins.toml`: parsed with serde + toml, validated while it is read, so
//! every error names the file, line and column of the value at fault.
//! Relative paths (`plugin_dirs`, library paths) are relative to the file.

use plughost_api::topic::Pattern;
use serde::Deserialize;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// A config that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {}: {cause}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// The file is not valid TOML, or a value is not valid.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// Several values are not valid: every one of them, in file order, one
    /// per line.
    #[error("{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Several {
        /// Each problem, an [`ConfigError::Invalid`].
        errors: Vec<ConfigError>,
    },
}

/// What a full mailbox does with a new event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Overflow {
    /// The publisher waits for room: nothing is lost.
    Block,
    /// The oldest queued event is dropped (and counted) to make room.
    DropOldest,
    /// The new event is dropped (and counted).
    DropNewest,
}

impl Overflow {
    /// The name used in `plugins.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::Block => "block",
            Overflow::DropOldest => "drop_oldest",
            Overflow::DropNewest => "drop_newest",
        }
    }
}

/// A parsed, validated `plugins.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// The `[host]` section.
    pub host: HostConfig,
    /// The `[[plugin]]` tables, in file order (enabled or not).
    pub plugins: Vec<PluginConfig>,
    /// The `[status]` section; no status server when absent.
    pub status: Option<StatusConfig>,
    /// The `[state]` section (Lightbus-style state events).
    pub state: StateConfig,
    /// The `[metrics]` section (Lightbus-style per-event metrics events).
    pub metrics: MetricsConfig,
}

/// The `[status]` section: RoadRunner-style status endpoints.
#[derive(Debug, Clone)]
pub struct StatusConfig {
    /// Where the HTTP server listens (port 0: any free port, logged at start).
    pub address: std::net::SocketAddr,
    /// How long a plugin may take to answer a health, readiness or jobs check.
    pub check_timeout: Duration,
    /// What `/health` and `/ready` answer while the host shuts down.
    pub unavailable_status_code: u16,
    /// Whether `POST /events/TOPIC` publishes its body.
    pub ingest: bool,
    /// The largest body `POST /events/TOPIC` takes (bigger: 413).
    pub ingest_max_bytes: usize,
    /// How long a plugin route may take before the server answers 504.
    pub route_timeout: Duration,
}

/// The `[state]` section: `internal.state.worker_*` events.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// Whether state events are published.
    pub enabled: bool,
    /// Whether `worker_ping` is published every `ping_interval`.
    pub ping_enabled: bool,
    /// Time between pings.
    pub ping_interval: Duration,
    /// The `process_name` in every event (default: `plughost-<pid>`).
    pub process_name: String,
}

/// The `[metrics]` section: `internal.metrics.event_*` events.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Whether per-event metrics events are published.
    pub enabled: bool,
}

/// The `[host]` section.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where bare library names are looked up, already made absolute.
    pub plugin_dirs: Vec<PathBuf>,
    /// Default mailbox capacity.
    pub queue_capacity: NonZeroUsize,
    /// Default overflow policy.
    pub overflow: Overflow,
    /// How long a graceful shutdown may drain queues.
    pub shutdown_timeout: Duration,
    /// Where the control socket listens (made absolute); none when absent.
    pub control_socket: Option<PathBuf>,
}

/// One `[[plugin]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// Unique instance name.
    pub name: String,
    /// Library as written: a bare name or a path.
    pub library: String,
    /// Subscriptions.
    pub subscribe: Vec<Pattern>,
    /// Whether the instance runs.
    pub enabled: bool,
    /// Mailbox capacity.
    pub queue_capacity: NonZeroUsize,
    /// Overflow policy.
    pub overflow: Overflow,
    /// The free `[plugin.config]` table, as JSON.
    pub config: serde_json::Value,
    /// Where the instance runs.
    pub isolation: Isolation,
    /// When a failed instance is restarted.
    pub restart: Restart,
    /// More restarts than this inside `restart_window` stop it for good (flapping).
    pub max_restarts: u32,
    /// The window of the flapping rule.
    pub restart_window: Duration,
    /// A handler running longer than this trips the watchdog (off when `None`).
    pub handler_timeout: Option<Duration>,
    /// The library file's expected SHA-256 (lowercase hex), checked before loading.
    pub sha256: Option<String>,
    /// Load the library even when it or its directory is writable by others.
    pub allow_insecure_permissions: bool,
    /// How often the plugin's `tick` runs (never when `None`).
    pub tick_interval: Option<Duration>,
}

/// Where an instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// A thread of the host process (fast; a crash takes the host down).
    Thread,
    /// A child `plughost` process of its own (a crash is contained).
    Process,
}

impl Isolation {
    /// The name used in `plugins.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Thread => "thread",
            Isolation::Process => "process",
        }
    }
}

/// When a failed instance is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Never: a failed instance stays failed.
    Never,
    /// After a panic or a crash (the default).
    OnFailure,
    /// Also after a process-isolated plugin exits by itself.
    Always,
}

impl PluginConfig {
    /// What must hold of this plugin's library file before it is loaded.
    pub fn trust(&self) -> crate::library::Trust {
        crate::library::Trust {
            sha256: self.sha256.clone(),
            allow_insecure_permissions: self.allow_insecure_permissions,
        }
    }
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        })?;
        Config::parse(path, &text)
    }

    /// Validate `text` as if read from `path`. A file that is not valid
    /// TOML, or has a value of the wrong type or an unknown key, fails at the
    /// first such problem (the parser stops there); past that, every invalid
    /// value is reported, as [`ConfigError::Several`] when there are more
    /// than one.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let at = |offset: usize, message: String| {
            let (line, column) = line_column(text, offset);
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        };
        let file: File = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |span| span.start);
            let message: Vec<&str> = e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            at(offset, message.join("; "))
        })?;

        // Every invalid value found: (offset in the text, message).
        let mut problems: Vec<(usize, String)> = Vec::new();
        let mut duration = |value: Option<Spanned<String>>, default: Duration| match value {
            None => default,
            Some(value) => HumanDuration::parse(value.get_ref()).unwrap_or_else(|message| {
                problems.push((value.span().start, message));
                default
            }),
        };
        let shutdown_timeout = duration(file.host.shutdown_timeout, Duration::from_secs(5));
        let durations: Vec<_> = file
            .plugin
            .iter()
            .map(|p| {
                (
                    duration(p.restart_window.clone(), Duration::from_secs(60)),
                    duration(p.handler_timeout.clone(), Duration::ZERO),
                    duration(p.tick_interval.clone(), Duration::ZERO),
                )
            })
            .collect();
        let status_durations = file.status.as_ref().map(|section| {
            (
                duration(section.check_timeout.clone(), Duration::from_secs(1)),
                duration(section.route_timeout.clone(), Duration::from_secs(5)),
            )
        });
        let ping_interval = duration(file.state.ping_interval.clone(), Duration::from_secs(60));

        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_owned());
        let host = HostConfig {
            plugin_dirs: match file.host.plugin_dirs {
                Some(dirs) => dirs.iter().map(|d| clean(&base.join(d))).collect(),
                None => vec![base.clone()],
            },
            queue_capacity: file
                .host
                .queue_capacity
                .unwrap_or(NonZeroUsize::new(1024).unwrap()),
            overflow: file.host.overflow.unwrap_or(Overflow::Block),
            shutdown_timeout,
            control_socket: file
                .host
                .control_socket
                .as_deref()
                .map(|p| clean(&base.join(p))),
        };

        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut plugins = Vec::with_capacity(file.plugin.len());
        for (p, (restart_window, handler_timeout, tick_interval)) in
            file.plugin.into_iter().zip(durations)
        {
            let span = p.name.span();
            let name = p.name.into_inner();
            if let Err(reason) = check_instance_name(&name) {
                problems.push((
                    span.start,
                    format!("invalid plugin name `{name}`: {reason}"),
                ));
            } else if let Some(first) = seen.get(&name) {
                let (line, _) = line_column(text, *first);
                problems.push((
                    span.start,
                    format!("duplicate plugin name `{name}` (first defined on line {line})"),
                ));
            } else {
                seen.insert(name.clone(), span.start);
            }
            if p.library.get_ref().trim().is_empty() {
                problems.push((
                    p.library.span().start,
                    "`library` must not be empty".to_owned(),
                ));
            }
            let mut subscribe = Vec::with_capacity(p.subscribe.len());
            for pattern in &p.subscribe {
                match Pattern::parse(pattern.get_ref()) {
                    Ok(parsed) => subscribe.push(parsed),
                    Err(e) => problems.push((pattern.span().start, e.to_string())),
                }
            }
            let sha256 = match p.sha256 {
                None => None,
                Some(pin) => {
                    let hex = pin.get_ref().to_ascii_lowercase();
                    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                        problems.push((
                            pin.span().start,
                            "`sha256` must be 64 hexadecimal digits".to_owned(),
                        ));
                    }
                    Some(hex)
                }
            };
            plugins.push(PluginConfig {
                name,
                library: p.library.into_inner(),
                subscribe,
                enabled: p.enabled,
                queue_capacity: p.queue_capacity.unwrap_or(host.queue_capacity),
                overflow: p.overflow.unwrap_or(host.overflow),
                config: p
                    .config
                    .map_or(serde_json::Value::Object(Default::default()), toml_to_json),
                isolation: p.isolation.unwrap_or(Isolation::Thread),
                restart: p.restart.unwrap_or(Restart::OnFailure),
                max_restarts: p.max_restarts.unwrap_or(5),
                restart_window,
                handler_timeout: Some(handler_timeout).filter(|d| !d.is_zero()),
                sha256,
                allow_insecure_permissions: p.allow_insecure_permissions,
                tick_interval: Some(tick_interval).filter(|d| !d.is_zero()),
            });
        }
        let status = match (file.status, status_durations) {
            (Some(section), Some((check_timeout, route_timeout))) => {
                let code = section
                    .unavailable_status_code
                    .unwrap_or_else(|| Spanned::new(0..0, 503));
                if !(100..=599).contains(code.get_ref()) {
                    problems.push((
                        code.span().start,
                        format!("invalid HTTP status code {}", code.get_ref()),
                    ));
                }
                let address = section
                    .address
                    .unwrap_or_else(|| Spanned::new(0..0, "127.0.0.1:2114".to_owned()));
                let parsed = address.get_ref().parse().unwrap_or_else(|_| {
                    problems.push((
                        address.span().start,
                        format!(
                            "invalid address `{}`: write IP:PORT, such as \"127.0.0.1:2114\"",
                            address.get_ref()
                        ),
                    ));
                    std::net::SocketAddr::from(([127, 0, 0, 1], 2114))
                });
                Some(StatusConfig {
                    address: parsed,
                    check_timeout,
                    unavailable_status_code: *code.get_ref(),
                    ingest: section.ingest,
                    ingest_max_bytes: section.ingest_max_bytes.unwrap_or(1 << 20),
                    route_timeout,
                })
            }
            _ => None,
        };
        let state = StateConfig {
            enabled: file.state.enabled,
            ping_enabled: file.state.ping_enabled,
            ping_interval,
            process_name: file
                .state
                .process_name
                .unwrap_or_else(|| format!("plughost-{}", std::process::id())),
        };
        if state.ping_interval.is_zero() {
            problems.push((0, "[state] ping_interval must be more than zero".to_owned()));
        }
        if !problems.is_empty() {
            problems.sort_by_key(|(offset, _)| *offset);
            let mut errors: Vec<ConfigError> = problems
                .into_iter()
                .map(|(offset, message)| at(offset, message))
                .collect();
            return Err(match errors.len() {
                1 => errors.remove(0),
                _ => ConfigError::Several { errors },
            });
        }
        let metrics = MetricsConfig {
            enabled: file.metrics.enabled,
        };
        Ok(Config {
            path: path.to_owned(),
            host,
            plugins,
            status,
            state,
            metrics,
        })
    }

    /// The directory relative paths in this config are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned())
    }
}

/// `path` without `.` components (`/etc/./x` is `/etc/x`), for readable messages.
pub(crate) fn clean(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

fn check_instance_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it must not be empty");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        return Err(
            "use letters, digits, `-` and `_` (it appears in topics, URLs and metric labels)",
        );
    }
    Ok(())
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn toml_to_json(value: toml::Value) -> serde_json::Value {
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

/// A duration written as `"250ms"`, `"5s"`, `"1m"` or `"2h"`: the grammar
/// plugins' configs share (`plughost_api::HumanDuration`).
pub use plughost_api::HumanDuration;

// The file as written. Every table refuses unknown keys.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    host: HostSection,
    #[serde(default)]
    plugin: Vec<PluginSection>,
    status: Option<StatusSection>,
    #[serde(default)]
    state: StateSection,
    #[serde(default)]
    metrics: MetricsSection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusSection {
    address: Option<Spanned<String>>,
    check_timeout: Option<Spanned<String>>,
    unavailable_status_code: Option<Spanned<u16>>,
    #[serde(default)]
    ingest: bool,
    ingest_max_bytes: Option<usize>,
    route_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct StateSection {
    enabled: bool,
    ping_enabled: bool,
    ping_interval: Option<Spanned<String>>,
    process_name: Option<String>,
}

impl Default for StateSection {
    fn default() -> Self {
        StateSection {
            enabled: false,
            ping_enabled: true,
            ping_interval: None,
            process_name: None,
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MetricsSection {
    enabled: bool,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostSection {
    plugin_dirs: Option<Vec<PathBuf>>,
    queue_capacity: Option<NonZeroUsize>,
    overflow: Option<Overflow>,
    shutdown_timeout: Option<Spanned<String>>,
    control_socket: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginSection {
    name: Spanned<String>,
    library: Spanned<String>,
    #[serde(default)]
    subscribe: Vec<Spanned<String>>,
    #[serde(default = "yes")]
    enabled: bool,
    queue_capacity: Option<NonZeroUsize>,
    overflow: Option<Overflow>,
    config: Option<toml::Value>,
    isolation: Option<Isolation>,
    restart: Option<Restart>,
    max_restarts: Option<u32>,
    restart_window: Option<Spanned<String>>,
    handler_timeout: Option<Spanned<String>>,
    sha256: Option<Spanned<String>>,
    #[serde(default)]
    allow_insecure_permissions: bool,
    tick_interval: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("/etc/plughost/plugins.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_config_reads_with_defaults_and_overrides() {
        let config = parse(
            r#"
[host]
plugin_dirs = ["target/release"]
queue_capacity = 64
overflow = "drop_newest"
shutdown_timeout = "250ms"

[[plugin]]
name = "audit"
library = "logger"
subscribe = ["orders.>", "plughost.plugin.*"]
queue_capacity = 4096
overflow = "drop_oldest"
[plugin.config]
path = "audit.log"
nested = { a = [1, 2] }

[[plugin]]
name = "count"
library = "./libcounter.so"
enabled = false
"#,
        )
        .unwrap();
        assert_eq!(
            config.host.plugin_dirs,
            vec![PathBuf::from("/etc/plughost/target/release")]
        );
        assert_eq!(config.host.shutdown_timeout, Duration::from_millis(250));
        let audit = &config.plugins[0];
        assert_eq!(audit.queue_capacity.get(), 4096);
        assert_eq!(audit.overflow, Overflow::DropOldest);
        assert_eq!(audit.subscribe.len(), 2);
        assert_eq!(
            audit.config,
            serde_json::json!({"path": "audit.log", "nested": {"a": [1, 2]}})
        );
        let count = &config.plugins[1];
        assert!(!count.enabled);
        assert_eq!(count.queue_capacity.get(), 64);
        assert_eq!(count.overflow, Overflow::DropNewest);
        assert_eq!(count.config, serde_json::json!({}));
    }

    #[test]
    fn unknown_keys_name_line_and_column() {
        let err = parse("[host]\nqueue_capacity = 8\nqueue_capacty = 8\n").unwrap_err();
        assert!(
            err.starts_with("/etc/plughost/plugins.toml:3:1: unknown field `queue_capacty`"),
            "{err}"
        );
        let err = parse("[[plugin]]\nname = \"a\"\nlibrary = \"x\"\n  colour = 1\n").unwrap_err();
        assert!(
            err.starts_with("/etc/plughost/plugins.toml:4:3: unknown field `colour`"),
            "{err}"
        );
    }

    #[test]
    fn malformed_toml_names_line_and_column() {
        let err = parse("[host]\nqueue_capacity = = 3\n").unwrap_err();
        assert!(
            err.starts_with("/etc/plughost/plugins.toml:2:18: "),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn bad_values_name_the_value() {
        let err = parse("[host]\nshutdown_timeout = \"5 parsecs\"\n").unwrap_err();
        assert!(
            err.starts_with("/etc/plughost/plugins.toml:2:20: invalid duration `5 parsecs`"),
            "{err}"
        );
        let err = parse("[host]\nqueue_capacity = 0\n").unwrap_err();
        assert!(
            err.starts_with("/etc/plughost/plugins.toml:2:18: "),
            "{err}"
        );
        assert!(err.contains("nonzero"), "{err}");
        let err =
            parse("[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nsubscribe = [\"ok\", \"a.>.b\"]\n")
                .unwrap_err();
        assert!(
            err.starts_with("/etc/plughost/plugins.toml:4:20: invalid pattern `a.>.b`"),
            "{err}"
        );
        let err = parse("[host]\noverflow = \"spill\"\n").unwrap_err();
        assert!(
            err.starts_with("/etc/plughost/plugins.toml:2:12: unknown variant `spill`"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_names_point_at_both() {
        let err = parse("[[plugin]]\nname = \"a\"\nlibrary = \"x\"\n\n[[plugin]]\nname = \"a\"\nlibrary = \"y\"\n")
            .unwrap_err();
        assert_eq!(
            err,
            "/etc/plughost/plugins.toml:6:8: duplicate plugin name `a` (first defined on line 2)"
        );
    }
}

/// Property tests: no text, however broken, makes config parsing panic.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const VALID: &str = "[host]\nqueue_capacity = 8\nshutdown_timeout = \"5s\"\n[status]\naddress = \"127.0.0.1:0\"\n\
        [[plugin]]\nname = \"a\"\nlibrary = \"x\"\nsubscribe = [\"a.>\"]\nsha256 = \"00\"\n[plugin.config]\nk = [1, {a = 2}]\n";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_text_is_parsed_or_refused_without_panicking(text in "\\PC{0,200}") {
            let _ = Config::parse(Path::new("p.toml"), &text);
        }

        #[test]
        fn a_mangled_valid_config_is_parsed_or_refused_without_panicking(
            cut in 0..VALID.len(), insert in "[\\[\\]=\".a-z0-9{}\\n]{0,8}", keep in 0..VALID.len(),
        ) {
            let mut text = VALID.to_owned();
            let (at, keep) = (cut.min(text.len()), keep.min(text.len()));
            if text.is_char_boundary(at) {
                text.insert_str(at, &insert);
            }
            if text.is_char_boundary(keep) {
                text.truncate(keep.max(at));
            }
            match Config::parse(Path::new("p.toml"), &text) {
                Err(ConfigError::Several { errors }) => {
                    prop_assert!(errors.len() > 1);
                    for e in errors {
                        prop_assert!(matches!(e, ConfigError::Invalid { .. }), "each problem is an Invalid: {}", e);
                        prop_assert!(!e.to_string().contains('\n'), "one line per problem: {}", e);
                    }
                }
                Err(e) => prop_assert!(!e.to_string().contains('\n'), "one line: {}", e),
                Ok(_) => {}
            }
        }
    }
}
