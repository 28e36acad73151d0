//! `plugins.toml`: parsed with serde + toml, validated while it is read, so
//! every error names the file, line and column of the value at fault.
//! Relative paths (`plugin_dirs`, library paths) are relative to the file.

mod changes;
mod checks;
mod file;
pub mod limits;
mod load;

use plughost_api::topic::Pattern;
use serde::Deserialize;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use limits::MAX_INSTANCE_NAME_BYTES;

/// A duration written as `"250ms"`, `"5s"`, `"1m"` or `"2h"`: the grammar
/// plugins' configs share (`plughost_api::HumanDuration`).
pub use plughost_api::HumanDuration;

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
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Connections served at once; more are refused at once.
    pub max_connections: usize,
    /// Route calls waiting for one instance at once; more answer 503 at once.
    pub route_max_pending: usize,
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
    /// The largest single event (payload bytes) accepted from anywhere.
    pub max_event_bytes: usize,
    /// The longest command line the control socket reads.
    pub control_max_line_bytes: usize,
    /// Control connections served at once; more are refused at once.
    pub control_max_connections: usize,
    /// How long a control connection may wait for its next command line.
    pub control_idle_timeout: Duration,
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
    /// How long `init` may take before the instance counts as failed.
    pub start_timeout: Duration,
    /// Whether `plughost run` needs this instance: when it cannot start at
    /// the host's start, the host does not start. When not required, it
    /// fails under its restart policy and the others start.
    pub required: bool,
    /// Whether the instance receives the events it published itself (when
    /// its subscriptions match them); off by default.
    pub echo: bool,
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
    /// After any failure: a panic, a crash, a process-isolated plugin's
    /// process ending without being told to (the default).
    OnFailure,
    /// The same as `on-failure`, accepted for configs that say it: an
    /// instance never ends by itself without failing, so there is nothing
    /// more to restart.
    Always,
}

/// `path` without `.` components (`/etc/./x` is `/etc/x`), for readable messages.
pub(crate) fn clean(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests;

/// Property tests: a config generated with random values, valid or not,
/// parses to exactly what it says, or is refused with one line per invalid
/// value, in file order, at that value's line and column; a valid config
/// mangled at random parses to what the mangled text says, or is refused
/// with lines that point inside the text; no text makes parsing panic.
#[cfg(test)]
mod properties;
