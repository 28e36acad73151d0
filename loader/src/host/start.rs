//! Starting the host: every library loaded and checked first, then the
//! instances started in config order, each within its `start_timeout`.

use super::Host;
use crate::command::PluginCommands;
use crate::config::Config;
use crate::library::{self, Trust};
use crate::observe::state;
use crate::supervisor::{Start, StartError, Supervisor};
use crate::text::Escaped;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
                library::open(&path, &Trust::of(plugin))
            };
            let library = load().map_err(|cause| StartError::Load {
                name: plugin.name.clone(),
                cause,
            })?;
            libraries.push((plugin.clone(), library));
        }
        let supervisor =
            Arc::new_cyclic(|me| Supervisor::new(config, Arc::new(PluginCommands(me.clone()))));
        let host = Host { supervisor };
        for (plugin, library) in libraries {
            if is_cancelled() {
                host.shutdown();
                return Err(StartError::Cancelled);
            }
            let start = Start::Initial {
                cancelled: &cancelled,
            };
            match host.supervisor.spawn(&plugin, library, start) {
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
                    let error = Escaped(&error.to_string()).to_string();
                    tracing::warn!(plugin = %plugin.name, "{error}; not required (`required = false`): the start goes on");
                }
            }
        }
        if is_cancelled() {
            host.shutdown();
            return Err(StartError::Cancelled);
        }
        state::start(&host.supervisor);
        host.supervisor.start_watchdog();
        Ok(host)
    }
}
