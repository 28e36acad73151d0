//! Starting, stopping and replacing instances while the host runs: the
//! worker threads behind each slot, and the operator's commands (stop, start,
//! restart, reload). One change runs at a time.
//!
//! A reload keeps every unchanged instance running with its queue; a changed
//! one keeps its mailbox too (its thread stops the old plugin and inits the
//! new one, so nothing queued is lost) unless its `queue_capacity` changed,
//! which needs a new mailbox: new events go to the new mailbox at once and
//! wait there while the old instance handles what it had queued; then the
//! new instance starts (see [`Host::swap_mailbox`]).

pub(crate) mod policy;

use crate::bus::Bus;
use crate::config::{Config, Isolation, PluginConfig};
use crate::host::{Host, StartError};
use crate::intake::{PublishError, Publisher, Reason};
use crate::library::process;
use crate::library::{self, Library, PluginHost, plugin_log};
use crate::mailbox::{Slot, State};
use crate::observe::lifecycle;
use crate::worker::{Control, Factory, Init, Reply, Worker, incarnate};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use plughost_api::{HttpRequest, HttpResponse};
use policy::Supervision;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long an operator's stop waits for an instance to finish its queue.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// How long the old mailbox must stay empty, after a reload moved its
/// instance's routes to a new mailbox, before the old instance stops.
const SWITCH_GRACE: Duration = Duration::from_millis(50);

/// The host's handle on one instance's thread.
pub(crate) struct WorkerHandle {
    pub slot: Arc<Slot>,
    pub control: Sender<Control>,
    /// Disconnects when the thread ends.
    pub done: Receiver<()>,
    pub thread: Option<JoinHandle<()>>,
    /// The config and library the instance runs with.
    pub plugin: PluginConfig,
    pub library: Arc<Library>,
}

impl WorkerHandle {
    /// Put `order` on the control lane and have the thread look there before
    /// its next event (send first: the thread clears the flag, then reads).
    pub(crate) fn order(&self, order: Control) {
        if let Control::Stop { .. } | Control::StopInPlace { .. } = order {
            self.slot.stop_asked.store(true, Ordering::Release);
        }
        if self.control.send(order).is_ok() {
            self.slot.control_pending.store(true, Ordering::Release);
        }
    }

    /// Order a stop after the queue; what to wait on, if the thread runs.
    fn stop_order(&self, drain: bool) -> Option<Waiter> {
        if !self.is_alive() {
            return None;
        }
        self.order(Control::Stop { drain });
        Some(Waiter {
            slot: self.slot.clone(),
            done: self.done.clone(),
        })
    }

    /// Whether the instance's thread still runs.
    pub(crate) fn is_alive(&self) -> bool {
        matches!(
            self.done.try_recv(),
            Err(crossbeam_channel::TryRecvError::Empty)
        )
    }
}

/// What to wait on for a worker to finish, without holding the workers' lock.
struct Waiter {
    slot: Arc<Slot>,
    done: Receiver<()>,
}

impl Waiter {
    /// Wait for the thread to end.
    fn wait(&self) -> Result<(), String> {
        // Nothing is ever sent on `done`: it disconnects when the thread ends.
        match self.done.recv_timeout(STOP_WAIT) {
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "`{}` did not stop within {STOP_WAIT:?}",
                self.slot.name
            )),
            _ => Ok(()),
        }
    }

    /// Wait for the thread to end; publish `stopped` if it stopped cleanly.
    fn finish(self, bus: &Bus) -> Result<(), String> {
        self.wait()?;
        if self.slot.state() == State::Stopped {
            lifecycle::stopped(bus, &self.slot);
        }
        Ok(())
    }
}

/// Which start of an instance [`Host::launch`] runs.
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

/// An instance's answer to a forwarded HTTP request: its response, `None`
/// when it serves no such route after all, or why the call failed.
pub(crate) type RouteAnswer = Result<Option<HttpResponse>, String>;

/// What a reload changed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReloadReport {
    /// Instances started.
    pub added: Vec<String>,
    /// Instances stopped and removed.
    pub removed: Vec<String>,
    /// Instances restarted with a changed config or library.
    pub restarted: Vec<String>,
    /// Instances left running as they were.
    pub unchanged: Vec<String>,
    /// Changed keys outside `[[plugin]]` that a reload cannot apply (`[host]
    /// control_socket`, `[status] address`, ...): the running values stay
    /// in force until the host restarts.
    pub restart_needed: Vec<String>,
}

