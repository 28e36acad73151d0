//! What a plugin can ask of the host: its name, publishing, logging.

use crate::abi::{HostHandle, LogLevel};
use crate::{ContentType, Result};
use serde::Serialize;
use std::fmt::Display;

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
    /// routed like any other one, including back to this plugin if it
    /// subscribes to the topic.
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
        self.host
            .publish_typed(topic, text.as_bytes(), ContentType::Text)
            .map_err(Into::into)
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
