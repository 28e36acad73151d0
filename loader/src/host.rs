//! The host: loads the configured libraries, runs each instance on its own
//! thread, routes events, and shuts down in order.
//!
//! Shutdown drains before it stops: intake closes, every queue empties (the
//! bus balance settles), then instances stop in reverse start order, and the
//! bus settles again after each, so what a plugin publishes from `stop` still
//! reaches the instances started before it.

use crate::bus::Bus;
use crate::config::Config;
use crate::instance::{CallFailure, Control, Counts, Slot, State, Worker};
use crate::library::{self, LoadError};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use plughost_api::topic::TopicError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Extra time an instance gets to run `stop` once the drain deadline passed.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A library could not be found or loaded.
    #[error("plugin `{name}`: {cause}")]
    Load {
        /// The instance.
        name: String,
        /// Why.
        cause: LoadError,
    },
    /// A plugin's `init` returned an error or panicked.
    #[error("plugin `{name}` failed to initialize: {reason}")]
    Init {
        /// The instance.
        name: String,
        /// What the plugin said.
        reason: String,
    },
    /// The OS refused a thread.
    #[error("plugin `{name}`: cannot start its thread: {cause}")]
    Spawn {
        /// The instance.
        name: String,
        /// What the OS said.
        cause: std::io::Error,
    },
}

/// Why an event was not published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The host no longer takes events from outside.
    #[error("the host is shutting down")]
    ShuttingDown,
    /// The topic is not a valid concrete topic.
    #[error(transparent)]
    Topic(#[from] TopicError),
}

/// One instance as operators see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstanceReport {
    /// Instance name.
    pub name: String,
    /// Library file.
    pub library: String,
    /// Lifecycle state (`running`, `failed`, `stopped`, ...).
    pub state: &'static str,
    /// Event counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// Events waiting in its mailbox.
    pub queue_depth: usize,
    /// Mailbox capacity.
    pub queue_capacity: usize,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

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
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    bus: Arc<Bus>,
    workers: Mutex<Vec<WorkerHandle>>,
    intake_open: AtomicBool,
}

