//! The host itself, as its plugin instances see it ([`LocalHost`]): a thread
//! instance's context calls, and what a process instance's child sends to
//! the host. Publishes go on the bus from the instance's slot, logs to the
//! host's log; calls and casts go to the host's commands, which this layer
//! does not know: the host hands them down as [`Commands`] when it starts.
//!
//! One [`LocalHost`] per incarnation: a restarted instance is a new one, and
//! what its predecessor's threads still publish is refused.

use crate::bus::{Bus, Origin};
use crate::event::Name;
use crate::intake::{PublishError, Publisher, Reason};
use crate::library::{PluginHost, plugin_log};
use crate::mailbox::Slot;
use plughost_api::{ContentType, LogLevel};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    /// On an instance's own thread (and a process instance's pump), the
    /// address of its incarnation's [`LocalHost`]; 0 on every other thread.
    static INSTANCE_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

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
    slot: Arc<Slot>,
    bus: Arc<Bus>,
    commands: Arc<dyn Commands>,
    /// Until the instance is dropped ([`PluginHost::retire`]).
    live: AtomicBool,
}

impl LocalHost {
    /// The host side of a new incarnation of `slot`'s instance, made on the
    /// thread that becomes the instance's own (`incarnate` runs the factory
    /// there).
    pub(crate) fn new(slot: Arc<Slot>, bus: Arc<Bus>, commands: Arc<dyn Commands>) -> Arc<Self> {
        let local = Arc::new(LocalHost {
            slot,
            bus,
            commands,
            live: AtomicBool::new(true),
        });
        local.adopt_thread();
        local
    }
}

impl PluginHost for LocalHost {
    fn instance_name(&self) -> &str {
        &self.slot.name
    }

    /// From the instance's own thread, the instance waits on full mailboxes
    /// (and may close a cycle of waits); from another of the plugin's
    /// threads, only that thread waits. Either way the event is the
    /// instance's: its name is the source, and it is not delivered back to
    /// it unless `echo = true`.
    fn publish(
        &self,
        topic: &str,
        payload: &[u8],
        content: ContentType,
    ) -> Result<(), PublishError> {
        if !self.live.load(Ordering::Acquire) {
            let name = self.slot.name.to_string();
            return Err(PublishError::Ended { name });
        }
        let own = INSTANCE_THREAD.with(|own| own.get()) == std::ptr::from_ref(self) as usize;
        let origin = match own {
            true => Origin::instance(&self.slot),
            false => Origin::instance_elsewhere(&self.slot),
        };
        let source = self.slot.name.clone();
        self.bus
            .publish_from(
                Publisher::Plugin,
                origin,
                source,
                topic,
                (payload.into(), content),
            )
            .map(|_| ())
            .inspect_err(|error| {
                // Counted by the bus; said here, once, as a plugin may drop
                // the error on the floor.
                if error.reason().is_some() {
                    self.log(LogLevel::Warn, &format!("publish refused: {error}"));
                }
            })
    }

    fn retire(&self) {
        self.live.store(false, Ordering::Release);
    }

    fn adopt_thread(&self) {
        let mark = std::ptr::from_ref(self) as usize;
        INSTANCE_THREAD.with(|own| own.set(mark));
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
