//! What operators see of each instance: its report (state, counts, queue)
//! and its answers to health, readiness and job checks, as the status
//! server, the control socket and the shutdown summary show them.

use crate::mailbox::{Counts, Slot, State};
use crate::supervisor::Supervisor;
use plughost_api::JobReport;
use std::sync::atomic::Ordering;

/// One instance as operators see it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InstanceReport {
    /// Instance name.
    pub name: String,
    /// Library file.
    pub library: String,
    /// `rust` or `c`.
    pub language: String,
    /// `thread` or `process`.
    pub isolation: String,
    /// How often it was restarted.
    pub restarts: u64,
    /// Lifecycle state (`running`, `failed`, `stopped`, ...), or `stuck` while a
    /// handler has run longer than its `handler_timeout`.
    pub state: String,
    /// Event counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// Events waiting in its mailbox.
    pub queue_depth: usize,
    /// Mailbox capacity.
    pub queue_capacity: usize,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// One instance's answer to a health check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginHealth {
    /// Instance name.
    pub name: String,
    /// `ok`, `degraded` or `failing`.
    pub status: &'static str,
    /// The plugin's message, `timeout`, or the failure.
    pub message: String,
}

/// One instance's answer to a readiness check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginReadiness {
    /// Instance name.
    pub name: String,
    /// Ready to take work.
    pub ready: bool,
    /// The plugin's message, `timeout`, or the failure.
    pub message: String,
}

/// One job pipeline, as reported by an instance (RoadRunner's JobsReport fields).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginJob {
    /// The reporting instance.
    pub plugin: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Pipeline priority.
    pub priority: u64,
    /// Ready to consume.
    pub ready: bool,
    /// Queue name.
    pub queue: String,
    /// Active jobs.
    pub active: i64,
    /// Delayed jobs.
    pub delayed: i64,
    /// Reserved jobs.
    pub reserved: i64,
    /// Driver name.
    pub driver: String,
    /// Last error (empty when none).
    pub error_message: String,
}

impl PluginJob {
    /// `job`, as reported by instance `plugin`.
    pub(crate) fn new(plugin: &str, job: JobReport) -> PluginJob {
        PluginJob {
            plugin: plugin.to_owned(),
            pipeline: job.pipeline,
            priority: job.priority,
            ready: job.ready,
            queue: job.queue,
            active: job.active,
            delayed: job.delayed,
            reserved: job.reserved,
            driver: job.driver,
            error_message: job.error_message,
        }
    }
}

/// `slot`'s instance as operators see it.
pub(crate) fn report(slot: &Slot) -> InstanceReport {
    let settings = slot.settings();
    InstanceReport {
        name: slot.name.to_string(),
        library: settings.library,
        language: settings.language.to_owned(),
        isolation: settings.isolation.as_str().to_owned(),
        restarts: slot.restarts.load(Ordering::Acquire),
        state: match slot.state() {
            State::Running if slot.is_stuck() => "stuck".to_owned(),
            state => state.as_str().to_owned(),
        },
        counts: slot.counts(),
        queue_depth: slot.rx.len(),
        queue_capacity: slot.capacity,
        last_error: slot.last_error(),
    }
}

/// Every instance's report (not those retired by a reload), in start order.
pub(crate) fn all(supervisor: &Supervisor) -> Vec<InstanceReport> {
    supervisor.slots().iter().map(|slot| report(slot)).collect()
}
