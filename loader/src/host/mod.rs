//! The host: loads the configured libraries, runs each instance on its own
//! thread, routes events, and shuts down in phases.
//!
//! Shutdown: intake closes; every queue drains (the bus balance settles);
//! every instance's `stop` runs, last started first, while every mailbox
//! still takes events, and what each stop publishes is drained before the
//! next one, so it reaches every subscriber whatever its place in the
//! config; then each instance ends (its thread, its library's `destroy`, its
//! process), and what is still queued for it or published to it afterwards
//! is dropped, counted and logged. All of it within `shutdown_timeout`, plus
//! [`STOP_GRACE`] for the stops and their deliveries (and one more for the
//! stops that time left out), with the watchdog on.

use crate::bus::Bus;
use crate::config::Config;
use crate::config::Isolation;
use crate::library::{self, LoadError};
use crate::mailbox::{Counts, Slot, State};
use crate::observe::lifecycle::{self, Lifecycle};
use crate::supervisor::{Start, WorkerHandle};
use crate::worker::{Control, Probe, ProbeAnswer, Reply};
use crossbeam_channel::{RecvTimeoutError, Sender};
use plughost_api::JobReport;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The watchdog's thread name, which shutdown stops last.
const WATCHDOG: &str = "watchdog";

/// Extra time, past `shutdown_timeout`, for the instances' `stop` and the
/// delivery of what they publish.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// How long instances get to end once their stops are done (a C plugin's
/// `destroy`, a process child's exit), even past the deadline.
const TEARDOWN_GRACE: Duration = Duration::from_secs(1);

/// How long a process instance's thread gets to notice that its child,
/// killed because it did not answer in time, is gone.
const KILL_WAIT: Duration = Duration::from_secs(1);

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
    #[error("plugin `{name}` ({library}) failed to initialize: {reason}")]
    Init {
        /// The instance.
        name: String,
        /// The library file.
        library: String,
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
    /// [`Host::start_cancellable`] was cancelled; what had started was
    /// drained and stopped.
    #[error("startup cancelled; the plugin instances started so far were stopped")]
    Cancelled,
}

pub use crate::intake::{Entry, PublishError, Refused};

/// One instance as operators see it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InstanceReport {
    /// Instance name.
    pub name: String,
    /// Library file.
    pub library: String,
    /// `rust` or `c`.
    pub language: String,
    /// `thread` or `process`.
    pub isolation: String,
    /// How often it was restarted.
    pub restarts: u64,
    /// Lifecycle state (`running`, `failed`, `stopped`, ...), or `stuck` while a
    /// handler has run longer than its `handler_timeout`.
    pub state: String,
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

/// One instance's answer to a health check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginHealth {
    /// Instance name.
    pub name: String,
    /// `ok`, `degraded` or `failing`.
    pub status: &'static str,
    /// The plugin's message, `timeout`, or the failure.
    pub message: String,
}

/// One instance's answer to a readiness check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginReadiness {
    /// Instance name.
    pub name: String,
    /// Ready to take work.
    pub ready: bool,
    /// The plugin's message, `timeout`, or the failure.
    pub message: String,
}

/// One job pipeline, as reported by an instance (RoadRunner's JobsReport fields).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginJob {
    /// The reporting instance.
    pub plugin: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Pipeline priority.
    pub priority: u64,
    /// Ready to consume.
    pub ready: bool,
    /// Queue name.
    pub queue: String,
    /// Active jobs.
    pub active: i64,
    /// Delayed jobs.
    pub delayed: i64,
    /// Reserved jobs.
    pub reserved: i64,
    /// Driver name.
    pub driver: String,
    /// Last error (empty when none).
    pub error_message: String,
}

impl PluginJob {
    fn new(plugin: &str, job: JobReport) -> PluginJob {
        PluginJob {
            plugin: plugin.to_owned(),
            pipeline: job.pipeline,
            priority: job.priority,
            ready: job.ready,
            queue: job.queue,
            active: job.active,
            delayed: job.delayed,
            reserved: job.reserved,
            driver: job.driver,
            error_message: job.error_message,
        }
    }
}

