//! Reading `plugins.toml`: the text parsed, every value checked against its
//! bounds while it is read, every problem named at its line and column.

use super::checks::{Checks, Zero, line_column, nonzero, toml_to_json};
use super::file::File;
use super::limits::{self, MAX_INSTANCE_NAME_BYTES};
use super::*;
use std::collections::HashMap;
use toml::Spanned;

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
                echo: p.echo,
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
