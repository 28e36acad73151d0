//! The host: what an embedding program (and the `plughost` binary) holds.
//! [`Host`] is the public face of the `Supervisor` that runs the
//! instances: starting (`start`), publishing, operators' commands, checks
//! and reports, and the shutdown in phases (`shutdown`).

mod shutdown;
mod start;

use crate::config::Config;
use crate::intake::Entry;
use crate::observe::probe;
use crate::observe::report;
use crate::supervisor::Supervisor;
use crate::worker::Probe;
use plughost_api::ContentType;
use std::sync::Arc;
use std::time::Duration;

pub use crate::intake::{PublishError, Refused};
pub use crate::observe::report::{InstanceReport, PluginHealth, PluginJob, PluginReadiness};
pub use crate::supervisor::{InstanceError, ReloadError, ReloadReport, StartError};

/// A running plughost: build it from a [`Config`], publish into it, shut it down.
///
/// ```no_run
/// use plughost::{Config, Host};
/// use std::path::Path;
///
/// let config = Config::load(Path::new("plugins.toml"))?;
/// let host = Host::start(config)?;
/// host.publish("orders.created", br#"{"id":1}"#.to_vec())?;
/// for instance in host.shutdown() {
///     println!("{}: {} processed", instance.name, instance.counts.processed);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Host {
    pub(crate) supervisor: Arc<Supervisor>,
}

impl Host {
    /// Health of every instance that reports it (and of failed ones), each
    /// asked on its own thread within `timeout`.
    pub fn health(&self, timeout: Duration, only: Option<&str>) -> Vec<PluginHealth> {
        probe::health(&self.supervisor, timeout, only)
    }

    /// [`Host::health`], waited for without holding a thread.
    pub async fn health_async(&self, timeout: Duration, only: Option<&str>) -> Vec<PluginHealth> {
        probe::health_of(probe::probe_async(&self.supervisor, Probe::Health, timeout, only).await)
    }

    /// Readiness of every instance that reports it (failed ones are not ready).
    pub fn readiness(&self, timeout: Duration, only: Option<&str>) -> Vec<PluginReadiness> {
        probe::readiness(&self.supervisor, timeout, only)
    }

    /// [`Host::readiness`], waited for without holding a thread.
    pub async fn readiness_async(
        &self,
        timeout: Duration,
        only: Option<&str>,
    ) -> Vec<PluginReadiness> {
        probe::readiness_of(probe::probe_async(&self.supervisor, Probe::Ready, timeout, only).await)
    }

    /// Job reports of every instance that reports them.
    pub fn jobs(&self, timeout: Duration) -> Vec<PluginJob> {
        probe::jobs_of(probe::probe(&self.supervisor, Probe::Jobs, timeout, None))
    }

    /// [`Host::jobs`], waited for without holding a thread.
    pub async fn jobs_async(&self, timeout: Duration) -> Vec<PluginJob> {
        probe::jobs_of(probe::probe_async(&self.supervisor, Probe::Jobs, timeout, None).await)
    }

    /// True once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.supervisor.is_shutting_down()
    }

    /// Publish `payload` on `topic` for the embedding program: the event's
    /// source is `host` (see [`Entry::Embedder`]). Under the `block` policy
    /// this waits for room in full mailboxes. Returns the event's id. Like
    /// every entry point, it refuses the host's reserved topics
    /// ([`plughost_api::topic::RESERVED`]) and payloads larger than `[host]
    /// max_event_bytes`, and counts what it refuses ([`Host::refused`]).
    pub fn publish(&self, topic: &str, payload: impl Into<Box<[u8]>>) -> Result<u64, PublishError> {
        self.publish_from(Entry::Embedder, topic, payload)
    }

    /// Publish `payload` on `topic` as it came in through `entry`: the event
    /// carries the entry's source (`stdin`, `ctl`, `http`, ...), and a
    /// refusal is counted under it. Otherwise as [`publish`](Host::publish).
    pub fn publish_from(
        &self,
        entry: Entry,
        topic: &str,
        payload: impl Into<Box<[u8]>>,
    ) -> Result<u64, PublishError> {
        self.publish_typed(entry, topic, payload, ContentType::Bytes)
    }

    /// Publish `payload` on `topic` through `entry` with its content type
    /// (what [`publish_from`](Host::publish_from) and
    /// [`publish`](Host::publish) publish is `bytes`). A payload that is not
    /// what `content` says (`text` not UTF-8, `json` not one JSON value) is
    /// refused ([`PublishError::Content`]) and counted.
    pub fn publish_typed(
        &self,
        entry: Entry,
        topic: &str,
        payload: impl Into<Box<[u8]>>,
        content: ContentType,
    ) -> Result<u64, PublishError> {
        self.supervisor
            .publish_from(entry, topic, payload.into(), content)
    }

    /// Publish many payloads on one `topic` at once for the embedding
    /// program: cheaper per event than [`publish`](Host::publish) (one route
    /// lookup, one id reservation). Events get consecutive ids; returns the
    /// first. Refused whole if any payload is too large or the topic reserved.
    pub fn publish_batch(
        &self,
        topic: &str,
        payloads: Vec<Box<[u8]>>,
    ) -> Result<u64, PublishError> {
        self.supervisor
            .publish_batch(Entry::Embedder, topic, payloads)
    }

    /// What every entry point refused so far, by entry and reason, with the
    /// pairs never refused left out.
    pub fn refused(&self) -> Vec<Refused> {
        let mut all = self.supervisor.bus.refusals.all();
        all.retain(|refused| refused.count > 0);
        all
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.supervisor.config()
    }

    /// Every instance's state and counts, in start order.
    pub fn report(&self) -> Vec<InstanceReport> {
        report::all(&self.supervisor)
    }

    /// Stop taking events from outside; plugins may still publish.
    pub fn close_intake(&self) {
        self.supervisor.close_intake();
    }

    /// Stop instance `name` after it has handled its queue (`stop` runs).
    /// It stays listed, `stopped`, and `start` brings it back.
    pub fn stop_instance(&self, name: &str) -> Result<(), InstanceError> {
        self.supervisor.stop_instance(name)
    }

    /// Start instance `name` again after a stop, a failure or flapping.
    pub fn start_instance(&self, name: &str) -> Result<(), InstanceError> {
        self.supervisor.start_instance(name)
    }

    /// Restart instance `name`: a fresh `init` with its config, its queue kept.
    pub fn restart_instance(&self, name: &str) -> Result<(), InstanceError> {
        self.supervisor.restart_instance(name)
    }

    /// Re-read the config file and apply the difference. An invalid config
    /// (or a library that cannot be loaded) changes nothing.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        self.supervisor.reload()
    }

    /// Reloads applied so far.
    pub fn reloads(&self) -> u64 {
        self.supervisor.reloads()
    }
}