/// A thread of the host's own, woken every interval until told to stop.
pub(crate) struct Background {
    name: &'static str,
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Background {
    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The config in force; a reload replaces it.
    pub(crate) config: std::sync::RwLock<Arc<Config>>,
    pub(crate) bus: Arc<Bus>,
    pub(crate) workers: Mutex<Vec<WorkerHandle>>,
    pub(crate) intake_open: AtomicBool,
    /// Background threads (state pings, watchdog): each stops when sent to.
    pub(crate) background: Mutex<Vec<Background>>,
    /// Serialises reloads and operator commands that start or stop instances.
    pub(crate) changes: Mutex<()>,
    /// Reloads applied so far.
    pub(crate) reloads: std::sync::atomic::AtomicU64,
    /// Whether the watchdog thread runs.
    pub(crate) watchdog: AtomicBool,
    /// Set by the first [`Host::shutdown`] (intake may close before it).
    pub(crate) shutdown_begun: AtomicBool,
}

impl Host {
    /// Load every enabled plugin's library, then start the instances in
    /// config order, each one's `init` on its own thread, within its
    /// `start_timeout`. If a required instance (`required = true`, the
    /// default) cannot start, the ones already started are stopped and the
    /// error is returned; one that is not required fails under its restart
    /// policy, and the start goes on.
    pub fn start(config: Config) -> Result<Host, StartError> {
        Host::start_cancellable(config, Arc::new(AtomicBool::new(false)))
    }

    /// [`Host::start`], which gives up when `cancelled` is set (a signal
    /// during a long start): it looks at the flag between instances and
    /// every few milliseconds while an `init` runs, then drains and stops
    /// what it started, as a shutdown does, and returns
    /// [`StartError::Cancelled`]. The `init` it was waiting for is given up
    /// on as at its `start_timeout`.
    pub fn start_cancellable(
        config: Config,
        cancelled: Arc<AtomicBool>,
    ) -> Result<Host, StartError> {
        let is_cancelled = || cancelled.load(Ordering::Acquire);
        let base = config.base_dir();
        let mut libraries = Vec::new();
        for plugin in config.plugins.iter().filter(|p| p.enabled) {
            if is_cancelled() {
                return Err(StartError::Cancelled);
            }
            let load = || {
                let path = library::resolve(&plugin.library, &config.host.plugin_dirs, &base)?;
                library::open(&path, &library::Trust::of(plugin))
            };
            let library = load().map_err(|cause| StartError::Load {
                name: plugin.name.clone(),
                cause,
            })?;
            libraries.push((plugin.clone(), library));
        }
        let max_event_bytes = config.host.max_event_bytes;
        let metrics_process = config
            .metrics
            .enabled
            .then(|| config.state.process_name.clone());
        let host = Host {
            inner: Arc::new(Inner {
                config: std::sync::RwLock::new(Arc::new(config)),
                changes: Mutex::new(()),
                reloads: std::sync::atomic::AtomicU64::new(0),
                watchdog: AtomicBool::new(false),
                shutdown_begun: AtomicBool::new(false),
                bus: Arc::new(Bus::new(metrics_process, max_event_bytes)),
                workers: Mutex::new(Vec::new()),
                intake_open: AtomicBool::new(true),
                background: Mutex::new(Vec::new()),
            }),
        };
        for (plugin, library) in libraries {
            if is_cancelled() {
                host.shutdown();
                return Err(StartError::Cancelled);
            }
            let start = Start::Initial {
                cancelled: &cancelled,
            };
            match host.spawn(&plugin, library, start) {
                Ok(()) => {}
                Err(error @ StartError::Cancelled) => {
                    host.shutdown();
                    return Err(error);
                }
                Err(error) if plugin.required => {
                    host.shutdown();
                    return Err(error);
                }
                Err(error) => {
                    let error = crate::text::Escaped(&error.to_string()).to_string();
                    tracing::warn!(plugin = %plugin.name, "{error}; not required (`required = false`): the start goes on");
                }
            }
        }
        if is_cancelled() {
            host.shutdown();
            return Err(StartError::Cancelled);
        }
        host.start_state_events();
        host.start_watchdog();
        Ok(host)
    }

