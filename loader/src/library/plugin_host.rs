//! The host as a plugin instance sees it, whatever the plugin's language or
//! isolation: what its context (Rust) or host table (C) calls land on. The
//! library only calls it; the host hands each instance one at its creation.
//! In the host's process that is the host itself (`supervisor`'s
//! `LocalHost`); in a plugin's own process, a `RemoteHost` that forwards
//! over the socket (`process::child`).
//!
//! Every method may be called from any of the plugin's threads, not only
//! the instance's own: each is safe there, or refuses cleanly.

use crate::intake::{PublishError, Reason};
use crate::text;
use plughost_api::{ContentType, LogLevel};

/// What a plugin instance can ask of the host.
pub(crate) trait PluginHost: Send + Sync {
    /// The instance's name (`[[plugin]] name`).
    fn instance_name(&self) -> &str;

    /// Publish an event with the instance's name as its source, refused
    /// when the payload is not what `content` says. A refusal is counted
    /// and logged once, on the host's side (a plugin may drop the error).
    fn publish(
        &self,
        topic: &str,
        payload: &[u8],
        content: ContentType,
    ) -> Result<(), PublishError>;

    /// A line for the host's log, tagged with the instance's name.
    fn log(&self, level: LogLevel, message: &str);

    /// Run a host command (a JSON request, as `plughost ctl` sends it) and
    /// return the host's JSON answer; the error is the text the plugin is
    /// given (the shape of the plugin ABI's `call`).
    fn call(&self, request: &str) -> Result<String, String>;

    /// Run a host command without waiting for its answer.
    fn cast(&self, request: &str);

    /// The instance is gone (its drop, a C plugin's `destroy`, returned):
    /// from now on a publish, from whatever thread of the plugin's still
    /// holds the host, is refused ([`PublishError::Ended`]), never routed
    /// under the name of an instance that no longer exists.
    fn retire(&self) {}

    /// The calling thread acts for the instance's own thread (a process
    /// instance's pump): its publishes wait on full mailboxes as the
    /// instance's thread's do.
    fn adopt_thread(&self) {}

    /// A publish refused before it reached the bus (by the plugin's own
    /// process, which checks the same limits, or for a C content type no
    /// host knows): counted and logged once, on the host's side (a plugin's
    /// process tells the host).
    fn refused(&self, reason: Reason, message: &str);

    /// A C plugin's publish, its content type given as its number: refused
    /// (counted as `invalid_content`, and said in the log) when the number
    /// is not one this host knows.
    fn publish_numbered(&self, topic: &str, payload: &[u8], content_type: i32) -> bool {
        match u8::try_from(content_type)
            .ok()
            .and_then(ContentType::from_known)
        {
            Some(content) => self.publish(topic, payload, content).is_ok(),
            None => {
                let message = format!("unknown content type {content_type}");
                self.refused(Reason::InvalidContent, &message);
                false
            }
        }
    }
}

/// Route a plugin's log line into `tracing`, tagged with its instance name,
/// cut to [`text::MAX_MESSAGE_BYTES`] (with a marker) in either isolation mode.
pub(crate) fn plugin_log(name: &str, level: LogLevel, message: &str) {
    const TARGET: &str = "plughost::plugin";
    let message = text::cut(message);
    // A newline in a plugin's message must not forge a line of the host's.
    let message = text::Escaped(&message);
    match level {
        LogLevel::Error => tracing::error!(target: TARGET, plugin = name, "{message}"),
        LogLevel::Warn => tracing::warn!(target: TARGET, plugin = name, "{message}"),
        LogLevel::Info => tracing::info!(target: TARGET, plugin = name, "{message}"),
        LogLevel::Debug => tracing::debug!(target: TARGET, plugin = name, "{message}"),
        LogLevel::Trace => tracing::trace!(target: TARGET, plugin = name, "{message}"),
    }
}
