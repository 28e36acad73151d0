//! What a plugin can ask of the host: its name, publishing, logging.

use crate::abi::{HostHandle, LogLevel};
use crate::{ContentType, Result};
use serde::Serialize;
use std::fmt::Display;
use std::sync::Arc;

/// Handed to every call into a plugin. Cheap to use from the plugin's thread.
pub struct Context {
    host: HostHandle,
}

impl Context {
    #[doc(hidden)]
    pub fn from_host(host: HostHandle) -> Self {
        Context { host }
    }

    /// This instance's name from `plugins.toml`.
    pub fn name(&self) -> &str {
        self.host.instance_name()
    }

    /// Publish `payload` on `topic`, content type `bytes`. The event is
    /// routed like any other one, but not back to this instance (unless its
    /// `[[plugin]]` table sets `echo = true`).
    pub fn publish(&self, topic: &str, payload: impl AsRef<[u8]>) -> Result<()> {
        self.host
            .publish_typed(topic, payload.as_ref(), ContentType::Bytes)
            .map_err(Into::into)
    }

    /// Publish `value` serialized as compact JSON, content type `json`.
    pub fn publish_json<T: Serialize + ?Sized>(&self, topic: &str, value: &T) -> Result<()> {
        let payload = serde_json::to_vec(value)?;
        self.host
            .publish_typed(topic, &payload, ContentType::Json)
            .map_err(Into::into)
    }

    /// Publish `text`, content type `text`.
    pub fn publish_text(&self, topic: &str, text: &str) -> Result<()> {
        self.publish_typed(topic, text.as_bytes(), ContentType::Text)
    }

    /// Publish `payload` with its content type (the host refuses a `text`
    /// payload that is not UTF-8 and a `json` one that is not JSON): to
    /// pass an event on as it came, `ctx.publish_typed(topic, event.bytes(),
    /// event.content_type())`.
    pub fn publish_typed(&self, topic: &str, payload: &[u8], content: ContentType) -> Result<()> {
        self.host
            .publish_typed(topic, payload, content)
            .map_err(Into::into)
    }

    /// A [`Publisher`]: publishes as this instance from any thread the
    /// plugin owns (a tokio runtime, a socket reader), for as long as this
    /// instance lives.
    pub fn publisher(&self) -> Publisher {
        Publisher {
            host: match self.host.retained() {
                Some(host) => Ok(Arc::new(host)),
                None => Err(Arc::from(self.host.abi_version())),
            },
        }
    }

    /// Run a host command, as `plughost ctl` would, and wait for its result:
    /// `{"cmd": "list"}`, `{"cmd": "restart", "name": "other"}`, ... (see
    /// the control protocol in the README). A command about this instance
    /// itself (stop, restart) or a reload is accepted and runs after the call
    /// returns, so a plugin can never deadlock on itself.
    pub fn call(&self, command: &serde_json::Value) -> Result<serde_json::Value> {
        let answer = self.host.call(&command.to_string())?;
        let mut answer: serde_json::Value = serde_json::from_str(&answer)?;
        match answer["ok"].as_bool() {
            Some(true) => Ok(answer["result"].take()),
            _ => Err(answer["error"]
                .as_str()
                .unwrap_or("the host refused the command")
                .into()),
        }
    }

    /// Run a host command without waiting for it.
    pub fn cast(&self, command: &serde_json::Value) {
        self.host.cast(&command.to_string());
    }

    /// Log through the host at `level`; the line carries this instance's name.
    pub fn log(&self, level: LogLevel, message: impl Display) {
        self.host.log(level, &message.to_string());
    }

    /// Log at error level.
    pub fn error(&self, message: impl Display) {
        self.log(LogLevel::Error, message);
    }

    /// Log at warn level.
    pub fn warn(&self, message: impl Display) {
        self.log(LogLevel::Warn, message);
    }

    /// Log at info level.
    pub fn info(&self, message: impl Display) {
        self.log(LogLevel::Info, message);
    }

    /// Log at debug level.
    pub fn debug(&self, message: impl Display) {
        self.log(LogLevel::Debug, message);
    }
}

/// Publishes as one plugin instance from any thread, made by
/// [`Context::publisher`]; clone it freely.
///
/// Events published through it are this instance's, exactly as
/// [`Context::publish`]'s: its name is their source, they are not delivered
/// back to it (unless `echo = true`), the host's refusals apply (reserved
/// topics, `max_event_bytes`), and they wait for room in full mailboxes
/// under `overflow = "block"` (only the calling thread waits).
///
/// It works for as long as the instance lives: from `init` until the host
/// drops the instance (after `stop`, or when it fails and is restarted).
/// From then on `publish` returns an error; a restarted instance is a new
/// one, with its own `Context` and publishers. Stop the threads that hold
/// it in your plugin's `Drop` (or in `stop`).
///
/// ```
/// # use plughost_api::Publisher;
/// fn assert_shareable<T: Send + Sync + Clone + 'static>() {}
/// assert_shareable::<Publisher>();
/// ```
#[derive(Clone)]
pub struct Publisher {
    /// The host, or (a host older than ABI 1.1) its ABI version.
    host: std::result::Result<Arc<HostHandle>, Arc<str>>,
}

impl Publisher {
    /// Publish `payload` on `topic` as the instance, from any thread,
    /// content type `bytes`.
    pub fn publish(&self, topic: &str, payload: impl AsRef<[u8]>) -> Result<()> {
        self.publish_typed(topic, payload.as_ref(), ContentType::Bytes)
    }

    /// Publish `value` serialized as compact JSON, from any thread, content
    /// type `json`.
    pub fn publish_json<T: Serialize + ?Sized>(&self, topic: &str, value: &T) -> Result<()> {
        self.publish_typed(topic, &serde_json::to_vec(value)?, ContentType::Json)
    }

    /// Publish `text` from any thread, content type `text`.
    pub fn publish_text(&self, topic: &str, text: &str) -> Result<()> {
        self.publish_typed(topic, text.as_bytes(), ContentType::Text)
    }

    /// Publish `payload` from any thread with its content type (the host
    /// checks the payload against it).
    pub fn publish_typed(&self, topic: &str, payload: &[u8], content: ContentType) -> Result<()> {
        match &self.host {
            Ok(host) => host
                .publish_typed(topic, payload, content)
                .map_err(Into::into),
            Err(version) => Err(format!(
                "this host speaks plugin ABI {version}; `Publisher` needs ABI 1.1: upgrade plughost"
            )
            .into()),
        }
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.host.as_ref().map(|host| host.instance_name());
        f.debug_struct("Publisher")
            .field("instance", &name.ok())
            .finish()
    }
}