    /// Run `tick` every `interval` on a thread of its own until shutdown.
    fn every(
        &self,
        name: &'static str,
        interval: Duration,
        mut tick: impl FnMut(&Host) + Send + 'static,
    ) {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let host = self.clone();
        let thread = std::thread::Builder::new()
            .name(format!("plughost:{name}"))
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(interval) {
                    tick(&host);
                }
            });
        match thread {
            Ok(thread) => self
                .inner
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

    /// The watchdog: a handler running longer than its `handler_timeout` is
    /// reported once (`plughost.plugin.stuck`), counts as failing, and a
    /// process-isolated one is killed so that its restart policy applies.
    pub(crate) fn start_watchdog(&self) {
        let Some(shortest) = self
            .config()
            .plugins
            .iter()
            .filter_map(|p| p.handler_timeout)
            .min()
        else {
            return;
        };
        if self.inner.watchdog.swap(true, Ordering::AcqRel) {
            return;
        }
        let interval = (shortest / 4).clamp(Duration::from_millis(5), Duration::from_millis(250));
        self.every(WATCHDOG, interval, |host| {
            for slot in host.inner.bus.slots() {
                let settings = slot.settings();
                let Some(limit) = settings.handler_timeout else { continue };
                let since = slot.stats.consumer.busy_since.load(Ordering::Acquire);
                let running = Duration::from_nanos(crate::event::coarse_nanos().saturating_sub(since));
                if since == 0 || running <= limit || slot.stuck_at.swap(since, Ordering::AcqRel) == since {
                    continue;
                }
                tracing::error!(plugin = %slot.name, "stuck: a handler has run for {running:?} (handler_timeout {limit:?})");
                let stuck = Lifecycle::Stuck { running, handler_timeout: limit };
                lifecycle::publish(&host.inner.bus, &slot, stuck);
                if settings.isolation == Isolation::Process {
                    slot.child.kill();
                }
            }
        });
    }

    /// Lightbus's state plugin: `worker_started` now, `worker_ping` every
    /// `ping_interval`, `worker_stopped` when shutdown begins.
    fn start_state_events(&self) {
        let state = &self.config().state;
        if !state.enabled {
            return;
        }
        self.inner
            .bus
            .publish_host("internal.state.worker_started", self.state_payload());
        if state.ping_enabled {
            self.every("state", state.ping_interval, |host| {
                host.inner
                    .bus
                    .publish_host("internal.state.worker_ping", host.state_payload());
            });
        }
    }

    fn state_payload(&self) -> serde_json::Value {
        let config = self.config();
        let instances: Vec<&crate::config::PluginConfig> =
            config.plugins.iter().filter(|p| p.enabled).collect();
        let mut listening_for: Vec<&str> = Vec::new();
        for pattern in instances.iter().flat_map(|p| p.subscribe.iter()) {
            if !listening_for.contains(&pattern.as_str()) {
                listening_for.push(pattern.as_str());
            }
        }
        serde_json::json!({
            "process_name": config.state.process_name,
            "metrics_enabled": config.metrics.enabled,
            "api_names": instances.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            "listening_for": listening_for,
            "timestamp": crate::event::now_ms() as f64 / 1000.0,
            "ping_interval": config.state.ping_interval.as_secs_f64(),
        })
    }

    /// Order `probe` from every running instance (or only `only`), each
    /// answering on its own thread through a reply made by `reply`. Returns
    /// every instance concerned, with its answer when it is known without
    /// asking (failed, stuck), `None` when it was asked.
    fn ask(
        &self,
        probe: Probe,
        only: Option<&str>,
        reply: impl Fn() -> Reply<(usize, ProbeAnswer)>,
    ) -> Vec<(Arc<Slot>, Option<ProbeAnswer>)> {
        let mut answers: Vec<(Arc<Slot>, Option<ProbeAnswer>)> = Vec::new();
        for worker in self
            .inner
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let slot = &worker.slot;
            if only.is_some_and(|name| name != &*slot.name) {
                continue;
            }
            match slot.state() {
                State::Running if slot.is_stuck() => {
                    let reason = "stuck: a handler has run longer than handler_timeout".to_owned();
                    answers.push((slot.clone(), Some(ProbeAnswer::Failed(reason))));
                }
                State::Running => {
                    worker.order(Control::Probe(probe, reply()));
                    answers.push((slot.clone(), None));
                }
                State::Failed | State::Restarting | State::Flapping => {
                    let state = slot.state().as_str();
                    let reason = slot
                        .last_error()
                        .map_or_else(|| state.to_owned(), |e| format!("{state}: {e}"));
                    answers.push((slot.clone(), Some(ProbeAnswer::Failed(reason))));
                }
                State::Starting | State::Stopping | State::Stopped => {}
            }
        }
        answers
    }

