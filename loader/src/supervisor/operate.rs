//! An operator's orders about one instance (`stop`, `start`, `restart`),
//! and HTTP requests forwarded to an instance's routes.

use super::error::InstanceError;
use super::handle::{STOP_WAIT, WorkerHandle};
use super::launch::{Start, language};
use super::policy::Supervision;
use super::running::Supervisor;
use crate::config::PluginConfig;
use crate::library::Library;
use crate::mailbox::{Slot, State};
use crate::observe::lifecycle;
use crate::worker::{Control, Reply};
use crossbeam_channel::Receiver;
use plughost_api::{HttpRequest, HttpResponse};
use std::sync::Arc;

/// An instance's answer to a forwarded HTTP request: its response, `None`
/// when it serves no such route after all, or why the call failed.
pub(crate) type RouteAnswer = Result<Option<HttpResponse>, String>;

/// A replacement ordered (see [`Supervisor::order_replace`]): the slot, and
/// where the worker says how it went.
pub(super) type Replacing = (Arc<Slot>, Receiver<Result<(), InstanceError>>);

impl Supervisor {
    /// Stop instance `name` after it has handled its queue (`stop` runs).
    /// It stays listed, `stopped`, and `start` brings it back.
    pub(crate) fn stop_instance(&self, name: &str) -> Result<(), InstanceError> {
        // An unknown name fails at once, without waiting for other changes.
        self.with_worker(name, |_| Ok(()))?;
        let _changes = self.change();
        let waiter = self.with_worker(name, |handle| match handle.stop_order(true) {
            Some(waiter) => Ok(waiter),
            None if handle.slot.state() == State::Stopped => Err(InstanceError::AlreadyStopped {
                name: name.to_owned(),
            }),
            None => Err(InstanceError::NotRunning {
                name: name.to_owned(),
                state: handle.slot.state().as_str(),
            }),
        })?;
        waiter.finish(&self.bus)
    }

    /// Start instance `name` again after a stop, a failure or flapping.
    pub(crate) fn start_instance(&self, name: &str) -> Result<(), InstanceError> {
        // An unknown name fails at once, without waiting for other changes.
        self.with_worker(name, |_| Ok(()))?;
        let _changes = self.change();
        self.start_locked(name)
    }

    fn start_locked(&self, name: &str) -> Result<(), InstanceError> {
        let (slot, plugin, library, waiter) = self.with_worker(name, |handle| {
            let state = handle.slot.state();
            let down = matches!(state, State::Failed | State::Flapping | State::Stopped);
            if handle.is_alive() && !down {
                return Err(InstanceError::AlreadyRunning {
                    name: name.to_owned(),
                });
            }
            // A failed, flapping or stopped instance's thread waits for
            // orders only: end it.
            let waiter = handle.stop_order(false);
            Ok((
                handle.slot.clone(),
                handle.plugin.clone(),
                handle.library.clone(),
                waiter,
            ))
        })?;
        if let Some(waiter) = waiter {
            let _ = waiter.done.recv_timeout(STOP_WAIT);
        }
        let (new_handle, outcome) = self.launch(slot, &plugin, library, Start::Later);
        self.with_worker(name, |handle| {
            *handle = new_handle;
            Ok(())
        })?;
        Ok(outcome?)
    }

    /// Restart instance `name`: a fresh `init` with its config, its queue kept.
    pub(crate) fn restart_instance(&self, name: &str) -> Result<(), InstanceError> {
        // An unknown name fails at once, without waiting for other changes.
        self.with_worker(name, |_| Ok(()))?;
        let _changes = self.change();
        let running = self.with_worker(name, |handle| {
            Ok(handle.is_alive() && handle.slot.state() == State::Running)
        })?;
        if !running {
            return self.start_locked(name);
        }
        let replacing = self.with_worker(name, |handle| {
            let (plugin, library) = (handle.plugin.clone(), handle.library.clone());
            Ok(self.order_replace(handle, &plugin, library))
        })?;
        self.await_replace(replacing)
    }

    /// Have `handle`'s thread swap its plugin for a fresh one made from
    /// `plugin` and `library`, keeping the mailbox. Wait with `await_replace`,
    /// after letting go of the workers' lock.
    pub(super) fn order_replace(
        &self,
        handle: &mut WorkerHandle,
        plugin: &PluginConfig,
        library: Arc<Library>,
    ) -> Replacing {
        let slot = handle.slot.clone();
        slot.configure(
            plugin,
            library.path.display().to_string(),
            language(&library),
        );
        self.bus.refresh();
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        let factory = self.factory(plugin, library.clone(), &slot, &handle.control);
        handle.order(Control::Replace {
            factory,
            supervision: Supervision::new(plugin),
            reply: reply_tx,
        });
        handle.plugin = plugin.clone();
        handle.library = library;
        (slot, reply_rx)
    }

    pub(super) fn await_replace(&self, (slot, reply): Replacing) -> Result<(), InstanceError> {
        // The old instance's queue and `stop`, then the new one's `init`,
        // which gives up by itself at its `start_timeout`.
        let patience = STOP_WAIT + slot.settings().start_timeout;
        let outcome = reply
            .recv_timeout(patience)
            .map_err(|_| InstanceError::RestartTimeout {
                name: slot.name.to_string(),
                waited: patience,
            })?;
        if outcome.is_ok() {
            lifecycle::restarted(&self.bus, &slot);
        }
        outcome
    }

    /// Whether instance `name` (not retired) serves `path`.
    pub(crate) fn serves(&self, name: &str, path: &str) -> bool {
        self.with_worker(name, |handle| Ok(handle.slot.serves(path)))
            .unwrap_or(false)
    }

    /// Forward an HTTP request to instance `name`'s route: it is answered on
    /// the instance's thread, through `reply`. False (and `reply` dropped)
    /// when no such instance serves the request's path.
    pub(crate) fn route(
        &self,
        name: &str,
        request: HttpRequest,
        reply: Reply<RouteAnswer>,
    ) -> bool {
        self.with_worker(name, |handle| {
            if !handle.slot.serves(&request.path) {
                return Ok(false);
            }
            handle.order(Control::Http(request, reply));
            Ok(true)
        })
        .unwrap_or(false)
    }
}
