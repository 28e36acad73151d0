//! What a plugin can ask of the host: its name, publishing, logging.

use crate::Result;
use crate::abi::{HostHandle, LogLevel};
use abi_stable::std_types::{RSlice, RStr};
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
        self.host.instance_name().as_str()
    }

    /// Publish `payload` on `topic`. The event is routed like any other one,
    /// including back to this plugin if it subscribes to the topic.
    pub fn publish(&self, topic: &str, payload: impl AsRef<[u8]>) -> Result<()> {
        self.host
            .publish(RStr::from_str(topic), RSlice::from_slice(payload.as_ref()))
            .into_result()
            .map_err(|e| e.into_string().into())
    }

    /// Publish `value` serialized as compact JSON.
    pub fn publish_json<T: Serialize + ?Sized>(&self, topic: &str, value: &T) -> Result<()> {
        self.publish(topic, serde_json::to_vec(value)?)
    }

    /// Log through the host at `level`; the line carries this instance's name.
    pub fn log(&self, level: LogLevel, message: impl Display) {
        self.host.log(level, RStr::from_str(&message.to_string()));
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