    /// Ask every running instance (or only `only`) `probe`, on its own
    /// thread, and wait at most `timeout`. A failed instance answers with its
    /// failure; one that does not answer in time, with `timeout`.
    pub(crate) fn probe(
        &self,
        probe: Probe,
        timeout: Duration,
        only: Option<&str>,
    ) -> Vec<(Arc<Slot>, ProbeAnswer)> {
        let (reply_tx, reply_rx) = crossbeam_channel::unbounded();
        let mut answers = self.ask(probe, only, || {
            let reply_tx = reply_tx.clone();
            Box::new(move |answer| {
                let _ = reply_tx.send(answer);
            })
        });
        drop(reply_tx);
        let deadline = Instant::now() + timeout;
        while answers.iter().any(|(_, answer)| answer.is_none()) {
            let Ok(answer) = reply_rx.recv_deadline(deadline) else {
                break;
            };
            record(&mut answers, answer);
        }
        settle(answers)
    }

    /// [`Host::probe`] for async callers: the wait holds no thread, so any
    /// number of checks can wait at once.
    pub(crate) async fn probe_async(
        &self,
        probe: Probe,
        timeout: Duration,
        only: Option<&str>,
    ) -> Vec<(Arc<Slot>, ProbeAnswer)> {
        let (reply_tx, mut reply_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut answers = self.ask(probe, only, || {
            let reply_tx = reply_tx.clone();
            Box::new(move |answer| {
                let _ = reply_tx.send(answer);
            })
        });
        drop(reply_tx);
        let deadline = tokio::time::Instant::now() + timeout;
        while answers.iter().any(|(_, answer)| answer.is_none()) {
            let Ok(Some(answer)) = tokio::time::timeout_at(deadline, reply_rx.recv()).await else {
                break;
            };
            record(&mut answers, answer);
        }
        settle(answers)
    }

    /// Health of every instance that reports it (and of failed ones), each
    /// asked on its own thread within `timeout`.
    pub fn health(&self, timeout: Duration, only: Option<&str>) -> Vec<PluginHealth> {
        health_of(self.probe(Probe::Health, timeout, only))
    }

    /// [`Host::health`], waited for without holding a thread.
    pub async fn health_async(&self, timeout: Duration, only: Option<&str>) -> Vec<PluginHealth> {
        health_of(self.probe_async(Probe::Health, timeout, only).await)
    }

    /// Readiness of every instance that reports it (failed ones are not ready).
    pub fn readiness(&self, timeout: Duration, only: Option<&str>) -> Vec<PluginReadiness> {
        readiness_of(self.probe(Probe::Ready, timeout, only))
    }

    /// [`Host::readiness`], waited for without holding a thread.
    pub async fn readiness_async(
        &self,
        timeout: Duration,
        only: Option<&str>,
    ) -> Vec<PluginReadiness> {
        readiness_of(self.probe_async(Probe::Ready, timeout, only).await)
    }

    /// Job reports of every instance that reports them.
    pub fn jobs(&self, timeout: Duration) -> Vec<PluginJob> {
        jobs_of(self.probe(Probe::Jobs, timeout, None))
    }

    /// [`Host::jobs`], waited for without holding a thread.
    pub async fn jobs_async(&self, timeout: Duration) -> Vec<PluginJob> {
        jobs_of(self.probe_async(Probe::Jobs, timeout, None).await)
    }

    /// True once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        !self.inner.intake_open.load(Ordering::Acquire)
    }

