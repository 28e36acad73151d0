//! The state of a running host ([`Supervisor`]): the config in force, the
//! bus, the handles of the instances' threads, the host's own background
//! threads, and the flags of its shutdown. Starting, stopping, reloading
//! and watching instances are its methods, each in a file of its own.

use super::error::InstanceError;
use super::handle::WorkerHandle;
use super::local::Commands;
use crate::bus::{Bus, Origin};
use crate::config::Config;
use crate::event::Name;
use crate::intake::{Entry, PublishError, Publisher};
use crate::mailbox::Slot;
use crossbeam_channel::{RecvTimeoutError, Sender};
use plughost_api::ContentType;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// The watchdog's thread name, which shutdown stops last.
pub(crate) const WATCHDOG: &str = "watchdog";

/// The state of a running host.
pub(crate) struct Supervisor {
    /// The config in force; a reload replaces it.
    pub(super) config: RwLock<Arc<Config>>,
    pub(crate) bus: Arc<Bus>,
    pub(super) workers: Mutex<Vec<WorkerHandle>>,
    /// Whether publishing from outside is open.
    pub(super) intake_open: AtomicBool,
    /// Background threads (state pings, watchdog): each stops when sent to.
    pub(super) background: Mutex<Vec<Background>>,
    /// Serialises reloads and operator commands that start or stop instances.
    pub(super) changes: Mutex<()>,
    /// Reloads applied so far.
    pub(super) reloads: AtomicU64,
    /// Whether the watchdog thread runs.
    pub(super) watchdog: AtomicBool,
    /// Set by the first shutdown (intake may close before it).
    pub(super) shutdown_begun: AtomicBool,
    /// What plugins' `call` and `cast` run through.
    pub(super) commands: Arc<dyn Commands>,
}

/// A thread of the host's own, woken every interval until told to stop.
pub(crate) struct Background {
    pub name: &'static str,
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Background {
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

impl Supervisor {
    /// A host for `config`, with no instance yet; `commands` is what its
    /// plugins' `call` and `cast` run through.
    pub(crate) fn new(config: Config, commands: Arc<dyn Commands>) -> Supervisor {
        let metrics_process = config
            .metrics
            .enabled
            .then(|| config.state.process_name.clone());
        let bus = Bus::new(metrics_process, config.host.max_event_bytes);
        Supervisor {
            config: RwLock::new(Arc::new(config)),
            bus: Arc::new(bus),
            workers: Mutex::new(Vec::new()),
            intake_open: AtomicBool::new(true),
            background: Mutex::new(Vec::new()),
            changes: Mutex::new(()),
            reloads: AtomicU64::new(0),
            watchdog: AtomicBool::new(false),
            shutdown_begun: AtomicBool::new(false),
            commands,
        }
    }

    /// The config in force.
    pub(crate) fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Put `config` in force (a reload).
    pub(crate) fn set_config(&self, config: Config) {
        self.bus.set_max_event_bytes(config.host.max_event_bytes);
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    /// The handles of every instance's thread, locked.
    pub(crate) fn workers(&self) -> MutexGuard<'_, Vec<WorkerHandle>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Find the (not retired) instance `name`, and run `f` on its handle.
    pub(crate) fn with_worker<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut WorkerHandle) -> Result<T, InstanceError>,
    ) -> Result<T, InstanceError> {
        let mut workers = self.workers();
        let handle = workers
            .iter_mut()
            .find(|w| &*w.slot.name == name && !w.slot.retired.load(Ordering::Acquire))
            .ok_or_else(|| InstanceError::NotFound {
                name: name.to_owned(),
            })?;
        f(handle)
    }

    /// Hold this while starting, stopping or replacing instances: one change
    /// runs at a time.
    pub(crate) fn change(&self) -> MutexGuard<'_, ()> {
        self.changes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every instance's slot (not retired by a reload), in start order.
    pub(crate) fn slots(&self) -> Vec<Arc<Slot>> {
        let mut slots = self.bus.slots();
        slots.retain(|slot| !slot.retired.load(Ordering::Acquire));
        slots
    }

    /// Whether publishing from outside is closed (shutdown has begun, or is
    /// about to).
    pub(crate) fn is_shutting_down(&self) -> bool {
        !self.intake_open.load(Ordering::Acquire)
    }

    /// Stop taking events from outside; plugins may still publish.
    pub(crate) fn close_intake(&self) {
        self.intake_open.store(false, Ordering::Release);
    }

    /// Mark the shutdown begun; true the first time.
    pub(crate) fn begin_shutdown(&self) -> bool {
        !self.shutdown_begun.swap(true, Ordering::AcqRel)
    }

    /// Reloads applied so far.
    pub(crate) fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Acquire)
    }

    /// Count one more reload applied; its number.
    pub(crate) fn count_reload(&self) -> u64 {
        self.reloads.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Publish `payload` on `topic` as it came in through `entry`, unless
    /// intake is closed (see `Host::publish_from`).
    pub(crate) fn publish_from(
        &self,
        entry: Entry,
        topic: &str,
        payload: Box<[u8]>,
        content: ContentType,
    ) -> Result<u64, PublishError> {
        if self.is_shutting_down() {
            return Err(PublishError::ShuttingDown);
        }
        let source = Name::Interned(entry.source());
        self.bus.publish_from(
            Publisher::Entry(entry),
            Origin::default(),
            source,
            topic,
            (payload, content),
        )
    }

    /// Publish many payloads on one topic through `entry` (see
    /// `Host::publish_batch`).
    pub(crate) fn publish_batch(
        &self,
        entry: Entry,
        topic: &str,
        payloads: Vec<Box<[u8]>>,
    ) -> Result<u64, PublishError> {
        if self.is_shutting_down() {
            return Err(PublishError::ShuttingDown);
        }
        self.bus.publish_batch(entry, topic, payloads)
    }

    /// Run `tick` every `interval` on a thread of its own until shutdown.
    pub(crate) fn every(
        &self,
        name: &'static str,
        interval: Duration,
        mut tick: impl FnMut() + Send + 'static,
    ) {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name(format!("plughost:{name}"))
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(interval) {
                    tick();
                }
            });
        match thread {
            Ok(thread) => self
                .background
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Background {
                    name,
                    stop: stop_tx,
                    thread,
                }),
            Err(e) => tracing::error!("cannot start the {name} thread: {e}"),
        }
    }

    /// Take the background threads, to stop them.
    pub(crate) fn take_background(&self) -> Vec<Background> {
        std::mem::take(&mut *self.background.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
