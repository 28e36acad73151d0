//! Lightbus's state plugin, as the host speaks it: `worker_started` when
//! the host has started, `worker_ping` every `ping_interval`,
//! `worker_stopped` when shutdown begins (`[state]`).

use crate::config::{Config, PluginConfig};
use crate::event::now_ms;
use crate::supervisor::Supervisor;
use serde_json::{Value, json};
use std::sync::Arc;

/// `worker_started` now, and `worker_ping` every `ping_interval` on a
/// background thread of `supervisor`'s, if `[state]` asks for them.
pub(crate) fn start(supervisor: &Arc<Supervisor>) {
    let config = supervisor.config();
    let state = &config.state;
    if !state.enabled {
        return;
    }
    supervisor
        .bus
        .publish_host("internal.state.worker_started", payload(&config));
    if state.ping_enabled {
        let pinging = supervisor.clone();
        supervisor.every("state", state.ping_interval, move || {
            let payload = payload(&pinging.config());
            pinging
                .bus
                .publish_host("internal.state.worker_ping", payload);
        });
    }
}

/// `worker_stopped`, if `[state]` is enabled.
pub(crate) fn stopped(supervisor: &Supervisor) {
    let config = supervisor.config();
    if config.state.enabled {
        let payload = json!({
            "process_name": config.state.process_name,
            "timestamp": now_ms() as f64 / 1000.0,
        });
        supervisor
            .bus
            .publish_host("internal.state.worker_stopped", payload);
    }
}

/// The payload of `worker_started` and `worker_ping`.
fn payload(config: &Config) -> Value {
    let instances: Vec<&PluginConfig> = config.plugins.iter().filter(|p| p.enabled).collect();
    let mut listening_for: Vec<&str> = Vec::new();
    for pattern in instances.iter().flat_map(|p| p.subscribe.iter()) {
        if !listening_for.contains(&pattern.as_str()) {
            listening_for.push(pattern.as_str());
        }
    }
    json!({
        "process_name": config.state.process_name,
        "metrics_enabled": config.metrics.enabled,
        "api_names": instances.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        "listening_for": listening_for,
        "timestamp": now_ms() as f64 / 1000.0,
        "ping_interval": config.state.ping_interval.as_secs_f64(),
    })
}