    /// Every instance's slot (not retired by a reload), in start order.
    pub(crate) fn slots(&self) -> Vec<Arc<Slot>> {
        let mut slots = self.inner.bus.slots();
        slots.retain(|slot| !slot.retired.load(Ordering::Acquire));
        slots
    }

    /// Publish `payload` on `topic` for the embedding program: the event's
    /// source is `host` (see [`Entry::Embedder`]). Under the `block` policy
    /// this waits for room in full mailboxes. Returns the event's id. Like
    /// every entry point, it refuses the host's reserved topics
    /// ([`plughost_api::topic::RESERVED`]) and payloads larger than `[host]
    /// max_event_bytes`, and counts what it refuses ([`Host::refused`]).
    pub fn publish(&self, topic: &str, payload: impl Into<Box<[u8]>>) -> Result<u64, PublishError> {
        self.publish_from(Entry::Embedder, topic, payload)
    }

    /// Publish `payload` on `topic` as it came in through `entry`: the event
    /// carries the entry's source (`stdin`, `ctl`, `http`, ...), and a
    /// refusal is counted under it. Otherwise as [`publish`](Host::publish).
    pub fn publish_from(
        &self,
        entry: Entry,
        topic: &str,
        payload: impl Into<Box<[u8]>>,
    ) -> Result<u64, PublishError> {
        if !self.inner.intake_open.load(Ordering::Acquire) {
            return Err(PublishError::ShuttingDown);
        }
        let source = crate::event::Name::Interned(entry.source());
        self.inner.bus.publish_from(
            crate::intake::Publisher::Entry(entry),
            None,
            source,
            topic,
            payload.into(),
        )
    }

    /// Publish many payloads on one `topic` at once for the embedding
    /// program: cheaper per event than [`publish`](Host::publish) (one route
    /// lookup, one id reservation). Events get consecutive ids; returns the
    /// first. Refused whole if any payload is too large or the topic reserved.
    pub fn publish_batch(
        &self,
        topic: &str,
        payloads: Vec<Box<[u8]>>,
    ) -> Result<u64, PublishError> {
        if !self.inner.intake_open.load(Ordering::Acquire) {
            return Err(PublishError::ShuttingDown);
        }
        self.inner
            .bus
            .publish_batch(Entry::Embedder, topic, payloads)
    }

