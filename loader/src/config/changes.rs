//! What a reload can apply of a changed config, and what needs a restart.

use super::*;

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