fn language(library: &Library) -> &'static str {
    match library.language {
        library::Language::Rust => "rust",
        library::Language::C => "c",
    }
}

/// The factory a worker makes (and remakes) its instance with.
fn factory(
    host: &Host,
    plugin: &PluginConfig,
    library: Arc<Library>,
    slot: &Arc<Slot>,
    control: &Sender<Control>,
) -> Factory {
    let (slot, bus, control, weak) = (
        slot.clone(),
        host.inner.bus.clone(),
        control.clone(),
        Arc::downgrade(&host.inner),
    );
    let (isolation, trust, config_json) = (
        plugin.isolation,
        library::Trust::of(plugin),
        plugin.config.to_string(),
    );
    let limits = process::frame::Limits {
        max_event_bytes: host.config().host.max_event_bytes,
    };
    Arc::new(move || {
        let local = Arc::new(LocalHost {
            slot: slot.clone(),
            bus: bus.clone(),
            host: weak.clone(),
        });
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

/// How long a plugin's `call` waits for a command about another instance.
const CALL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The host itself, as its plugin instances see it (a thread instance, and
/// the host's side of a process instance): publishes go on the bus from the
/// instance's slot, logs to the host's log, calls and casts to the host's
/// commands.
struct LocalHost {
    slot: Arc<Slot>,
    bus: Arc<Bus>,
    /// For `call` / `cast`: the host, unless it is gone.
    host: std::sync::Weak<crate::host::Inner>,
}

impl PluginHost for LocalHost {
    fn instance_name(&self) -> &str {
        &self.slot.name
    }

    fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), PublishError> {
        self.bus
            .publish(&self.slot, topic, payload.into())
            .map(|_| ())
    }

    fn log(&self, level: plughost_api::LogLevel, message: &str) {
        plugin_log(&self.slot.name, level, message);
    }

    fn refused(&self, reason: Reason, message: &str) {
        self.bus.refusals.count_reason(Publisher::Plugin, reason);
        self.log(
            plughost_api::LogLevel::Warn,
            &format!("publish refused: {message}"),
        );
    }

    /// Commands run on a thread of their own, never on the caller's: one
    /// about the caller itself (or a reload) is accepted at once and runs
    /// after the call returns; others are waited for, up to `CALL_WAIT`.
    fn call(&self, request: &str) -> Result<String, String> {
        let host = self
            .host
            .upgrade()
            .map(|inner| crate::host::Host { inner })
            .ok_or("the host is shutting down")?;
        let command = crate::control::parse(request.as_bytes())?;
        let about_myself = command.changes() == Some(&*self.slot.name)
            || matches!(command, crate::control::Command::Reload(_));
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        let caller = crate::control::Caller::Plugin(self.slot.name.clone());
        std::thread::Builder::new()
            .name(format!("plughost:{}:call", self.slot.name))
            .spawn(move || {
                let _ = reply_tx.send(crate::control::run(&host, &caller, command));
            })
            .map_err(|e| format!("cannot run the command: {e}"))?;
        if about_myself {
            return Ok(serde_json::json!({"ok": true, "result": "accepted"}).to_string());
        }
        match reply_rx.recv_timeout(CALL_WAIT) {
            Ok(answer) => Ok(answer.to_string()),
            Err(_) => Err(format!(
                "the command still runs after {CALL_WAIT:?}; not waiting for it"
            )),
        }
    }

    fn cast(&self, request: &str) {
        let Some(host) = self.host.upgrade().map(|inner| crate::host::Host { inner }) else {
            return;
        };
        let request = request.to_owned();
        let name = self.slot.name.clone();
        let _ = std::thread::Builder::new()
            .name(format!("plughost:{name}:cast"))
            .spawn(move || {
                let caller = crate::control::Caller::Plugin(name.clone());
                let answer = crate::control::answer(&host, &caller, request.as_bytes());
                if answer["ok"] != true {
                    let error = answer["error"].as_str().unwrap_or_default();
                    tracing::warn!(plugin = %name, "cast {} failed: {}", crate::text::Escaped(&request), crate::text::Escaped(error));
                }
            });
    }
}
impl Host {
    /// A slot for `plugin`, at the end of the bus's list, not yet attached.
    /// It carries on the totals of the last slot of the same name, if a
    /// reload replaced or removed one: counts belong to the name.
    fn new_slot(&self, plugin: &PluginConfig, library: &Library) -> Arc<Slot> {
        let slots = self.inner.bus.slots();
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
        let bus: &Arc<Bus> = &self.inner.bus;
        let slot = self.new_slot(plugin, &library);
        bus.attach(slot.clone());
        let (handle, outcome) = self.launch(slot, plugin, library, start);
        self.inner
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
        outcome
    }

    /// Start an instance in `slot` on a thread of its own and wait for its
    /// `init`, up to the plugin's `start_timeout`. The handle comes back
    /// either way (an instance that failed to start stays listed). An
    /// instance that cannot start fails under its restart policy (it is
    /// restarted in the background if the policy says so), except a
    /// required one at the host's start, which stays failed: the caller
    /// gives up the host's start.
    fn launch(
        &self,
        slot: Arc<Slot>,
        plugin: &PluginConfig,
        library: Arc<Library>,
        start: Start<'_>,
    ) -> (WorkerHandle, Result<(), StartError>) {
        let bus = self.inner.bus.clone();
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        let make = factory(self, plugin, library.clone(), &slot, &control_tx);
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

    /// Find the (not retired) instance `name`, and run `f` on its handle.
    fn with_worker<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut WorkerHandle) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut workers = self.inner.workers.lock().unwrap_or_else(|e| e.into_inner());
        let handle = workers
            .iter_mut()
            .find(|w| &*w.slot.name == name && !w.slot.retired.load(Ordering::Acquire))
            .ok_or_else(|| format!("no plugin instance named `{name}`"))?;
        f(handle)
    }

    /// Stop instance `name` after it has handled its queue (`stop` runs).
    /// It stays listed, `stopped`, and `start` brings it back.
    pub fn stop_instance(&self, name: &str) -> Result<(), String> {
        // An unknown name fails at once, without waiting for other changes.
        self.with_worker(name, |_| Ok(()))?;
        let _changes = self.inner.changes.lock().unwrap_or_else(|e| e.into_inner());
        let waiter = self.with_worker(name, |handle| match handle.stop_order(true) {
            Some(waiter) => Ok(waiter),
            None if handle.slot.state() == State::Stopped => {
                Err(format!("`{name}` is already stopped"))
            }
            None => Err(format!(
                "`{name}` is not running ({})",
                handle.slot.state().as_str()
            )),
        })?;
        waiter.finish(&self.inner.bus)
    }

    /// Start instance `name` again after a stop, a failure or flapping.
    pub fn start_instance(&self, name: &str) -> Result<(), String> {
        // An unknown name fails at once, without waiting for other changes.
        self.with_worker(name, |_| Ok(()))?;
        let _changes = self.inner.changes.lock().unwrap_or_else(|e| e.into_inner());
        self.start_locked(name)
    }

    fn start_locked(&self, name: &str) -> Result<(), String> {
        let (slot, plugin, library, waiter) = self.with_worker(name, |handle| {
            let state = handle.slot.state();
            let down = matches!(state, State::Failed | State::Flapping | State::Stopped);
            if handle.is_alive() && !down {
                return Err(format!("`{name}` is already running"));
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
        let outcome = outcome.map_err(|e| e.to_string());
        self.with_worker(name, |handle| {
            *handle = new_handle;
            Ok(())
        })?;
        outcome
    }

    /// Restart instance `name`: a fresh `init` with its config, its queue kept.
    pub fn restart_instance(&self, name: &str) -> Result<(), String> {
        // An unknown name fails at once, without waiting for other changes.
        self.with_worker(name, |_| Ok(()))?;
        let _changes = self.inner.changes.lock().unwrap_or_else(|e| e.into_inner());
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
    fn order_replace(
        &self,
        handle: &mut WorkerHandle,
        plugin: &PluginConfig,
        library: Arc<Library>,
    ) -> (Arc<Slot>, Receiver<Result<(), String>>) {
        let slot = handle.slot.clone();
        slot.configure(
            plugin,
            library.path.display().to_string(),
            language(&library),
        );
        self.inner.bus.refresh();
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        let factory = factory(self, plugin, library.clone(), &slot, &handle.control);
        handle.order(Control::Replace {
            factory,
            supervision: Supervision::new(plugin),
            reply: reply_tx,
        });
        handle.plugin = plugin.clone();
        handle.library = library;
        (slot, reply_rx)
    }

    fn await_replace(
        &self,
        (slot, reply): (Arc<Slot>, Receiver<Result<(), String>>),
    ) -> Result<(), String> {
        // The old instance's queue and `stop`, then the new one's `init`,
        // which gives up by itself at its `start_timeout`.
        let patience = STOP_WAIT + slot.settings().start_timeout;
        let outcome = reply
            .recv_timeout(patience)
            .map_err(|_| format!("`{}` did not restart within {patience:?}", slot.name))?;
        if outcome.is_ok() {
            lifecycle::restarted(&self.inner.bus, &slot);
        }
        outcome
    }

    /// Re-read the config file and apply the difference. An invalid config
    /// (or a library that cannot be loaded) changes nothing.
    pub fn reload(&self) -> Result<ReloadReport, String> {
        let _changes = self.inner.changes.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.config();
        let mut new = Config::load(&old.path).map_err(|e| e.to_string())?;
        let base = new.base_dir();
        let mut libraries = Vec::new();
        let mut problems = Vec::new();
        for plugin in new.plugins.iter().filter(|p| p.enabled) {
            let opened = library::resolve(&plugin.library, &new.host.plugin_dirs, &base)
                .and_then(|path| library::open(&path, &library::Trust::of(plugin)));
            match opened {
                Ok(library) => libraries.push((plugin.clone(), library)),
                Err(e) => problems.push(format!("plugin `{}`: {e}", plugin.name)),
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }

        let mut report = ReloadReport {
            restart_needed: old.restart_needed(&new),
            ..ReloadReport::default()
        };
        new.keep_start_settings(&old);
        let wanted: Vec<&str> = libraries.iter().map(|(p, _)| p.name.as_str()).collect();
        let removed: Vec<(Arc<Slot>, Option<Waiter>)> = {
            let workers = self.inner.workers.lock().unwrap_or_else(|e| e.into_inner());
            workers
                .iter()
                .filter(|w| {
                    !w.slot.retired.load(Ordering::Acquire) && !wanted.contains(&&*w.slot.name)
                })
                .map(|w| (w.slot.clone(), w.stop_order(true)))
                .collect()
        };
        for (slot, waiter) in removed {
            if let Some(waiter) = waiter {
                let _ = waiter.finish(&self.inner.bus);
            }
            retire(&self.inner.bus, &slot);
            report.removed.push(slot.name.to_string());
        }
        let mut errors = Vec::new();
        for (plugin, library) in libraries {
            let current = self.with_worker(&plugin.name, |h| {
                Ok((h.plugin.clone(), h.library.clone(), h.slot.clone()))
            });
            let outcome = match current {
                Err(_) => {
                    report.added.push(plugin.name.clone());
                    self.spawn(&plugin, library, Start::Later)
                        .map_err(|e| e.to_string())
                }
                Ok((was, was_library, _))
                    if was == plugin && Arc::ptr_eq(&was_library, &library) =>
                {
                    report.unchanged.push(plugin.name.clone());
                    Ok(())
                }
                Ok((was, _, _)) if was.queue_capacity != plugin.queue_capacity => {
                    report.restarted.push(plugin.name.clone());
                    self.swap_mailbox(&plugin, library)
                }
                Ok(_) => {
                    report.restarted.push(plugin.name.clone());
                    self.with_worker(&plugin.name, |handle| {
                        Ok(self.order_replace(handle, &plugin, library))
                    })
                    .and_then(|replacing| self.await_replace(replacing))
                }
            };
            if let Err(e) = outcome {
                errors.push(e);
            }
        }
        self.inner.bus.set_max_event_bytes(new.host.max_event_bytes);
        *self.inner.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        self.start_watchdog();
        let count = self.inner.reloads.fetch_add(1, Ordering::AcqRel) + 1;
        tracing::info!(
            "reload {count}: added {:?}, removed {:?}, restarted {:?}, unchanged {:?}, not applied until a restart {:?}",
            report.added,
            report.removed,
            report.restarted,
            report.unchanged,
            report.restart_needed
        );
        if !errors.is_empty() {
            return Err(format!("reload applied, but: {}", errors.join("; ")));
        }
        Ok(report)
    }

    /// Give instance `plugin.name` a new mailbox (its capacity changed)
    /// without losing or reordering events: the new slot takes the routes
    /// first, and its events wait there while the old instance handles what
    /// it had queued and stops; then the new instance starts on the new
    /// mailbox. Events that reached the old mailbox after it drained (a
    /// publisher still on the old route) are moved over and counted.
    fn swap_mailbox(&self, plugin: &PluginConfig, library: Arc<Library>) -> Result<(), String> {
        let bus: &Arc<Bus> = &self.inner.bus;
        // It carries on the old slot's totals.
        let slot = self.new_slot(plugin, &library);
        // Attached but not routed to until the switch; from the switch on it
        // takes events (under its overflow policy) while nothing consumes them.
        slot.retired.store(true, Ordering::Release);
        slot.set_state(State::Restarting);
        bus.attach(slot.clone());
        let (old, control, done) = self.with_worker(&plugin.name, |handle| {
            handle.slot.retired.store(true, Ordering::Release);
            slot.retired.store(false, Ordering::Release);
            bus.refresh();
            Ok((
                handle.slot.clone(),
                handle.control.clone(),
                handle.done.clone(),
            ))
        })?;
        // The old instance goes on taking its queue while publishers move to
        // the new route. One still on the old route (it looked the route up
        // just before the switch, or waits for room in the full old mailbox)
        // delivers there within moments: let the old mailbox empty and stay
        // empty a little before the old instance stops, so such an event is
        // handled in order rather than moved behind newer ones.
        let deadline = std::time::Instant::now() + STOP_WAIT;
        let mut quiet_since = std::time::Instant::now();
        while std::time::Instant::now() < deadline {
            if !old.rx.is_empty() {
                quiet_since = std::time::Instant::now();
            } else if quiet_since.elapsed() >= SWITCH_GRACE {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let handle = WorkerHandle {
            slot: old.clone(),
            control,
            done,
            thread: None,
            plugin: plugin.clone(),
            library: library.clone(),
        };
        // Not announced as stopped: it restarts (announced by `launch`).
        if let Some(waiter) = handle.stop_order(true) {
            waiter.wait()?;
        }
        let (handle, outcome) = self.launch(slot.clone(), plugin, library, Start::Reload);
        self.inner
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
        move_queue(&old, &slot);
        outcome.map_err(|e| e.to_string())
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

    /// Reloads applied so far.
    pub fn reloads(&self) -> u64 {
        self.inner.reloads.load(Ordering::Acquire)
    }
}

/// Move what waits in `from`'s mailbox (its thread has ended) into `to`'s,
/// in order. Both slots count into the same totals (they have the same
/// name), where each event was counted as received once already.
fn move_queue(from: &Slot, to: &Slot) {
    let mut moved = 0;
    while let Ok(event) = from.rx.try_recv() {
        let producer = &to.stats.producer;
        // Its thread runs: a full mailbox frees up unless the instance failed.
        if let Err(e) = to.tx.send_timeout(event, STOP_WAIT) {
            producer.abandoned.fetch_add(1, Ordering::Relaxed);
            let event = e.into_inner();
            tracing::warn!(plugin = %to.name, "dropped event {} on {}: its new mailbox stayed full", event.id(), crate::text::Escaped(event.topic()));
        }
        moved += 1;
    }
    if moved > 0 {
        tracing::info!(plugin = %to.name, "moved {moved} event(s) from the old mailbox to the new one");
    }
}

/// Take a slot out of routing and listings for good.
fn retire(bus: &Bus, slot: &Slot) {
    // What reached its mailbox after the last look is counted, not lost silently.
    slot.drop_queued();
    slot.retired.store(true, Ordering::Release);
    bus.refresh();
    slot.drop_queued();
}
