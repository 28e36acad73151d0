//! The file as written: one struct per table, each refusing unknown keys,
//! with positions kept for the checks that follow.

use super::{Isolation, Overflow, Restart};
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

// The file as written. Every table refuses unknown keys.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    #[serde(default)]
    pub(super) host: HostSection,
    #[serde(default)]
    pub(super) plugin: Vec<PluginSection>,
    pub(super) status: Option<StatusSection>,
    #[serde(default)]
    pub(super) state: StateSection,
    #[serde(default)]
    pub(super) metrics: MetricsSection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusSection {
    pub(super) address: Option<Spanned<String>>,
    pub(super) check_timeout: Option<Spanned<String>>,
    pub(super) unavailable_status_code: Option<Spanned<u16>>,
    #[serde(default)]
    pub(super) ingest: bool,
    pub(super) ingest_max_bytes: Option<Spanned<u64>>,
    pub(super) route_timeout: Option<Spanned<String>>,
    pub(super) header_timeout: Option<Spanned<String>>,
    pub(super) idle_timeout: Option<Spanned<String>>,
    pub(super) max_connections: Option<Spanned<u64>>,
    pub(super) route_max_pending: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct StateSection {
    pub(super) enabled: bool,
    pub(super) ping_enabled: bool,
    pub(super) ping_interval: Option<Spanned<String>>,
    pub(super) process_name: Option<String>,
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
pub(super) struct MetricsSection {
    pub(super) enabled: bool,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HostSection {
    pub(super) plugin_dirs: Option<Vec<PathBuf>>,
    pub(super) queue_capacity: Option<Spanned<u64>>,
    pub(super) overflow: Option<Overflow>,
    pub(super) shutdown_timeout: Option<Spanned<String>>,
    pub(super) control_socket: Option<PathBuf>,
    pub(super) max_event_bytes: Option<Spanned<u64>>,
    pub(super) control_max_line_bytes: Option<Spanned<u64>>,
    pub(super) control_max_connections: Option<Spanned<u64>>,
    pub(super) control_idle_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PluginSection {
    pub(super) name: Spanned<String>,
    pub(super) library: Spanned<String>,
    #[serde(default)]
    pub(super) subscribe: Vec<Spanned<String>>,
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    pub(super) queue_capacity: Option<Spanned<u64>>,
    pub(super) overflow: Option<Overflow>,
    pub(super) config: Option<toml::Value>,
    pub(super) isolation: Option<Isolation>,
    pub(super) restart: Option<Restart>,
    pub(super) max_restarts: Option<Spanned<u64>>,
    pub(super) restart_window: Option<Spanned<String>>,
    pub(super) handler_timeout: Option<Spanned<String>>,
    pub(super) sha256: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) allow_insecure_permissions: bool,
    pub(super) tick_interval: Option<Spanned<String>>,
    pub(super) start_timeout: Option<Spanned<String>>,
    #[serde(default = "yes")]
    pub(super) required: bool,
    #[serde(default)]
    pub(super) echo: bool,
}

pub(super) fn yes() -> bool {
    true
}
