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

impl PluginConfig {
    /// What must hold of this plugin's library file before it is loaded.
    pub fn trust(&self) -> crate::library::Trust {
        crate::library::Trust {
            sha256: self.sha256.clone(),
            allow_insecure_permissions: self.allow_insecure_permissions,
            thread_isolation: self.isolation == Isolation::Thread,
        }
    }
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read;
        let read = |cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(read)?
            .take(limits::MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read)?;
        if text.len() as u64 > limits::MAX_CONFIG_BYTES {
            return Err(read(std::io::Error::other(format!(
                "larger than {} MiB, the most a config file may be",
                limits::MAX_CONFIG_BYTES >> 20
            ))));
        }
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
            // The parser says nothing when the text ends where a value is due.
            let message = match message.is_empty() {
                true if offset >= text.len() => {
                    "the file ends where a value is expected".to_owned()
                }
                true => "invalid TOML".to_owned(),
                false => message.join("; "),
            };
            at(offset, message)
        })?;

        let mut checks = Checks::default();
        let shutdown_timeout = checks.duration(
            "shutdown_timeout",
            &file.host.shutdown_timeout,
            Duration::from_secs(5),
            Zero::Allowed,
        );
        let durations: Vec<_> = file
            .plugin
            .iter()
            .map(|p| {
                (
                    checks.duration(
                        "restart_window",
                        &p.restart_window,
                        Duration::from_secs(60),
                        Zero::Refused,
                    ),
                    checks.duration(
                        "handler_timeout",
                        &p.handler_timeout,
                        Duration::ZERO,
                        Zero::Off,
                    ),
                    checks.duration("tick_interval", &p.tick_interval, Duration::ZERO, Zero::Off),
                    checks.duration(
                        "start_timeout",
                        &p.start_timeout,
                        Duration::from_secs(30),
                        Zero::Refused,
                    ),
                )
            })
            .collect();
        let status_durations = file.status.as_ref().map(|section| {
            let mut timeout = |key, value, default| {
                checks.duration(key, value, Duration::from_secs(default), Zero::Refused)
            };
            (
                timeout("check_timeout", &section.check_timeout, 1),
                timeout("route_timeout", &section.route_timeout, 5),
                timeout("header_timeout", &section.header_timeout, 10),
                timeout("idle_timeout", &section.idle_timeout, 60),
            )
        });
        let ping_interval = checks.duration(
            "ping_interval",
            &file.state.ping_interval,
            Duration::from_secs(60),
            Zero::Refused,
        );
        let queue_capacity = checks.size(&limits::QUEUE_CAPACITY, &file.host.queue_capacity);
        let max_event_bytes = checks.size(&limits::MAX_EVENT_BYTES, &file.host.max_event_bytes);
        let control_max_line_bytes = checks.size(
            &limits::CONTROL_MAX_LINE_BYTES,
            &file.host.control_max_line_bytes,
        );
        let control_max_connections = checks.size(
            &limits::CONTROL_MAX_CONNECTIONS,
            &file.host.control_max_connections,
        );
        let control_idle_timeout = checks.duration(
            "control_idle_timeout",
            &file.host.control_idle_timeout,
            Duration::from_secs(60),
            Zero::Refused,
        );
        if let Some(extra) = file.plugin.get(limits::MAX_PLUGINS) {
            checks.problem(
                extra.name.span().start,
                format!(
                    "at most {} [[plugin]] tables (each is a thread and a mailbox): this is one more",
                    limits::MAX_PLUGINS
                ),
            );
        }

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
            queue_capacity: nonzero(queue_capacity),
            overflow: file.host.overflow.unwrap_or(Overflow::Block),
            shutdown_timeout,
            control_socket: file
                .host
                .control_socket
                .as_deref()
                .map(|p| clean(&base.join(p))),
            max_event_bytes,
            control_max_line_bytes,
            control_max_connections,
            control_idle_timeout,
        };

        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut plugins = Vec::with_capacity(file.plugin.len());
        for (p, (restart_window, handler_timeout, tick_interval, start_timeout)) in
            file.plugin.into_iter().zip(durations)
        {
            let queue_capacity = match &p.queue_capacity {
                Some(_) => nonzero(checks.size(&limits::QUEUE_CAPACITY, &p.queue_capacity)),
                None => host.queue_capacity,
            };
            let max_restarts = checks.size(&limits::MAX_RESTARTS, &p.max_restarts) as u32;
            let span = p.name.span();
            let name = p.name.into_inner();
            if let Err(reason) = check_instance_name(&name) {
                checks.problem(
                    span.start,
                    format!("invalid plugin name `{name}`: {reason}"),
                );
            } else if let Some(first) = seen.get(&name) {
                let (line, _) = line_column(text, *first);
                checks.problem(
                    span.start,
                    format!("duplicate plugin name `{name}` (first defined on line {line})"),
                );
            } else {
                seen.insert(name.clone(), span.start);
            }
            if p.library.get_ref().trim().is_empty() {
                checks.problem(
                    p.library.span().start,
                    "`library` must not be empty".to_owned(),
                );
            }
            let mut subscribe = Vec::with_capacity(p.subscribe.len());
            for pattern in &p.subscribe {
                match Pattern::parse(pattern.get_ref()) {
                    Ok(parsed) => subscribe.push(parsed),
                    Err(e) => checks.problem(pattern.span().start, e.to_string()),
                }
            }
            let sha256 = match p.sha256 {
                None => None,
                Some(pin) => {
                    let hex = pin.get_ref().to_ascii_lowercase();
                    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                        checks.problem(
                            pin.span().start,
                            "`sha256` must be 64 hexadecimal digits".to_owned(),
                        );
                    }
                    Some(hex)
                }
            };
            plugins.push(PluginConfig {
                name,
                library: p.library.into_inner(),
                subscribe,
                enabled: p.enabled,
                queue_capacity,
                overflow: p.overflow.unwrap_or(host.overflow),
                config: p
                    .config
                    .map_or(serde_json::Value::Object(Default::default()), toml_to_json),
                isolation: p.isolation.unwrap_or(Isolation::Thread),
                restart: p.restart.unwrap_or(Restart::OnFailure),
                max_restarts,
                restart_window,
                handler_timeout: Some(handler_timeout).filter(|d| !d.is_zero()),
                sha256,
                allow_insecure_permissions: p.allow_insecure_permissions,
                tick_interval: Some(tick_interval).filter(|d| !d.is_zero()),
                start_timeout,
                required: p.required,
            });
        }
        let status = match (file.status, status_durations) {
            (Some(section), Some((check_timeout, route_timeout, header_timeout, idle_timeout))) => {
                let code = section
                    .unavailable_status_code
                    .unwrap_or_else(|| Spanned::new(0..0, 503));
                if !(100..=599).contains(code.get_ref()) {
                    checks.problem(
                        code.span().start,
                        format!("invalid HTTP status code {}", code.get_ref()),
                    );
                }
                let address = section
                    .address
                    .unwrap_or_else(|| Spanned::new(0..0, "127.0.0.1:2114".to_owned()));
                let parsed = address.get_ref().parse().unwrap_or_else(|_| {
                    checks.problem(
                        address.span().start,
                        format!(
                            "invalid address `{}`: write IP:PORT, such as \"127.0.0.1:2114\"",
                            address.get_ref()
                        ),
                    );
                    std::net::SocketAddr::from(([127, 0, 0, 1], 2114))
                });
                Some(StatusConfig {
                    address: parsed,
                    check_timeout,
                    unavailable_status_code: *code.get_ref(),
                    ingest: section.ingest,
                    ingest_max_bytes: checks
                        .size(&limits::INGEST_MAX_BYTES, &section.ingest_max_bytes),
                    route_timeout,
                    header_timeout,
                    idle_timeout,
                    max_connections: checks
                        .size(&limits::MAX_CONNECTIONS, &section.max_connections),
                    route_max_pending: checks
                        .size(&limits::ROUTE_MAX_PENDING, &section.route_max_pending),
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
        let mut problems = checks.problems;
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

/// What a reload applies outside `[[plugin]]`: `[host] plugin_dirs`,
/// `queue_capacity`, `overflow` (through the instances they change),
/// `shutdown_timeout`, `max_event_bytes` and the `control_*` limits take
/// effect at once (for control connections accepted from then on); `[host] control_socket`, `[status]`, `[state]` and
/// `[metrics]` are set up at start and need a restart.
impl Config {
    /// The keys that differ in `new` but that a reload cannot apply, as
    /// `[section] key` (or `[section]` for a section added or removed).
    pub fn restart_needed(&self, new: &Config) -> Vec<String> {
        let mut keys = Vec::new();
        let mut differs = |section: &str, key: &str, changed: bool| {
            if changed {
                keys.push(format!("[{section}] {key}").trim_end().to_owned());
            }
        };
        // Destructured, so a key added later must be sorted here.
        let HostConfig {
            plugin_dirs: _,
            queue_capacity: _,
            overflow: _,
            shutdown_timeout: _,
            control_socket,
            max_event_bytes: _,
            control_max_line_bytes: _,
            control_max_connections: _,
            control_idle_timeout: _,
        } = &new.host;
        differs(
            "host",
            "control_socket",
            *control_socket != self.host.control_socket,
        );
        match (&self.status, &new.status) {
            (Some(old), Some(new)) => {
                let StatusConfig {
                    address,
                    check_timeout,
                    unavailable_status_code,
                    ingest,
                    ingest_max_bytes,
                    route_timeout,
                    header_timeout,
                    idle_timeout,
                    max_connections,
                    route_max_pending,
                } = new;
                differs("status", "address", *address != old.address);
                differs(
                    "status",
                    "check_timeout",
                    *check_timeout != old.check_timeout,
                );
                differs(
                    "status",
                    "unavailable_status_code",
                    *unavailable_status_code != old.unavailable_status_code,
                );
                differs("status", "ingest", *ingest != old.ingest);
                differs(
                    "status",
                    "ingest_max_bytes",
                    *ingest_max_bytes != old.ingest_max_bytes,
                );
                differs(
                    "status",
                    "route_timeout",
                    *route_timeout != old.route_timeout,
                );
                differs(
                    "status",
                    "header_timeout",
                    *header_timeout != old.header_timeout,
                );
                differs("status", "idle_timeout", *idle_timeout != old.idle_timeout);
                differs(
                    "status",
                    "max_connections",
                    *max_connections != old.max_connections,
                );
                differs(
                    "status",
                    "route_max_pending",
                    *route_max_pending != old.route_max_pending,
                );
            }
            (None, None) => {}
            _ => differs("status", "", true),
        }
        let StateConfig {
            enabled,
            ping_enabled,
            ping_interval,
            process_name,
        } = &new.state;
        differs("state", "enabled", *enabled != self.state.enabled);
        differs(
            "state",
            "ping_enabled",
            *ping_enabled != self.state.ping_enabled,
        );
        differs(
            "state",
            "ping_interval",
            *ping_interval != self.state.ping_interval,
        );
        differs(
            "state",
            "process_name",
            *process_name != self.state.process_name,
        );
        let MetricsConfig { enabled } = &new.metrics;
        differs("metrics", "enabled", *enabled != self.metrics.enabled);
        keys
    }

    /// `self` (a config being reloaded) with the settings a reload cannot
    /// apply taken from `running`, so that the config in force says what
    /// actually runs.
    pub(crate) fn keep_start_settings(&mut self, running: &Config) {
        self.host.control_socket = running.host.control_socket.clone();
        self.status = running.status.clone();
        self.state = running.state.clone();
        self.metrics = running.metrics.clone();
    }
}

/// `path` without `.` components (`/etc/./x` is `/etc/x`), for readable messages.
pub(crate) fn clean(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// The longest instance name: it is the source of every event the instance
/// publishes, and appears in topics, URLs and metric labels.
pub const MAX_INSTANCE_NAME_BYTES: usize = 256;

fn check_instance_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it must not be empty");
    }
    if name.len() > MAX_INSTANCE_NAME_BYTES {
        return Err("it must be at most 256 bytes long");
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

/// The bounds of every size and count key: a value outside them is refused
/// by `check`, by `run` and by a reload, with the value's line and column,
/// rather than failing (or aborting the process) when it is used.
pub mod limits {
    /// A key's name, default and accepted range.
    #[derive(Debug, Clone, Copy)]
    pub struct Limit {
        /// The key as written in `plugins.toml`.
        pub key: &'static str,
        /// Its value when absent.
        pub default: u64,
        /// The smallest value accepted.
        pub min: u64,
        /// The largest value accepted.
        pub max: u64,
    }

    /// `queue_capacity` (`[host]` and `[[plugin]]`): a mailbox is allocated
    /// whole when its instance starts, about 100 bytes per slot.
    pub const QUEUE_CAPACITY: Limit = Limit {
        key: "queue_capacity",
        default: 1024,
        min: 1,
        max: 1 << 20,
    };
    /// `[host] max_event_bytes`: the largest payload accepted from any entry point.
    pub const MAX_EVENT_BYTES: Limit = Limit {
        key: "max_event_bytes",
        default: 64 << 20,
        min: 1,
        max: 1 << 30,
    };
    /// `[host] control_max_line_bytes`: the longest control command line.
    pub const CONTROL_MAX_LINE_BYTES: Limit = Limit {
        key: "control_max_line_bytes",
        default: 64 << 20,
        min: 1024,
        max: 1 << 30,
    };
    /// `[host] control_max_connections`: control connections served at once.
    pub const CONTROL_MAX_CONNECTIONS: Limit = Limit {
        key: "control_max_connections",
        default: 64,
        min: 1,
        max: 4096,
    };
    /// `[[plugin]]` tables in one config: each is a thread and a mailbox.
    pub const MAX_PLUGINS: usize = 4096;
    /// The largest config file read, in bytes.
    pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
    /// `[status] ingest_max_bytes`: the largest `POST /events/TOPIC` body.
    pub const INGEST_MAX_BYTES: Limit = Limit {
        key: "ingest_max_bytes",
        default: 1 << 20,
        min: 1,
        max: 1 << 30,
    };
    /// `[status] max_connections`: connections served at once.
    pub const MAX_CONNECTIONS: Limit = Limit {
        key: "max_connections",
        default: 1024,
        min: 1,
        max: 65536,
    };
    /// `[status] route_max_pending`: route calls waiting on one instance.
    pub const ROUTE_MAX_PENDING: Limit = Limit {
        key: "route_max_pending",
        default: 64,
        min: 1,
        max: 4096,
    };
    /// `[[plugin]] max_restarts`.
    pub const MAX_RESTARTS: Limit = Limit {
        key: "max_restarts",
        default: 5,
        min: 0,
        max: 10_000,
    };
    /// Every duration key: at most a day, so no deadline computed from one
    /// can overflow.
    pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
}

/// What a zero duration means for a key.
#[derive(Clone, Copy)]
enum Zero {
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
struct Checks {
    problems: Vec<(usize, String)>,
}

impl Checks {
    fn problem(&mut self, offset: usize, message: String) {
        self.problems.push((offset, message));
    }

    fn duration(
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

    fn size(&mut self, limit: &limits::Limit, value: &Option<Spanned<u64>>) -> usize {
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
fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
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
    ingest_max_bytes: Option<Spanned<u64>>,
    route_timeout: Option<Spanned<String>>,
    header_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    max_connections: Option<Spanned<u64>>,
    route_max_pending: Option<Spanned<u64>>,
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
    queue_capacity: Option<Spanned<u64>>,
    overflow: Option<Overflow>,
    shutdown_timeout: Option<Spanned<String>>,
    control_socket: Option<PathBuf>,
    max_event_bytes: Option<Spanned<u64>>,
    control_max_line_bytes: Option<Spanned<u64>>,
    control_max_connections: Option<Spanned<u64>>,
    control_idle_timeout: Option<Spanned<String>>,
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
    queue_capacity: Option<Spanned<u64>>,
    overflow: Option<Overflow>,
    config: Option<toml::Value>,
    isolation: Option<Isolation>,
    restart: Option<Restart>,
    max_restarts: Option<Spanned<u64>>,
    restart_window: Option<Spanned<String>>,
    handler_timeout: Option<Spanned<String>>,
    sha256: Option<Spanned<String>>,
    #[serde(default)]
    allow_insecure_permissions: bool,
    tick_interval: Option<Spanned<String>>,
    start_timeout: Option<Spanned<String>>,
    #[serde(default = "yes")]
    required: bool,
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
    fn a_reload_names_each_changed_key_it_cannot_apply() {
        let old = parse("[host]\ncontrol_socket = \"a.sock\"\nmax_event_bytes = 10\n[status]\n[[plugin]]\nname = \"a\"\nlibrary = \"x\"\n").unwrap();
        let new = parse("[host]\ncontrol_socket = \"b.sock\"\nmax_event_bytes = 20\nshutdown_timeout = \"9s\"\n[status]\naddress = \"127.0.0.1:9\"\ncheck_timeout = \"3s\"\n[state]\nenabled = true\n[metrics]\nenabled = true\n[[plugin]]\nname = \"b\"\nlibrary = \"y\"\n").unwrap();
        assert_eq!(
            old.restart_needed(&new),
            [
                "[host] control_socket",
                "[status] address",
                "[status] check_timeout",
                "[state] enabled",
                "[metrics] enabled"
            ]
        );
        assert!(old.restart_needed(&old).is_empty());
        let without_status =
            parse("[host]\ncontrol_socket = \"a.sock\"\nmax_event_bytes = 10\n").unwrap();
        assert_eq!(old.restart_needed(&without_status), ["[status]"]);
        let mut kept = new.clone();
        kept.keep_start_settings(&old);
        assert!(old.restart_needed(&kept).is_empty());
        assert_eq!(kept.host.max_event_bytes, 20);
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
        // Cut off after `=`: the parser gives no reason; the line says one.
        for text in [
            "[host]\nqueue_capacity =",
            "[[plugin]]\nname = \"a\"\nconfig = {b =",
        ] {
            let err = parse(text).unwrap_err();
            let line = text.lines().count();
            let column = text.lines().last().unwrap().len() + 1;
            assert_eq!(
                err,
                format!(
                    "/etc/plughost/plugins.toml:{line}:{column}: the file ends where a value is expected"
                )
            );
        }
    }

    #[test]
    fn bad_values_name_the_value() {
        let err = parse("[host]\nshutdown_timeout = \"5 parsecs\"\n").unwrap_err();
        assert!(
            err.starts_with("/etc/plughost/plugins.toml:2:20: invalid duration `5 parsecs`"),
            "{err}"
        );
        let err = parse("[host]\nqueue_capacity = 0\n").unwrap_err();
        assert_eq!(
            err,
            "/etc/plughost/plugins.toml:2:18: `queue_capacity` must be between 1 and 1048576 (it is 0)"
        );
        let err =
            parse("[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nsubscribe = [\"ok\", \"a.>.b\"]\n")
                .unwrap_err();
        assert!(
            err.starts_with("/etc/plughost/plugins.toml:4:20: invalid pattern `a.>.b`"),
            "{err}"
        );
        let long = "n".repeat(MAX_INSTANCE_NAME_BYTES + 1);
        let err = parse(&format!("[[plugin]]\nname = \"{long}\"\nlibrary = \"x\"\n")).unwrap_err();
        assert!(
            err.ends_with(": it must be at most 256 bytes long"),
            "{err}"
        );
        let longest = "n".repeat(MAX_INSTANCE_NAME_BYTES);
        assert!(
            parse(&format!(
                "[[plugin]]\nname = \"{longest}\"\nlibrary = \"x\"\n"
            ))
            .is_ok()
        );
        let err = parse("[host]\noverflow = \"spill\"\n").unwrap_err();
        assert!(
            err.starts_with("/etc/plughost/plugins.toml:2:12: unknown variant `spill`"),
            "{err}"
        );
    }

    #[test]
    fn every_size_and_count_is_bounded_and_named_at_its_value() {
        let cases = [
            (
                "[host]\nqueue_capacity = 1000000000000\n",
                "2:18: `queue_capacity` must be between 1 and 1048576 (it is 1000000000000)",
            ),
            (
                "[host]\nmax_event_bytes = 0\n",
                "2:19: `max_event_bytes` must be between 1 and 1073741824 (it is 0)",
            ),
            (
                "[host]\nmax_event_bytes = 1073741825\n",
                "2:19: `max_event_bytes` must be between 1 and 1073741824 (it is 1073741825)",
            ),
            (
                "[host]\ncontrol_max_line_bytes = 10\n",
                "2:26: `control_max_line_bytes` must be between 1024 and 1073741824 (it is 10)",
            ),
            (
                "[host]\ncontrol_max_connections = 4097\n",
                "2:27: `control_max_connections` must be between 1 and 4096 (it is 4097)",
            ),
            (
                "[status]\ningest_max_bytes = 9223372036854775807\n",
                "2:20: `ingest_max_bytes` must be between 1 and 1073741824 (it is 9223372036854775807)",
            ),
            (
                "[status]\nmax_connections = 0\n",
                "2:19: `max_connections` must be between 1 and 65536 (it is 0)",
            ),
            (
                "[status]\nroute_max_pending = 5000\n",
                "2:21: `route_max_pending` must be between 1 and 4096 (it is 5000)",
            ),
            (
                "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nqueue_capacity = 2000000\n",
                "4:18: `queue_capacity` must be between 1 and 1048576 (it is 2000000)",
            ),
            (
                "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nmax_restarts = 4294967296\n",
                "4:16: `max_restarts` must be between 0 and 10000 (it is 4294967296)",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(
                err,
                format!("/etc/plughost/plugins.toml:{expected}"),
                "{text}"
            );
        }
        // A negative number is not a size at all: the parser says so.
        let err = parse("[host]\nqueue_capacity = -1\n").unwrap_err();
        assert!(
            err.starts_with("/etc/plughost/plugins.toml:2:18: "),
            "{err}"
        );
    }

    #[test]
    fn every_duration_is_bounded_and_named_at_its_value() {
        let huge = format!("{}s", 1u64 << 63);
        let cases = [
            format!("[host]\nshutdown_timeout = \"{huge}\"\n"),
            "[status]\ncheck_timeout = \"25h\"\n".to_owned(),
            "[status]\nroute_timeout = \"86401s\"\n".to_owned(),
            "[status]\nheader_timeout = \"1441m\"\n".to_owned(),
            "[status]\nidle_timeout = \"90000s\"\n".to_owned(),
            "[host]\ncontrol_idle_timeout = \"25h\"\n".to_owned(),
            "[state]\nping_interval = \"100h\"\n".to_owned(),
            format!("[[plugin]]\nname = \"a\"\nlibrary = \"x\"\ntick_interval = \"{huge}\"\n"),
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nhandler_timeout = \"48h\"\n".to_owned(),
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nrestart_window = \"86400001ms\"\n"
                .to_owned(),
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nstart_timeout = \"2000m\"\n".to_owned(),
        ];
        for text in &cases {
            let err = parse(text).unwrap_err();
            let key = text.lines().last().unwrap().split(' ').next().unwrap();
            assert!(
                err.contains(&format!(": `{key}` must be at most 24h (it is ")),
                "{text}: {err}"
            );
        }
        // The bound itself is accepted.
        let config = parse("[host]\nshutdown_timeout = \"24h\"\n").unwrap();
        assert_eq!(config.host.shutdown_timeout, limits::MAX_DURATION);
    }

    #[test]
    fn zero_means_off_now_or_is_refused_key_by_key() {
        let config = parse(
            "[host]\nshutdown_timeout = \"0s\"\n[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nhandler_timeout = \"0s\"\ntick_interval = \"0ms\"\n",
        )
        .unwrap();
        assert_eq!(config.host.shutdown_timeout, Duration::ZERO);
        assert_eq!(config.plugins[0].handler_timeout, None);
        assert_eq!(config.plugins[0].tick_interval, None);
        for (text, key) in [
            ("[status]\ncheck_timeout = \"0s\"\n", "check_timeout"),
            ("[status]\nidle_timeout = \"0ms\"\n", "idle_timeout"),
            (
                "[host]\ncontrol_idle_timeout = \"0s\"\n",
                "control_idle_timeout",
            ),
            ("[state]\nping_interval = \"0s\"\n", "ping_interval"),
            (
                "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nrestart_window = \"0s\"\n",
                "restart_window",
            ),
            (
                "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nstart_timeout = \"0s\"\n",
                "start_timeout",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.ends_with(&format!(": `{key}` must be more than zero")),
                "{err}"
            );
        }
    }

    #[test]
    fn new_limits_have_their_documented_defaults() {
        let config = parse("[status]\n[[plugin]]\nname = \"a\"\nlibrary = \"x\"\n").unwrap();
        assert_eq!(config.host.max_event_bytes, 64 << 20);
        assert_eq!(config.host.control_max_line_bytes, 64 << 20);
        assert_eq!(config.host.control_max_connections, 64);
        assert_eq!(config.host.control_idle_timeout, Duration::from_secs(60));
        let status = config.status.unwrap();
        assert_eq!(status.header_timeout, Duration::from_secs(10));
        assert_eq!(status.idle_timeout, Duration::from_secs(60));
        assert_eq!(status.max_connections, 1024);
        assert_eq!(status.route_max_pending, 64);
        assert_eq!(status.ingest_max_bytes, 1 << 20);
        assert_eq!(config.plugins[0].start_timeout, Duration::from_secs(30));
        assert_eq!(config.plugins[0].max_restarts, 5);
        assert_eq!(config.plugins[0].queue_capacity.get(), 1024);
    }

    #[test]
    fn the_number_of_instances_is_bounded_at_the_first_table_over() {
        let table = |i: usize| format!("[[plugin]]\nname = \"p{i}\"\nlibrary = \"x\"\n");
        let most: String = (0..limits::MAX_PLUGINS).map(table).collect();
        assert_eq!(parse(&most).unwrap().plugins.len(), limits::MAX_PLUGINS);
        let over = most + &table(limits::MAX_PLUGINS);
        let line = 3 * limits::MAX_PLUGINS + 2;
        assert_eq!(
            parse(&over).unwrap_err(),
            format!(
                "/etc/plughost/plugins.toml:{line}:8: at most 4096 [[plugin]] tables (each is a thread and a mailbox): this is one more"
            )
        );
    }

    #[test]
    fn a_config_file_larger_than_16_mib_is_refused_before_it_is_parsed() {
        let dir = std::env::temp_dir().join(format!("plughost-config-size-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plugins.toml");
        // Comments only: valid TOML of any size, so only the size refuses it.
        let line = format!("#{}\n", "x".repeat(1022));
        std::fs::write(&path, line.repeat(16 * 1024)).unwrap();
        Config::load(&path).unwrap();
        std::fs::write(&path, line.repeat(16 * 1024) + "#\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            err,
            format!(
                "cannot read config {}: larger than 16 MiB, the most a config file may be",
                path.display()
            )
        );
    }

    #[test]
    fn required_defaults_to_true_and_reads_false() {
        let config = parse(
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\n[[plugin]]\nname = \"b\"\nlibrary = \"x\"\nrequired = false\n",
        )
        .unwrap();
        assert!(config.plugins[0].required);
        assert!(!config.plugins[1].required);
        let err =
            parse("[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nrequired = \"no\"\n").unwrap_err();
        assert!(
            err.starts_with("/etc/plughost/plugins.toml:4:12: "),
            "{err}"
        );
    }

    #[test]
    fn names_as_shown_are_the_names_as_written() {
        for isolation in [Isolation::Thread, Isolation::Process] {
            let text = format!(
                "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nisolation = \"{}\"\n",
                isolation.as_str()
            );
            assert_eq!(parse(&text).unwrap().plugins[0].isolation, isolation);
        }
        for overflow in [Overflow::Block, Overflow::DropOldest, Overflow::DropNewest] {
            let text = format!("[host]\noverflow = \"{}\"\n", overflow.as_str());
            assert_eq!(parse(&text).unwrap().host.overflow, overflow);
        }
    }

    #[test]
    fn what_a_library_must_satisfy_comes_from_its_plugin_table() {
        let pin = "ab".repeat(32);
        let config = parse(&format!(
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nsha256 = \"{}\"\n\
             [[plugin]]\nname = \"b\"\nlibrary = \"x\"\nisolation = \"process\"\nallow_insecure_permissions = true\n",
            pin.to_uppercase()
        ))
        .unwrap();
        let a = config.plugins[0].trust();
        assert_eq!(a.sha256.as_deref(), Some(pin.as_str()));
        assert!(!a.allow_insecure_permissions && a.thread_isolation);
        let b = config.plugins[1].trust();
        assert_eq!(b.sha256, None);
        assert!(b.allow_insecure_permissions && !b.thread_isolation);
    }

    #[test]
    fn relative_paths_are_relative_to_the_configs_directory() {
        let config = parse("").unwrap();
        assert_eq!(config.base_dir(), PathBuf::from("/etc/plughost"));
        let here = Config::parse(Path::new("plugins.toml"), "").unwrap();
        assert_eq!(here.base_dir(), std::env::current_dir().unwrap());
        assert_eq!(here.host.plugin_dirs, [std::env::current_dir().unwrap()]);
    }

    #[test]
    fn a_reload_without_status_before_or_after_needs_no_restart_for_it() {
        let old = parse("[host]\nqueue_capacity = 8\n").unwrap();
        let new = parse("[host]\nqueue_capacity = 9\n").unwrap();
        assert!(old.restart_needed(&new).is_empty());
        let with = parse("[status]\n").unwrap();
        assert_eq!(with.restart_needed(&old), ["[status]"]);
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

/// Property tests: a config generated with random values, valid or not,
/// parses to exactly what it says, or is refused with one line per invalid
/// value, in file order, at that value's line and column; a valid config
/// mangled at random parses to what the mangled text says, or is refused
/// with lines that point inside the text; no text makes parsing panic.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const VALID: &str = "[host]\nqueue_capacity = 8\nshutdown_timeout = \"5s\"\n[status]\naddress = \"127.0.0.1:0\"\n\
        [[plugin]]\nname = \"a\"\nlibrary = \"x\"\nsubscribe = [\"a.>\"]\nmax_restarts = 3\n\
        sha256 = \"00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff\"\n[plugin.config]\nk = [1, {a = 2}]\n";

    /// What a value written in the file should give: a value, or the one
    /// line that refuses it.
    #[derive(Debug, Clone)]
    enum Want<T> {
        Value(T),
        Problem(String),
    }

    impl<T: Clone> Want<T> {
        fn value(&self) -> Option<T> {
            match self {
                Want::Value(v) => Some(v.clone()),
                Want::Problem(_) => None,
            }
        }
    }

    /// A value as written (its TOML text) and what it should give.
    type Written<T> = (String, Want<T>);

    /// A size or count key: inside its bounds, or outside with the message.
    fn size(limit: limits::Limit) -> impl Strategy<Value = Written<u64>> {
        let refuse = move |n: u64| {
            (
                n.to_string(),
                Want::Problem(format!(
                    "`{}` must be between {} and {} (it is {n})",
                    limit.key, limit.min, limit.max
                )),
            )
        };
        prop_oneof![
            6 => (limit.min..=limit.max).prop_map(|n| (n.to_string(), Want::Value(n))),
            1 => Just(limit.min).prop_map(|n| (n.to_string(), Want::Value(n))),
            1 => Just(limit.max).prop_map(|n| (n.to_string(), Want::Value(n))),
            1 => (limit.max + 1..=i64::MAX as u64).prop_map(refuse),
            1 => Just(limit.max + 1).prop_map(refuse),
            // Below the minimum, where there is room (else one more above).
            1 => Just(limit.min.checked_sub(1).unwrap_or(limit.max + 2)).prop_map(refuse),
        ]
    }

    /// A duration key; `zero_refused`: zero is not a value.
    fn duration(key: &'static str, zero_refused: bool) -> impl Strategy<Value = Written<Duration>> {
        let units = prop_oneof![
            Just(("ms", 1u64)),
            Just(("s", 1000)),
            Just(("m", 60_000)),
            Just(("h", 3_600_000))
        ];
        let day_ms = limits::MAX_DURATION.as_millis() as u64;
        prop_oneof![
            6 => units.prop_flat_map(move |(unit, ms)| {
                // Mostly within the bound, sometimes over it.
                let most = day_ms / ms;
                (Just((unit, ms)), prop_oneof![6 => 0..=most, 1 => most + 1..=2 * most])
            }).prop_map(move |((unit, ms), n)| {
                let text = format!("{n}{unit}");
                let millis = n * ms;
                let want = if millis > day_ms {
                    Want::Problem(format!("`{key}` must be at most 24h (it is {text})"))
                } else if millis == 0 && zero_refused {
                    Want::Problem(format!("`{key}` must be more than zero"))
                } else {
                    Want::Value(Duration::from_millis(millis))
                };
                (format!("{text:?}"), want)
            }),
            1 => Just(("24h", Want::Value(limits::MAX_DURATION))).prop_map(|(t, w)| (format!("{t:?}"), w)),
            1 => prop_oneof![Just("5"), Just("5 s"), Just("s"), Just("-1s"), Just("1.5s"), Just("3d"), Just(""), Just("99999999999999999999h")]
                .prop_map(|text| {
                    let message = format!(
                        "invalid duration `{text}`: write a whole number and a unit, such as \"250ms\", \"5s\", \"1m\" or \"2h\""
                    );
                    (format!("{text:?}"), Want::Problem(message))
                }),
        ]
    }

    fn overflow() -> impl Strategy<Value = Option<Overflow>> {
        proptest::option::of(prop_oneof![
            Just(Overflow::Block),
            Just(Overflow::DropOldest),
            Just(Overflow::DropNewest)
        ])
    }

    #[derive(Debug, Clone)]
    struct HostModel {
        queue_capacity: Option<Written<u64>>,
        overflow: Option<Overflow>,
        shutdown_timeout: Option<Written<Duration>>,
        max_event_bytes: Option<Written<u64>>,
    }

    #[derive(Debug, Clone)]
    struct StatusModel {
        check_timeout: Option<Written<Duration>>,
        max_connections: Option<Written<u64>>,
        code: Option<u16>,
    }

    #[derive(Debug, Clone)]
    struct PluginModel {
        name: String,
        library: String,
        subscribe: Vec<String>,
        enabled: Option<bool>,
        required: Option<bool>,
        queue_capacity: Option<Written<u64>>,
        overflow: Option<Overflow>,
        max_restarts: Option<Written<u64>>,
        restart_window: Option<Written<Duration>>,
        tick_interval: Option<Written<Duration>>,
        handler_timeout: Option<Written<Duration>>,
        sha256: Option<String>,
        config: Vec<(String, i64, String)>,
    }

    fn host() -> impl Strategy<Value = HostModel> {
        (
            proptest::option::of(size(limits::QUEUE_CAPACITY)),
            overflow(),
            proptest::option::of(duration("shutdown_timeout", false)),
            proptest::option::of(size(limits::MAX_EVENT_BYTES)),
        )
            .prop_map(
                |(queue_capacity, overflow, shutdown_timeout, max_event_bytes)| HostModel {
                    queue_capacity,
                    overflow,
                    shutdown_timeout,
                    max_event_bytes,
                },
            )
    }

    fn status() -> impl Strategy<Value = StatusModel> {
        (
            proptest::option::of(duration("check_timeout", true)),
            proptest::option::of(size(limits::MAX_CONNECTIONS)),
            proptest::option::of(
                prop_oneof![3 => 100u16..=599, 1 => 0u16..100, 1 => 600u16..=u16::MAX],
            ),
        )
            .prop_map(|(check_timeout, max_connections, code)| StatusModel {
                check_timeout,
                max_connections,
                code,
            })
    }

    fn plugin() -> impl Strategy<Value = PluginModel> {
        let name = prop_oneof![
            4 => prop_oneof![Just("a"), Just("b"), Just("c-1"), Just("D_2")].prop_map(str::to_owned),
            1 => prop_oneof![Just(""), Just("a b"), Just("é"), Just("a.b")].prop_map(str::to_owned),
            1 => Just("n".repeat(MAX_INSTANCE_NAME_BYTES)),
            1 => Just("n".repeat(MAX_INSTANCE_NAME_BYTES + 1)),
        ];
        let library = prop_oneof![
            Just("x"),
            Just("./libx.so"),
            Just("logger"),
            Just(""),
            Just("  ")
        ]
        .prop_map(str::to_owned);
        let pattern = prop_oneof![
            4 => prop_oneof![Just("a.>"), Just("*.b"), Just(">"), Just("orders.created"), Just("é.*")],
            1 => prop_oneof![Just("a.>.b"), Just("a..b"), Just(""), Just("a*"), Just("a b")],
        ]
        .prop_map(str::to_owned);
        let sha = prop_oneof![
            3 => "[0-9a-fA-F]{64}",
            1 => prop_oneof!["[0-9a-f]{0,63}", "[0-9a-f]{65,70}", "[0-9a-f]{63}[g-z]"],
        ];
        (
            (name, library, proptest::collection::vec(pattern, 0..4)),
            (
                proptest::option::of(any::<bool>()),
                proptest::option::of(any::<bool>()),
            ),
            (
                proptest::option::of(size(limits::QUEUE_CAPACITY)),
                overflow(),
                proptest::option::of(size(limits::MAX_RESTARTS)),
            ),
            (
                proptest::option::of(duration("restart_window", true)),
                proptest::option::of(duration("tick_interval", false)),
                proptest::option::of(duration("handler_timeout", false)),
            ),
            proptest::option::of(sha),
            // Unique keys: a key written twice is TOML's own error.
            proptest::collection::btree_map("[a-z]{1,6}", (any::<i64>(), "[ -~]{0,8}"), 0..3)
                .prop_map(|table| {
                    table
                        .into_iter()
                        .map(|(k, (n, s))| (k, n, s))
                        .collect::<Vec<_>>()
                }),
        )
            .prop_map(
                |(
                    (name, library, subscribe),
                    (enabled, required),
                    (queue_capacity, overflow, max_restarts),
                    (restart_window, tick_interval, handler_timeout),
                    sha256,
                    config,
                )| PluginModel {
                    name,
                    library,
                    subscribe,
                    enabled,
                    required,
                    queue_capacity,
                    overflow,
                    max_restarts,
                    restart_window,
                    tick_interval,
                    handler_timeout,
                    sha256,
                    config,
                },
            )
    }

    /// The file being written, and the problems it should be refused for
    /// (at the byte where their value starts).
    #[derive(Default)]
    struct Doc {
        text: String,
        problems: Vec<(usize, String)>,
    }

    impl Doc {
        fn line(&mut self, line: &str) {
            self.text.push_str(line);
            self.text.push('\n');
        }

        /// `key = value`; returns where the value starts.
        fn key(&mut self, key: &str, value: &str) -> usize {
            self.text.push_str(key);
            self.text.push_str(" = ");
            let at = self.text.len();
            self.text.push_str(value);
            self.text.push('\n');
            at
        }

        fn written<T: Clone>(&mut self, key: &str, value: &Option<Written<T>>) -> Option<Want<T>> {
            let (text, want) = value.as_ref()?;
            let at = self.key(key, text);
            if let Want::Problem(message) = want {
                self.problems.push((at, message.clone()));
            }
            Some(want.clone())
        }

        /// The line `p.toml:LINE:COLUMN: message` for a problem at `at`.
        fn expected(&self) -> Vec<String> {
            let mut problems = self.problems.clone();
            problems.sort_by_key(|(at, _)| *at);
            problems
                .iter()
                .map(|(at, message)| {
                    let before = &self.text[..*at];
                    let line = 1 + before.bytes().filter(|&b| b == b'\n').count();
                    let start = before.rfind('\n').map_or(0, |i| i + 1);
                    let column = 1 + before[start..].chars().count();
                    format!("p.toml:{line}:{column}: {message}")
                })
                .collect()
        }
    }

    fn overflow_text(overflow: Overflow) -> String {
        format!("{:?}", overflow.as_str())
    }

    /// Write the models as `plugins.toml`, and check what `Config::parse` makes of it.
    fn check(
        host: &HostModel,
        status: &Option<StatusModel>,
        plugins: &[PluginModel],
    ) -> Result<(), TestCaseError> {
        let mut doc = Doc::default();
        doc.line("[host]");
        let host_capacity = doc.written("queue_capacity", &host.queue_capacity);
        if let Some(overflow) = host.overflow {
            doc.key("overflow", &overflow_text(overflow));
        }
        let shutdown_timeout = doc.written("shutdown_timeout", &host.shutdown_timeout);
        let max_event_bytes = doc.written("max_event_bytes", &host.max_event_bytes);
        let mut status_wants = None;
        if let Some(status) = status {
            doc.line("[status]");
            let check_timeout = doc.written("check_timeout", &status.check_timeout);
            let max_connections = doc.written("max_connections", &status.max_connections);
            if let Some(code) = status.code {
                let at = doc.key("unavailable_status_code", &code.to_string());
                if !(100..=599).contains(&code) {
                    doc.problems
                        .push((at, format!("invalid HTTP status code {code}")));
                }
            }
            status_wants = Some((check_timeout, max_connections));
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut plugin_wants = Vec::new();
        for plugin in plugins {
            doc.line("[[plugin]]");
            let at = doc.key("name", &format!("{:?}", plugin.name));
            let line = 1 + doc.text[..at].bytes().filter(|&b| b == b'\n').count();
            let name = &plugin.name;
            let valid = !name.is_empty()
                && name.len() <= MAX_INSTANCE_NAME_BYTES
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                let reason = match name.len() {
                    0 => "it must not be empty",
                    n if n > MAX_INSTANCE_NAME_BYTES => "it must be at most 256 bytes long",
                    _ => {
                        "use letters, digits, `-` and `_` (it appears in topics, URLs and metric labels)"
                    }
                };
                doc.problems
                    .push((at, format!("invalid plugin name `{name}`: {reason}")));
            } else if let Some(first) = seen.get(name.as_str()) {
                doc.problems.push((
                    at,
                    format!("duplicate plugin name `{name}` (first defined on line {first})"),
                ));
            } else {
                seen.insert(name, line);
            }
            let at = doc.key("library", &format!("{:?}", plugin.library));
            if plugin.library.trim().is_empty() {
                doc.problems
                    .push((at, "`library` must not be empty".to_owned()));
            }
            if !plugin.subscribe.is_empty() || plugin.name.len() % 2 == 0 {
                doc.text.push_str("subscribe = [");
                for (i, pattern) in plugin.subscribe.iter().enumerate() {
                    if i > 0 {
                        doc.text.push_str(", ");
                    }
                    let at = doc.text.len();
                    doc.text.push_str(&format!("{pattern:?}"));
                    if let Err(e) = Pattern::parse(pattern) {
                        doc.problems.push((at, e.to_string()));
                    }
                }
                doc.text.push_str("]\n");
            }
            if let Some(enabled) = plugin.enabled {
                doc.key("enabled", &enabled.to_string());
            }
            if let Some(required) = plugin.required {
                doc.key("required", &required.to_string());
            }
            let capacity = doc.written("queue_capacity", &plugin.queue_capacity);
            if let Some(overflow) = plugin.overflow {
                doc.key("overflow", &overflow_text(overflow));
            }
            let max_restarts = doc.written("max_restarts", &plugin.max_restarts);
            let restart_window = doc.written("restart_window", &plugin.restart_window);
            let tick_interval = doc.written("tick_interval", &plugin.tick_interval);
            let handler_timeout = doc.written("handler_timeout", &plugin.handler_timeout);
            if let Some(sha) = &plugin.sha256 {
                let at = doc.key("sha256", &format!("{sha:?}"));
                if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                    doc.problems
                        .push((at, "`sha256` must be 64 hexadecimal digits".to_owned()));
                }
            }
            if !plugin.config.is_empty() {
                doc.line("[plugin.config]");
                for (key, n, text) in &plugin.config {
                    doc.key(
                        key,
                        &format!("{{ n = {n}, s = {text:?}, list = [{n}, {text:?}] }}"),
                    );
                }
            }
            plugin_wants.push((
                capacity,
                max_restarts,
                restart_window,
                tick_interval,
                handler_timeout,
            ));
        }

        let parsed = Config::parse(Path::new("p.toml"), &doc.text);
        let expected = doc.expected();
        let config = match parsed {
            Err(e) => {
                let lines: Vec<String> = e.to_string().lines().map(str::to_owned).collect();
                prop_assert_eq!(lines, expected, "in\n{}", doc.text);
                match e {
                    ConfigError::Several { errors } => prop_assert!(errors.len() > 1),
                    ConfigError::Invalid { .. } => {}
                    other => prop_assert!(false, "{:?}", other),
                }
                return Ok(());
            }
            Ok(config) => config,
        };
        prop_assert!(
            expected.is_empty(),
            "accepted, yet {:?} in\n{}",
            expected,
            doc.text
        );
        // Everything is valid: the config says exactly what the text does.
        let value =
            |want: Option<Want<u64>>, default: u64| want.and_then(|w| w.value()).unwrap_or(default);
        let duration = |want: Option<Want<Duration>>, default: Duration| {
            want.and_then(|w| w.value()).unwrap_or(default)
        };
        let capacity = value(host_capacity, 1024);
        prop_assert_eq!(config.host.queue_capacity.get() as u64, capacity);
        prop_assert_eq!(
            config.host.overflow,
            host.overflow.unwrap_or(Overflow::Block)
        );
        prop_assert_eq!(
            config.host.shutdown_timeout,
            duration(shutdown_timeout, Duration::from_secs(5))
        );
        prop_assert_eq!(
            config.host.max_event_bytes as u64,
            value(max_event_bytes, 64 << 20)
        );
        match (&config.status, status_wants) {
            (Some(got), Some((check_timeout, max_connections))) => {
                prop_assert_eq!(
                    got.check_timeout,
                    duration(check_timeout, Duration::from_secs(1))
                );
                prop_assert_eq!(got.max_connections as u64, value(max_connections, 1024));
                prop_assert_eq!(
                    got.unavailable_status_code,
                    status.as_ref().and_then(|s| s.code).unwrap_or(503)
                );
            }
            (None, None) => {}
            (got, want) => prop_assert!(false, "status {:?}, wanted {:?}", got, want),
        }
        prop_assert_eq!(config.plugins.len(), plugins.len());
        for ((got, plugin), wants) in config.plugins.iter().zip(plugins).zip(plugin_wants) {
            let (queue_capacity, max_restarts, restart_window, tick_interval, handler_timeout) =
                wants;
            prop_assert_eq!(&got.name, &plugin.name);
            prop_assert_eq!(&got.library, &plugin.library);
            let subscribe: Vec<&str> = got.subscribe.iter().map(Pattern::as_str).collect();
            prop_assert_eq!(
                subscribe,
                plugin
                    .subscribe
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
            );
            prop_assert_eq!(got.enabled, plugin.enabled.unwrap_or(true));
            prop_assert_eq!(got.required, plugin.required.unwrap_or(true));
            prop_assert_eq!(
                got.queue_capacity.get() as u64,
                value(queue_capacity, capacity)
            );
            prop_assert_eq!(
                got.overflow,
                plugin.overflow.or(host.overflow).unwrap_or(Overflow::Block)
            );
            prop_assert_eq!(u64::from(got.max_restarts), value(max_restarts, 5));
            prop_assert_eq!(
                got.restart_window,
                duration(restart_window, Duration::from_secs(60))
            );
            let off = |d: Duration| Some(d).filter(|d| !d.is_zero());
            prop_assert_eq!(
                got.tick_interval,
                off(duration(tick_interval, Duration::ZERO))
            );
            prop_assert_eq!(
                got.handler_timeout,
                off(duration(handler_timeout, Duration::ZERO))
            );
            prop_assert_eq!(
                got.sha256.clone(),
                plugin.sha256.as_ref().map(|s| s.to_ascii_lowercase())
            );
            let table: serde_json::Map<String, serde_json::Value> = plugin
                .config
                .iter()
                .map(|(k, n, s)| {
                    (
                        k.clone(),
                        serde_json::json!({"n": n, "s": s, "list": [n, s]}),
                    )
                })
                .collect();
            prop_assert_eq!(&got.config, &serde_json::Value::Object(table));
            prop_assert_eq!(got.isolation, Isolation::Thread);
            prop_assert_eq!(got.restart, Restart::OnFailure);
        }
        Ok(())
    }

    /// What the mangled text says, read as plain TOML: the keys the seed has.
    fn says(text: &str, config: &Config) -> Result<(), TestCaseError> {
        let toml: toml::Table = toml::from_str(text).map_err(|e| {
            TestCaseError::fail(format!("the config parsed, plain TOML did not: {e}"))
        })?;
        let get = |section: &str, key: &str| toml.get(section).and_then(|s| s.get(key)).cloned();
        let capacity =
            get("host", "queue_capacity").map_or(1024, |v| v.as_integer().unwrap() as usize);
        prop_assert_eq!(config.host.queue_capacity.get(), capacity);
        let shutdown = get("host", "shutdown_timeout")
            .map(|v| HumanDuration::parse(v.as_str().unwrap()).unwrap());
        prop_assert_eq!(
            config.host.shutdown_timeout,
            shutdown.unwrap_or(Duration::from_secs(5))
        );
        prop_assert_eq!(config.status.is_some(), toml.contains_key("status"));
        if let Some(address) = get("status", "address") {
            prop_assert_eq!(
                config.status.as_ref().unwrap().address.to_string(),
                address.as_str().unwrap()
            );
        }
        let plugins = toml
            .get("plugin")
            .and_then(|p| p.as_array())
            .cloned()
            .unwrap_or_default();
        prop_assert_eq!(config.plugins.len(), plugins.len());
        for (got, table) in config.plugins.iter().zip(&plugins) {
            prop_assert_eq!(Some(got.name.as_str()), table["name"].as_str());
            prop_assert_eq!(Some(got.library.as_str()), table["library"].as_str());
            let subscribe: Vec<&str> = got.subscribe.iter().map(Pattern::as_str).collect();
            let written: Vec<&str> = table
                .get("subscribe")
                .and_then(|s| s.as_array())
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            prop_assert_eq!(subscribe, written);
            let restarts = table
                .get("max_restarts")
                .map_or(5, |v| v.as_integer().unwrap() as u32);
            prop_assert_eq!(got.max_restarts, restarts);
            prop_assert_eq!(
                got.sha256.clone(),
                table
                    .get("sha256")
                    .map(|v| v.as_str().unwrap().to_ascii_lowercase())
            );
            let config = table
                .get("config")
                .cloned()
                .map_or(serde_json::json!({}), toml_to_json);
            prop_assert_eq!(&got.config, &config);
        }
        Ok(())
    }

    #[test]
    fn the_seed_is_valid_and_says_what_it_says() {
        let config = Config::parse(Path::new("p.toml"), VALID).unwrap();
        assert_eq!(config.plugins[0].max_restarts, 3);
        assert_eq!(
            config.plugins[0].config,
            serde_json::json!({"k": [1, {"a": 2}]})
        );
        assert!(says(VALID, &config).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn any_text_is_parsed_or_refused_without_panicking(text in "\\PC{0,200}") {
            let _ = Config::parse(Path::new("p.toml"), &text);
        }

        #[test]
        fn a_generated_config_says_what_its_text_says_or_names_every_bad_value(
            host in host(),
            status in proptest::option::of(status()),
            plugins in proptest::collection::vec(plugin(), 0..4),
        ) {
            check(&host, &status, &plugins)?;
        }

        #[test]
        fn a_mangled_valid_config_says_what_it_says_or_points_inside_the_text(
            cut in 0..VALID.len(), insert in "[\\[\\]=\".a-z0-9{}\\n]{0,8}", keep in 0..VALID.len(),
        ) {
            let mut text = VALID.to_owned();
            text.insert_str(cut, &insert);
            text.truncate(keep.max(cut));
            match Config::parse(Path::new("p.toml"), &text) {
                Ok(config) => says(&text, &config)?,
                Err(e) => {
                    let errors = match e {
                        ConfigError::Several { errors } => {
                            prop_assert!(errors.len() > 1);
                            errors
                        }
                        e => vec![e],
                    };
                    let lines: Vec<&str> = text.split('\n').collect();
                    for e in errors {
                        let ConfigError::Invalid { path, line, column, message } = &e else {
                            return Err(TestCaseError::fail(format!("each problem is an Invalid: {e}")));
                        };
                        prop_assert_eq!(path, Path::new("p.toml"));
                        prop_assert!(!message.is_empty() && !message.contains('\n'), "one line per problem: {}", e);
                        prop_assert!(*line >= 1 && *line <= lines.len(), "line {} of {}: {}", line, lines.len(), e);
                        let length = lines[line - 1].chars().count();
                        prop_assert!(*column >= 1 && *column <= length + 1, "column {} of {}: {}", column, length, e);
                    }
                }
            }
        }
    }
}
