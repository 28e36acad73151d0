//! Applying a changed config while the host runs ([`Supervisor::reload`]).
//!
//! A reload keeps every unchanged instance running with its queue; a changed
//! one keeps its mailbox too (its thread stops the old plugin and inits the
//! new one, so nothing queued is lost) unless its `queue_capacity` changed,
//! which needs a new mailbox: new events go to the new mailbox at once and
//! wait there while the old instance handles what it had queued; then the
//! new instance starts (see `swap_mailbox`).

use super::error::{InstanceError, StartError};
use super::handle::{STOP_WAIT, Waiter, WorkerHandle};
use super::launch::Start;
use super::running::Supervisor;
use crate::bus::Bus;
use crate::config::{Config, ConfigError, PluginConfig};
use crate::library::{self, Library};
use crate::mailbox::{Slot, State};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long the old mailbox must stay empty, after a reload moved its
/// instance's routes to a new mailbox, before the old instance stops.
const SWITCH_GRACE: Duration = Duration::from_millis(50);

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

/// Why a reload did not apply, or applied only in part.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The config file could not be read or is not valid: nothing changed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Libraries of the new config could not be found or loaded (each a
    /// [`StartError::Load`]): nothing changed.
    #[error("{}", join(problems))]
    Libraries {
        /// One per library.
        problems: Vec<StartError>,
    },
    /// The new config is in force, but instances did not start or restart
    /// as it asks.
    #[error("reload applied, but: {}", join(errors))]
    Partial {
        /// What was applied.
        report: Box<ReloadReport>,
        /// One per instance.
        errors: Vec<InstanceError>,
    },
}

fn join(errors: &[impl std::fmt::Display]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Supervisor {
    /// Re-read the config file and apply the difference. An invalid config
    /// (or a library that cannot be loaded) changes nothing.
    pub(crate) fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let _changes = self.change();
        let old = self.config();
        let mut new = Config::load(&old.path)?;
        let base = new.base_dir();
        let mut libraries = Vec::new();
        let mut problems = Vec::new();
        for plugin in new.plugins.iter().filter(|p| p.enabled) {
            let opened = library::resolve(&plugin.library, &new.host.plugin_dirs, &base)
                .and_then(|path| library::open(&path, &library::Trust::of(plugin)));
            match opened {
                Ok(library) => libraries.push((plugin.clone(), library)),
                Err(cause) => problems.push(StartError::Load {
                    name: plugin.name.clone(),
                    cause,
                }),
            }
        }
        if !problems.is_empty() {
            return Err(ReloadError::Libraries { problems });
        }

        let mut report = ReloadReport {
            restart_needed: old.restart_needed(&new),
            ..ReloadReport::default()
        };
        new.keep_start_settings(&old);
        let wanted: Vec<&str> = libraries.iter().map(|(p, _)| p.name.as_str()).collect();
        let removed: Vec<(Arc<Slot>, Option<Waiter>)> = {
            let workers = self.workers();
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
                let _ = waiter.finish(&self.bus);
            }
            retire(&self.bus, &slot);
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
                        .map_err(InstanceError::from)
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
        self.set_config(new);
        self.start_watchdog();
        let count = self.count_reload();
        tracing::info!(
            "reload {count}: added {:?}, removed {:?}, restarted {:?}, unchanged {:?}, not applied until a restart {:?}",
            report.added,
            report.removed,
            report.restarted,
            report.unchanged,
            report.restart_needed
        );
        if !errors.is_empty() {
            return Err(ReloadError::Partial {
                report: Box::new(report),
                errors,
            });
        }
        Ok(report)
    }

    /// Give instance `plugin.name` a new mailbox (its capacity changed)
    /// without losing or reordering events: the new slot takes the routes
    /// first, and its events wait there while the old instance handles what
    /// it had queued and stops; then the new instance starts on the new
    /// mailbox. Events that reached the old mailbox after it drained (a
    /// publisher still on the old route) are moved over and counted.
    fn swap_mailbox(
        &self,
        plugin: &PluginConfig,
        library: Arc<Library>,
    ) -> Result<(), InstanceError> {
        let bus: &Arc<Bus> = &self.bus;
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
        self.workers().push(handle);
        move_queue(&old, &slot);
        Ok(outcome?)
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