struct WorkerHandle {
    slot: Arc<Slot>,
    control: Sender<Control>,
    /// Disconnects when the thread ends.
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Host {
    /// Load every enabled plugin's library, then start the instances in
    /// config order, each one's `init` on its own thread. If any fails, the
    /// ones already started are stopped and the error is returned.
    pub fn start(config: Config) -> Result<Host, StartError> {
        let base = config.base_dir();
        let mut libraries = Vec::new();
        for plugin in config.plugins.iter().filter(|p| p.enabled) {
            let load = || {
                library::open(&library::resolve(
                    &plugin.library,
                    &config.host.plugin_dirs,
                    &base,
                )?)
            };
            let library = load().map_err(|cause| StartError::Load {
                name: plugin.name.clone(),
                cause,
            })?;
            libraries.push((plugin.clone(), library));
        }
        let host = Host {
            inner: Arc::new(Inner {
                config,
                bus: Arc::new(Bus::new()),
                workers: Mutex::new(Vec::new()),
                intake_open: AtomicBool::new(true),
            }),
        };
        for (plugin, library) in libraries {
            if let Err(error) = host.spawn(&plugin, library) {
                host.shutdown();
                return Err(error);
            }
        }
        Ok(host)
    }

    fn spawn(
        &self,
        plugin: &crate::config::PluginConfig,
        library: Arc<library::Library>,
    ) -> Result<(), StartError> {
        let bus = self.inner.bus.clone();
        let slot = Arc::new(Slot::new(
            bus.slots().len(),
            plugin,
            library.path.display().to_string(),
        ));
        bus.attach(slot.clone());
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        let (init_tx, init_rx) = crossbeam_channel::bounded::<Result<(), CallFailure>>(1);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        let config_json = plugin.config.to_string();
        let thread = {
            let slot = slot.clone();
            let bus = bus.clone();
            std::thread::Builder::new()
                .name(format!("plughost:{}", plugin.name))
                .spawn(move || {
                    let _done = done_tx;
                    match library.create(&config_json, slot.clone(), bus.clone()) {
                        Ok(instance) => {
                            slot.set_state(State::Running);
                            let _ = init_tx.send(Ok(()));
                            Worker {
                                slot,
                                bus,
                                instance: Some(instance),
                                control: control_rx,
                                errors_logged: 0,
                            }
                            .run();
                        }
                        Err(failure) => {
                            slot.set_state(State::Failed);
                            let _ = init_tx.send(Err(failure));
                        }
                    }
                })
        }
        .map_err(|cause| StartError::Spawn {
            name: plugin.name.clone(),
            cause,
        })?;
        self.inner
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(WorkerHandle {
                slot: slot.clone(),
                control: control_tx,
                done: done_rx,
                thread: Some(thread),
            });
        let outcome = init_rx
            .recv()
            .unwrap_or_else(|_| Err(CallFailure::Panic("init thread ended".into())));
        let lifecycle = serde_json::json!({"name": plugin.name, "library": slot.library});
        match outcome {
            Ok(()) => {
                tracing::info!(plugin = %plugin.name, library = %slot.library, "started");
                bus.publish_host("plughost.plugin.started", lifecycle);
                Ok(())
            }
            Err(failure) => {
                let reason = failure.to_string();
                slot.fail(&bus, format!("init {reason}"));
                Err(StartError::Init {
                    name: plugin.name.clone(),
                    reason,
                })
            }
        }
    }

    /// Publish `payload` on `topic` as the host. Under the `block` policy this
    /// waits for room in full mailboxes. Returns the event's id.
    pub fn publish(&self, topic: &str, payload: impl Into<Box<[u8]>>) -> Result<u64, PublishError> {
        if !self.inner.intake_open.load(Ordering::Acquire) {
            return Err(PublishError::ShuttingDown);
        }
        Ok(self.inner.bus.publish(None, topic, payload.into())?)
    }

    /// The loaded config.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Every instance's state and counts, in start order.
    pub fn report(&self) -> Vec<InstanceReport> {
        self.inner
            .bus
            .slots()
            .iter()
            .map(|slot| report(slot))
            .collect()
    }

    /// Stop taking events from outside; plugins may still publish.
    pub fn close_intake(&self) {
        self.inner.intake_open.store(false, Ordering::Release);
    }

    /// Drain and stop, within the config's `shutdown_timeout`. Events still
    /// queued when it runs out are dropped and counted. Returns the final report.
    /// Calling it again returns the report without doing anything.
    pub fn shutdown(&self) -> Vec<InstanceReport> {
        self.close_intake();
        let deadline = Instant::now() + self.inner.config.host.shutdown_timeout;
        let bus = &self.inner.bus;
        if !self.wait_idle(deadline) {
            tracing::warn!(
                "shutdown_timeout reached with events still queued; they are dropped and counted"
            );
        }
        let workers =
            std::mem::take(&mut *self.inner.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for mut worker in workers.into_iter().rev() {
            let drain = Instant::now() < deadline;
            if !drain {
                worker.slot.interrupt.store(true, Ordering::Relaxed);
            }
            let _ = worker.control.send(Control::Stop { drain });
            let patience = deadline.saturating_duration_since(Instant::now()) + STOP_GRACE;
            match worker.done.recv_timeout(patience) {
                Err(RecvTimeoutError::Timeout) => {
                    let reason =
                        format!("did not stop within {patience:?}; its thread is abandoned");
                    tracing::error!(plugin = %worker.slot.name, "{reason}");
                    worker.slot.set_last_error(reason);
                    worker.slot.set_state(State::Failed);
                    continue;
                }
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {}
            }
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
            let slot = &worker.slot;
            if slot.state() == State::Stopped {
                tracing::info!(plugin = %slot.name, "stopped");
                bus.publish_host(
                    "plughost.plugin.stopped",
                    serde_json::json!({"name": &*slot.name, "library": slot.library}),
                );
            }
            // Events that slipped in after the thread's last look: count them.
            while slot.rx.try_recv().is_ok() {
                let discarded = &slot.stats.consumer.discarded;
                discarded.store(discarded.load(Ordering::Relaxed) + 1, Ordering::Release);
            }
            self.wait_idle(deadline);
        }
        bus.close();
        self.report()
    }

    /// Wait until no event is queued or in a handler anywhere, or `deadline`.
    fn wait_idle(&self, deadline: Instant) -> bool {
        let mut previous = None;
        loop {
            let balance = self.inner.bus.balance();
            if balance.0 == balance.1 && previous == Some(balance) {
                return true;
            }
            previous = Some(balance);
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn report(slot: &Slot) -> InstanceReport {
    InstanceReport {
        name: slot.name.to_string(),
        library: slot.library.clone(),
        state: slot.state().as_str(),
        counts: slot.counts(),
        queue_depth: slot.rx.len(),
        queue_capacity: slot.capacity,
        last_error: slot.last_error(),
    }
}