    /// What every entry point refused so far, by entry and reason, with the
    /// pairs never refused left out.
    pub fn refused(&self) -> Vec<Refused> {
        let mut all = self.inner.bus.refusals.all();
        all.retain(|refused| refused.count > 0);
        all
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.inner
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every instance's state and counts, in start order.
    pub fn report(&self) -> Vec<InstanceReport> {
        let slots = self.inner.bus.slots();
        slots
            .iter()
            .filter(|slot| !slot.retired.load(Ordering::Acquire))
            .map(|slot| report(slot))
            .collect()
    }

    /// Stop taking events from outside; plugins may still publish.
    pub fn close_intake(&self) {
        self.inner.intake_open.store(false, Ordering::Release);
    }

    /// Drain and stop in phases (see the module docs), within the config's
    /// `shutdown_timeout` plus a grace for the stops. What cannot be
    /// delivered is dropped, counted and logged. Returns the final report.
    /// Calling it again returns the report without doing anything.
    pub fn shutdown(&self) -> Vec<InstanceReport> {
        let first = !self.inner.shutdown_begun.swap(true, Ordering::AcqRel);
        self.close_intake();
        // The watchdog keeps watching until the end: a handler stuck now
        // must still be reported (and a process plugin killed).
        let (watchdog, others): (Vec<Background>, Vec<Background>) = std::mem::take(
            &mut *self
                .inner
                .background
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
        .into_iter()
        .partition(|background| background.name == WATCHDOG);
        others.into_iter().for_each(Background::stop);

        if first && self.config().state.enabled {
            let payload = serde_json::json!({
                "process_name": self.config().state.process_name,
                "timestamp": crate::event::now_ms() as f64 / 1000.0,
            });
            self.inner
                .bus
                .publish_host("internal.state.worker_stopped", payload);
        }
        let deadline = Instant::now() + self.config().host.shutdown_timeout;
        let stops_deadline = deadline + STOP_GRACE;
        let bus = &self.inner.bus;
        // 1. Drain: every queue empties while every instance runs.
        let mut idle = self.wait_idle(deadline);
        if !idle {
            tracing::warn!(
                "shutdown_timeout reached with events still queued; they are dropped and counted"
            );
        }
        let mut workers =
            std::mem::take(&mut *self.inner.workers.lock().unwrap_or_else(|e| e.into_inner()));
        // Not those stopped by an operator or retired by a reload: they ended.
        let live: Vec<&WorkerHandle> = workers.iter().filter(|w| w.is_alive()).collect();
        let slots: Vec<Arc<Slot>> = live.iter().map(|w| w.slot.clone()).collect();

        // 2. Stop, and 3. drain again: each instance's `stop`, last started
        // first, one after another; none ends yet. What a stop publishes (and
        // what handlers publish in turn) is drained before the next one
        // stops, so it reaches every subscriber: those listed before the
        // publisher before their own `stop`, the others after theirs.
        let mut stopped: Vec<Option<bool>> = vec![None; live.len()];
        let mut left = live.len();
        while idle && left > 0 && Instant::now() < stops_deadline {
            left -= 1;
            let wait = order_stop(live[left], None);
            let late = format!("did not finish its `stop` by shutdown_timeout + {STOP_GRACE:?}");
            stopped[left] = await_all(vec![wait], stops_deadline, &late).pop().flatten();
            if stopped[left] == Some(true) {
                lifecycle::stopped(bus, &live[left].slot);
            }
            idle = self.wait_idle(stops_deadline);
            if !idle {
                tracing::warn!(
                    "what the plugins published in `stop` was not all delivered within shutdown_timeout + {STOP_GRACE:?}; the rest is dropped and counted"
                );
            }
        }
        if left > 0 {
            // Out of time (a queue that would not drain, a stop that would
            // not return): the others drop their queues and run their `stop`
            // together, and what they publish is drained, within one more
            // grace.
            tracing::warn!(
                "no time left to stop the instances one after another: the other {left} drop their queues and run their `stop` together, within {STOP_GRACE:?}"
            );
            let until = Instant::now() + STOP_GRACE;
            // What is queued from now on was published by the stops (or by
            // handlers in turn): delivered, not dropped with the queues.
            let deadline = bus.next_event_id();
            let waits = live[..left]
                .iter()
                .map(|w| order_stop(w, Some(deadline)))
                .collect();
            let late = format!("did not finish its `stop` within {STOP_GRACE:?}");
            let answers = await_all(waits, until, &late);
            for (i, answer) in answers.into_iter().enumerate().rev() {
                stopped[i] = answer;
                if answer == Some(true) {
                    lifecycle::stopped(bus, &live[i].slot);
                }
            }
            if !self.wait_idle(until) {
                tracing::warn!(
                    "what they published in `stop` was not all delivered within {STOP_GRACE:?}; the rest is dropped and counted"
                );
            }
        }

        // 4. Tear down: each instance ends and is dropped, all at once; from
        // then on what is queued for it, or published to it, is dropped and
        // counted. Not those abandoned in their `stop`.
        let before: Vec<u64> = slots.iter().map(|slot| slot.counts().dropped).collect();
        let waits: Vec<_> = live
            .iter()
            .zip(&stopped)
            .filter(|(_, stopped)| stopped.is_some())
            .map(|(worker, _)| {
                worker.order(Control::Stop { drain: false });
                let done = worker.done.clone();
                let ended = move |until: Instant| match done.recv_deadline(until) {
                    Err(RecvTimeoutError::Timeout) => None,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => Some(()),
                };
                (*worker, ended)
            })
            .collect();
        let late = format!("did not end within {TEARDOWN_GRACE:?}");
        await_all(waits, Instant::now() + TEARDOWN_GRACE, &late);
        for worker in &mut workers {
            if worker.is_alive() {
                continue; // abandoned, stuck in the plugin
            }
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
        watchdog.into_iter().for_each(Background::stop);
        bus.close();
        for (slot, before) in slots.iter().zip(before) {
            let late = slot.counts().dropped.saturating_sub(before);
            if late > 0 {
                tracing::warn!(plugin = %slot.name, "{late} event(s) still queued for it when it ended, or published to it afterwards, could not be delivered and are counted as dropped");
            }
        }
        self.report()
    }

    /// Wait until no event is queued or in a handler anywhere, or `deadline`.
    /// An instance waiting to restart counts as busy: it comes back, takes
    /// what waits for it, and stops like the others.
    fn wait_idle(&self, deadline: Instant) -> bool {
        let mut previous = None;
        loop {
            let balance = self.inner.bus.balance();
            let restarting = self.slots().iter().any(|s| s.state() == State::Restarting);
            if balance.0 == balance.1 && previous == Some(balance) && !restarting {
                return true;
            }
            // Two looks at least, even past the deadline: a quiet bus is
            // not reported as busy.
            if previous.is_some() && Instant::now() >= deadline {
                return false;
            }
            previous = Some(balance);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Order `worker`'s instance to run its `stop` in place (handling what is
/// queued first, or dropping what was published before `drop_before`, the
/// deadline); with what waits for its
/// answer (whether `stop` ran cleanly) until a given instant, `None` if it
/// did not come by then.
fn order_stop(
    worker: &WorkerHandle,
    drop_before: Option<u64>,
) -> (&WorkerHandle, impl Fn(Instant) -> Option<bool>) {
    let (reply, answer) = crossbeam_channel::bounded(1);
    worker.order(Control::StopInPlace { drop_before, reply });
    let answered = move |until: Instant| match answer.recv_deadline(until) {
        Ok(clean) => Some(clean),
        Err(RecvTimeoutError::Disconnected) => Some(false),
        Err(RecvTimeoutError::Timeout) => None,
    };
    (worker, answered)
}

/// Wait for the workers of `waits` to answer (each one's function waits for
/// its answer until the instant it is given), until `deadline`. One that did
/// not answer by then (`late` says what it did not do) is given up on: a
/// process instance's child is killed (all of them at once), and its thread
/// gets [`KILL_WAIT`] more to notice and answer; a thread stuck in the plugin
/// is abandoned, with what it queued and held counted as dropped. Returns
/// each one's answer, `None` for those abandoned.
fn await_all<T>(
    waits: Vec<(&WorkerHandle, impl Fn(Instant) -> Option<T>)>,
    deadline: Instant,
    late: &str,
) -> Vec<Option<T>> {
    let mut answers: Vec<Option<T>> = waits.iter().map(|(_, answer)| answer(deadline)).collect();
    let in_process = |worker: &WorkerHandle| worker.slot.settings().isolation == Isolation::Process;
    let overdue: Vec<usize> = (0..waits.len()).filter(|&i| answers[i].is_none()).collect();
    for &i in &overdue {
        if in_process(waits[i].0) {
            waits[i].0.slot.child.kill();
        }
    }
    let killed = Instant::now() + KILL_WAIT;
    for i in overdue {
        let (worker, answer) = &waits[i];
        let slot = &worker.slot;
        if in_process(worker)
            && let Some(answered) = answer(killed)
        {
            let reason = format!("{late}; its process was killed");
            tracing::error!(plugin = %slot.name, "{reason}");
            slot.set_last_error(reason);
            answers[i] = Some(answered);
            continue;
        }
        // The thread is stuck in the plugin and will not count what it
        // holds: what is queued is dropped, and what it holds (the event in
        // its handler, a batch) is lost, both counted.
        let queued = slot.drop_queued();
        let (offered, finished) = slot.stats.balance();
        let held = offered.saturating_sub(finished);
        slot.stats
            .consumer
            .discarded
            .fetch_add(held, Ordering::AcqRel);
        let reason = format!(
            "{late}; its thread is abandoned with {} event(s) unfinished, counted as dropped",
            queued + held
        );
        tracing::error!(plugin = %slot.name, "{reason}");
        slot.set_last_error(reason);
        slot.set_state(State::Failed);
    }
    answers
}

/// Put an instance's answer beside its slot.
fn record(answers: &mut [(Arc<Slot>, Option<ProbeAnswer>)], (index, answer): (usize, ProbeAnswer)) {
    if let Some(entry) = answers.iter_mut().find(|(slot, _)| slot.index == index) {
        entry.1 = Some(answer);
    }
}

/// The answers, `timeout` for an instance that gave none in time.
fn settle(answers: Vec<(Arc<Slot>, Option<ProbeAnswer>)>) -> Vec<(Arc<Slot>, ProbeAnswer)> {
    answers
        .into_iter()
        .map(|(slot, answer)| {
            (
                slot,
                answer.unwrap_or_else(|| ProbeAnswer::Failed("timeout".to_owned())),
            )
        })
        .collect()
}

fn health_of(answers: Vec<(Arc<Slot>, ProbeAnswer)>) -> Vec<PluginHealth> {
    let failing = |slot: &Slot, message: String| PluginHealth {
        name: slot.name.to_string(),
        status: "failing",
        message,
    };
    answers
        .into_iter()
        .filter_map(|(slot, answer)| match answer {
            ProbeAnswer::Health(Some(h)) => Some(PluginHealth {
                name: slot.name.to_string(),
                status: h.status.as_str(),
                message: h.message,
            }),
            ProbeAnswer::Failed(reason) => Some(failing(&slot, reason)),
            _ => None,
        })
        .collect()
}

fn readiness_of(answers: Vec<(Arc<Slot>, ProbeAnswer)>) -> Vec<PluginReadiness> {
    answers
        .into_iter()
        .filter_map(|(slot, answer)| {
            let name = slot.name.to_string();
            match answer {
                ProbeAnswer::Ready(Some(r)) => Some(PluginReadiness {
                    name,
                    ready: r.ready,
                    message: r.message,
                }),
                ProbeAnswer::Failed(reason) => Some(PluginReadiness {
                    name,
                    ready: false,
                    message: reason,
                }),
                _ => None,
            }
        })
        .collect()
}

fn jobs_of(answers: Vec<(Arc<Slot>, ProbeAnswer)>) -> Vec<PluginJob> {
    let mut jobs = Vec::new();
    for (slot, answer) in answers {
        match answer {
            ProbeAnswer::Jobs(Some(reports)) => {
                jobs.extend(
                    reports
                        .into_iter()
                        .map(|job| PluginJob::new(&slot.name, job)),
                );
            }
            ProbeAnswer::Failed(reason) if slot.state() == State::Running => {
                let job = JobReport {
                    error_message: reason,
                    ..JobReport::default()
                };
                jobs.push(PluginJob::new(&slot.name, job));
            }
            _ => {}
        }
    }
    jobs
}

fn report(slot: &Slot) -> InstanceReport {
    let settings = slot.settings();
    InstanceReport {
        name: slot.name.to_string(),
        library: settings.library,
        language: settings.language.to_owned(),
        isolation: settings.isolation.as_str().to_owned(),
        restarts: slot.restarts.load(Ordering::Acquire),
        state: match slot.state() {
            State::Running if slot.is_stuck() => "stuck".to_owned(),
            state => state.as_str().to_owned(),
        },
        counts: slot.counts(),
        queue_depth: slot.rx.len(),
        queue_capacity: slot.capacity,
        last_error: slot.last_error(),
    }
}
