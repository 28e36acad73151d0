//! Starting an instance: its slot on the bus, the factory its worker makes
//! (and remakes, at every restart) its plugin with, in a thread or in a
//! process of its own, and the wait for its first `init`.

use super::error::StartError;
use super::handle::WorkerHandle;
use super::local::LocalHost;
use super::policy::Supervision;
use super::running::Supervisor;
use crate::config::{Isolation, PluginConfig};
use crate::library::process::{self, frame};
use crate::library::{Language, Library, Trust};
use crate::mailbox::{Slot, State};
use crate::observe::lifecycle;
use crate::worker::{Control, Factory, Init, Worker, incarnate};
use crossbeam_channel::Sender;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Which start of an instance [`Supervisor::launch`] runs.
#[derive(Clone, Copy)]
pub(crate) enum Start<'a> {
    /// At the host's start: a required instance that cannot start stops the
    /// host's start (the caller decides); `cancelled` aborts the wait.
    Initial { cancelled: &'a AtomicBool },
    /// Later (`ctl start`): announced as started.
    Later,
    /// A reload's restart on a new mailbox: announced as restarted.
    Reload,
}

/// The language of `library`, as reports name it.
pub(super) fn language(library: &Library) -> &'static str {
    match library.language {
        Language::Rust => "rust",
        Language::C => "c",
    }
}

impl Supervisor {
    /// The factory a worker makes (and remakes) its instance with.
    pub(super) fn factory(
        &self,
        plugin: &PluginConfig,
        library: Arc<Library>,
        slot: &Arc<Slot>,
        control: &Sender<Control>,
    ) -> Factory {
        let (slot, bus, control, commands) = (
            slot.clone(),
            self.bus.clone(),
            control.clone(),
            self.commands.clone(),
        );
        let (isolation, trust, config_json) = (
            plugin.isolation,
            Trust::of(plugin),
            plugin.config.to_string(),
        );
        let limits = frame::Limits {
            max_event_bytes: self.config().host.max_event_bytes,
        };
        Arc::new(move || {
            let local = LocalHost::new(slot.clone(), bus.clone(), commands.clone());
            match isolation {
                Isolation::Thread => library.create(&config_json, local),
                Isolation::Process => {
                    let child = slot.child.clone();
                    let (control, slot) = (control.clone(), slot.clone());
                    // The child's end, however it comes: a failure for the
                    // restart policy, unless the instance was replaced since.
                    let died = Box::new(move |pid, failure| {
                        if control.send(Control::Died { pid, failure }).is_ok() {
                            slot.control_pending.store(true, Ordering::Release);
                        }
                    });
                    process::spawn(&library, &trust, &config_json, local, child, died, limits)
                }
            }
        })
    }

    /// A slot for `plugin`, at the end of the bus's list, not yet attached.
    /// It carries on the totals of the last slot of the same name, if a
    /// reload replaced or removed one: counts belong to the name.
    pub(super) fn new_slot(&self, plugin: &PluginConfig, library: &Library) -> Arc<Slot> {
        let slots = self.bus.slots();
        let predecessor = slots.iter().rev().find(|slot| *slot.name == plugin.name);
        Arc::new(Slot::new(
            slots.len(),
            plugin,
            library.path.display().to_string(),
            language(library),
            predecessor.map(|slot| &**slot),
        ))
    }

    /// A new slot for `plugin`, attached to the bus, and its worker started.
    pub(crate) fn spawn(
        &self,
        plugin: &PluginConfig,
        library: Arc<Library>,
        start: Start<'_>,
    ) -> Result<(), StartError> {
        let slot = self.new_slot(plugin, &library);
        self.bus.attach(slot.clone());
        let (handle, outcome) = self.launch(slot, plugin, library, start);
        self.workers().push(handle);
        outcome
    }

    /// Start an instance in `slot` on a thread of its own and wait for its
    /// `init`, up to the plugin's `start_timeout`. The handle comes back
    /// either way (an instance that failed to start stays listed). An
    /// instance that cannot start fails under its restart policy (it is
    /// restarted in the background if the policy says so), except a
    /// required one at the host's start, which stays failed: the caller
    /// gives up the host's start.
    pub(super) fn launch(
        &self,
        slot: Arc<Slot>,
        plugin: &PluginConfig,
        library: Arc<Library>,
        start: Start<'_>,
    ) -> (WorkerHandle, Result<(), StartError>) {
        let bus = self.bus.clone();
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        let make = self.factory(plugin, library.clone(), &slot, &control_tx);
        slot.stop_asked.store(false, Ordering::Release);
        // A mailbox already taking events for it (see `swap_mailbox`) keeps
        // taking them while the instance starts.
        if slot.state() != State::Restarting {
            slot.set_state(State::Starting);
        }
        let mut handle = WorkerHandle {
            slot: slot.clone(),
            control: control_tx,
            done: done_rx,
            thread: None,
            plugin: plugin.clone(),
            library,
        };
        let mut worker = Worker::new(
            slot.clone(),
            bus.clone(),
            make.clone(),
            Supervision::new(plugin),
            control_rx,
            done_tx,
        );
        let cancelled = match start {
            Start::Initial { cancelled } => Some(cancelled),
            Start::Later | Start::Reload => None,
        };
        let name = plugin.name.clone();
        let failure = match incarnate(&slot, &make, plugin.start_timeout, cancelled) {
            Init::Ready { worker: to, thread } => {
                slot.set_state(State::Running);
                match start {
                    Start::Reload => lifecycle::restarted(&bus, &slot),
                    Start::Initial { .. } | Start::Later => lifecycle::started(&bus, &slot),
                }
                // Its thread waits for nothing else: it cannot be gone.
                let _ = to.send(worker);
                handle.thread = Some(thread);
                return (handle, Ok(()));
            }
            Init::Failed(failure) => failure,
            Init::NoThread(cause) => {
                let reason = format!("cannot start its thread: {cause}");
                lifecycle::failed(&bus, &slot, reason, State::Failed);
                slot.drop_queued();
                return (handle, Err(StartError::Spawn { name, cause }));
            }
            Init::Cancelled => {
                slot.set_last_error("startup cancelled during its init".to_owned());
                slot.set_state(State::Failed);
                slot.drop_queued();
                return (handle, Err(StartError::Cancelled));
            }
        };
        let reason = failure.to_string();
        let error = StartError::Init {
            name,
            library: slot.library(),
            reason: reason.clone(),
        };
        if cancelled.is_some() && plugin.required {
            lifecycle::failed(&bus, &slot, format!("init {reason}"), State::Failed);
            slot.drop_queued();
            return (handle, Err(error));
        }
        // Not required, or after the host's start: a failure like any
        // other, and the restart policy decides, on a thread of its own.
        worker.fail_init(failure);
        let supervisor = std::thread::Builder::new()
            .name(format!("plughost:{}", plugin.name))
            .spawn(move || worker.run());
        match supervisor {
            Ok(thread) => handle.thread = Some(thread),
            Err(cause) => {
                tracing::error!(plugin = %plugin.name, "cannot start its thread: {cause}; it stays failed");
                slot.set_state(State::Failed);
                slot.drop_queued();
            }
        }
        (handle, Err(error))
    }
}
