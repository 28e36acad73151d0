//! The host itself, as its plugin instances see it ([`LocalHost`]): a thread
//! instance's context calls, and what a process instance's child sends to
//! the host. Publishes go on the bus from the instance's slot, logs to the
//! host's log; calls and casts go to the host's commands, which this layer
//! does not know: the host hands them down as [`Commands`] when it starts.

use crate::bus::Bus;
use crate::event::Name;
use crate::intake::{PublishError, Publisher, Reason};
use crate::library::{PluginHost, plugin_log};
use crate::mailbox::Slot;
use plughost_api::{ContentType, LogLevel};
use std::sync::Arc;

/// The host's commands as a plugin's `call` and `cast` reach them (the
/// `commands` module implements it). A command about the calling instance
/// itself must not run on the caller's thread: it would wait for itself.
pub(crate) trait Commands: Send + Sync {
    /// Run `request` (JSON) for the instance `caller`; its JSON answer, or
    /// the text the plugin is given when it cannot run.
    fn call(&self, caller: &Name, request: &str) -> Result<String, String>;

    /// Run `request` for `caller` without waiting for it.
    fn cast(&self, caller: &Name, request: &str);
}

/// The host side of an instance, in the host's process.
pub(crate) struct LocalHost {
    pub slot: Arc<Slot>,
    pub bus: Arc<Bus>,
    pub commands: Arc<dyn Commands>,
}

impl PluginHost for LocalHost {
    fn instance_name(&self) -> &str {
        &self.slot.name
    }

    fn publish(
        &self,
        topic: &str,
        payload: &[u8],
        content: ContentType,
    ) -> Result<(), PublishError> {
        self.bus
            .publish(&self.slot, topic, payload.into(), content)
            .map(|_| ())
    }

    fn log(&self, level: LogLevel, message: &str) {
        plugin_log(&self.slot.name, level, message);
    }

    fn call(&self, request: &str) -> Result<String, String> {
        self.commands.call(&self.slot.name, request)
    }

    fn cast(&self, request: &str) {
        self.commands.cast(&self.slot.name, request);
    }

    fn refused(&self, reason: Reason, message: &str) {
        self.bus.refusals.count_reason(Publisher::Plugin, reason);
        self.log(LogLevel::Warn, &format!("publish refused: {message}"));
    }
}
